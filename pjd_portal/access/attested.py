"""A visit from the EPJ: the trust framework's attest turned into the portal's own lookup
and basis, through the same services and the same policy as a clinician's form.

The launch (`/start/`) and the MHD API both come here once they know who is calling
(`Caller`): the patient the attest names is looked up, the purpose of use becomes a basis
(policy.basis_for_purpose_of_use) and is stated as an attest of the portal's, marked with
its origin, so that every event of the visit carries the EPJ's client and decision. The
API's calls reuse the live attest of the same person, organisation, patient, client and
decision: one decision in the EPJ is one basis here, not one per request.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from django.db.models import Exists
from django.utils import timezone

from pjd_portal.access import policy, selectors
from pjd_portal.access.models import AccessAttest, AttestChannel, PatientLookup
from pjd_portal.access.services import (
    AttestOrigin,
    PatientAccess,
    access_patient_by_handle,
    lookup_patient,
    lookup_rate_refusal,
    refuse_by_status,
    state_basis,
)
from pjd_portal.access.trust_framework import TrustAttest
from pjd_portal.accounts.caller import Caller
from pjd_portal.auditlog import events
from pjd_portal.auditlog.events import Outcome
from pjd_portal.auditlog.services import record_event
from pjd_portal.patients.lookup import NO_SUCH_PATIENT_CODE, read_national_id
from pjd_portal.patients.national_id import InvalidNationalId


@dataclass(frozen=True)
class AttestedVisit:
    access: PatientAccess | None  # the patient reached, with a live attest in force
    decision: policy.Decision  # ALLOW, or why not
    caller: Caller | None
    found: bool = True  # False: the register has no such patient (or the id is not one)
    # The lookup made before a refusal of the basis (the launch shows the FORHØYET step).
    lookup: PatientLookup | None = None
    # Over the clinician's lookup limit (services.lookup_rate_refusal): seconds until the
    # next lookup may be made; nothing was looked up.
    retry_after: int | None = None


def origin_of(attest: TrustAttest, *, channel: str, client_id: str) -> AttestOrigin:
    return AttestOrigin(
        channel=channel,
        client_id=client_id,
        decision_ref=attest.decision_ref,
        purpose_of_use=attest.purpose_of_use,
        care_relation=attest.purpose_of_use_details,
        self_selected=attest.user_selected,
    )


def refused_kind(channel: str) -> events.EventKind:
    return events.API_CALL_REFUSED if channel == AttestChannel.API else events.EPJ_LAUNCH_REFUSED


def refuse_visit(*, caller: Caller, origin: AttestOrigin, decision: policy.Decision) -> AttestedVisit:
    """A visit refused before any patient is reached: logged, with the EPJ's words."""

    record_event(
        refused_kind(origin.channel)(
            outcome=Outcome.DENIED, reason_code=decision.reason_code, details=origin.details()
        ),
        actor=caller.actor,
        where=caller.where,
    )
    return AttestedVisit(None, decision, caller)


def _reused(caller: Caller, patient_id: int, origin: AttestOrigin) -> PatientAccess | None:
    """The API's live attest for this very decision, with the patient's facts as they are
    now (a block made a minute ago applies): read through the handle, like a page."""

    organisation = caller.organisation
    if organisation is None or not policy.may_use_clinical_portal(selectors.clinician_facts(caller)):
        return None  # a role lost since: the new lookup says so, and logs it
    now = timezone.now()
    attest = (
        AccessAttest.objects.filter(
            user_id=caller.user.pk,
            organisation_id=organisation.pk,
            patient_id=patient_id,
            channel=origin.channel,
            client_id=origin.client_id,
            decision_ref=origin.decision_ref,
            purpose_of_use=origin.purpose_of_use,
            expires_at__gt=now,
            lookup__expires_at__gt=now,
        )
        .filter(Exists(selectors.stating_event()))
        .select_related("lookup")
        .order_by("-created_at")
        .first()
    )
    if attest is None:
        return None
    access = access_patient_by_handle(caller=caller, handle=attest.lookup.handle)
    return replace(access, attest=attest)


def attested_visit(*, caller: Caller, attest: TrustAttest, origin: AttestOrigin) -> AttestedVisit:
    """Look up the attest's patient and state its basis, or say (and log) why not."""

    count = policy.attest_names_one_patient(len(attest.patient_ids))
    if not count:
        return refuse_visit(caller=caller, origin=origin, decision=count)
    purpose = policy.may_use_purpose_of_use(attest.purpose_of_use)
    if not purpose:
        return refuse_visit(caller=caller, origin=origin, decision=purpose)
    entered = read_national_id(attest.patient_ids[0])
    if origin.channel == AttestChannel.API and not isinstance(entered, InvalidNationalId):
        patient_id = selectors.patient_id_for(entered.value)
        reused = _reused(caller, patient_id, origin) if patient_id is not None else None
        if reused is not None:
            return AttestedVisit(reused, policy.ALLOW, caller)
    # A lookup from the EPJ counts against the clinician's limit as one from the form does
    # (a reused attest above is no new lookup).
    refusal = lookup_rate_refusal(caller=caller)
    if refusal is not None:
        decision = policy.Decision(False, "lookup_rate_limited", "Too many lookups in a short time.")
        return AttestedVisit(None, decision, caller, retry_after=refusal.retry_after)
    found = lookup_patient(caller=caller, entered=entered, visit=origin.details())
    if found.lookup is None:
        missing = found.error_code == NO_SUCH_PATIENT_CODE or isinstance(entered, InvalidNationalId)
        decision = policy.Decision(False, found.error_code)
        return AttestedVisit(None, decision, caller, found=not missing)
    access = access_patient_by_handle(caller=caller, handle=found.lookup.handle)
    status = policy.status_before_basis(access.clinician, access.patient_facts)
    if not status:
        refuse_by_status(caller=caller, access=access, decision=status, visit=origin.details())
        return AttestedVisit(None, status, caller, lookup=found.lookup)
    basis, reason = policy.basis_for_purpose_of_use(
        access.clinician, access.patient_facts, attest.purpose_of_use, attest.reason
    )
    stated = state_basis(caller=caller, access=access, basis=basis, reason=reason, origin=origin)
    if stated.attest is None:
        return AttestedVisit(None, stated.decision, caller, lookup=found.lookup)
    return AttestedVisit(replace(access, attest=stated.attest), policy.ALLOW, caller, lookup=found.lookup)


def launch_visit(*, caller: Caller, attest: TrustAttest, origin: AttestOrigin) -> AttestedVisit:
    """The launch's visit: only for the person the attest names, acting for its
    organisation (the person at the keyboard logged in through HelseID); then as any."""

    where = caller.where
    acting = policy.may_act_on_attest(
        person_pid=caller.user.pid or "",
        person_hpr_number=caller.user.hpr_number,
        organisation_orgnr=where.orgnr if where else "",
        legal_entity_orgnr=where.legal_entity_orgnr if where else "",
        attest_pid=attest.practitioner_pid,
        attest_hpr_number=attest.hpr_number,
        attest_point_of_care=attest.point_of_care_orgnr,
        attest_legal_entity=attest.legal_entity_orgnr,
    )
    if not acting:
        return refuse_visit(caller=caller, origin=origin, decision=acting)
    return attested_visit(caller=caller, attest=attest, origin=origin)
