"""Writes of the clinician path: lookups, attests, and the one funnel to a patient.

Each service writes its rows and its audit event so that neither acts without the other:
in one transaction where a third row must commit with them (a patient notice), else the
row first and its event committed by the group writer, the row counting only once its
event is in the log. The policy module decides, these functions only act on its answer.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from contextlib import nullcontext
from dataclasses import dataclass, field
from uuid import UUID

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from pjd_portal.access import handles, policy, selectors
from pjd_portal.access.models import AccessAttest, Basis, LookupPurpose, PatientLookup
from pjd_portal.accounts.caller import Caller
from pjd_portal.auditlog import events
from pjd_portal.auditlog.events import Detail, Outcome
from pjd_portal.auditlog.services import AuditWriteFailed, record_event
from pjd_portal.lib import rate_limits
from pjd_portal.notices import services as notices
from pjd_portal.patients.lookup import find_patient
from pjd_portal.patients.models import Patient
from pjd_portal.patients.national_id import InvalidNationalId, NationalId


@dataclass(frozen=True)
class LookupResult:
    lookup: PatientLookup | None
    error_code: str = ""


LOOKUP_RATE_GROUP = "pjd.lookups"


def lookup_limits() -> tuple[rate_limits.Limit, ...]:
    return (
        rate_limits.Limit(settings.RATE_LOOKUPS_PER_MINUTE, "m"),
        rate_limits.Limit(settings.RATE_LOOKUPS_PER_HOUR, "h"),
    )


def lookup_rate_refusal(*, caller: Caller) -> rate_limits.Refusal | None:
    """Count one patient lookup of this clinician (every organisation and instance alike:
    the count is on the shared cache); over a limit, the refusal, logged once per window as
    a `rate_limited` event. The caller is then told so and nothing is looked up."""

    key = str(caller.user.pk)
    refusal = rate_limits.count_and_check(group=LOOKUP_RATE_GROUP, caller=key, limits=lookup_limits())
    if refusal is not None and rate_limits.first_refusal(
        group=LOOKUP_RATE_GROUP, caller=key, refusal=refusal
    ):
        record_event(
            events.RATE_LIMITED(
                outcome=Outcome.DENIED,
                reason_code="lookup_rate_limited",
                limit=refusal.limit.count,
                period=refusal.limit.period,
                retry_after=refusal.retry_after,
                channel="portal",
            ),
            actor=caller.actor,
            where=caller.where,
        )
    return refusal


def lookup_patient(
    *, caller: Caller, entered: NationalId | InvalidNationalId, visit: Mapping[str, str] | None = None
) -> LookupResult:
    """Look up a patient by national id (parsed by the form's NationalIdField). Logs hits,
    misses and invalid input alike; a hit is a clinical handle, made with its event.
    `visit`: what an attest from the EPJ puts on each of its events (AttestOrigin)."""

    visit = dict(visit or {})

    clinician = selectors.clinician_facts(caller)
    portal = policy.may_use_clinical_portal(clinician)
    if not portal:
        record_event(
            events.PATIENT_LOOKUP(outcome=Outcome.DENIED, reason_code=portal.reason_code, details=visit),
            actor=caller.actor,
            where=caller.where,
        )
        return LookupResult(None, portal.reason_code)
    match = find_patient(entered)
    if match.patient is None:
        record_event(
            events.PATIENT_LOOKUP(**match.event_fields(), details=visit),
            actor=caller.actor,
            where=caller.where,
        )
        return LookupResult(None, match.reason_code)
    # The handle is stored, then its event committed (by the group writer, with other
    # requests' events: no transaction of its own here). The handle reaches the clinician
    # only after both; if the event cannot be written the handle is taken back, and even
    # one left behind would be a row nobody holds the handle of.
    lookup = handles.issue_handle(
        caller, match.patient, purpose=LookupPurpose.CLINICAL, minutes=settings.ACCESS_ATTEST_MINUTES
    )
    try:
        record_event(
            events.PATIENT_LOOKUP(**match.event_fields(), handle=str(lookup.handle), details=visit),
            actor=caller.actor,
            where=caller.where,
        )
    except AuditWriteFailed:
        handles.withdraw_handle(lookup)
        raise
    return LookupResult(lookup)


@dataclass(frozen=True)
class PatientAccess:
    """What a view may work with after the funnel: the lookup and the loaded facts."""

    lookup: PatientLookup
    patient: Patient
    clinician: policy.ClinicianFacts
    patient_facts: policy.PatientFacts
    attest: AccessAttest | None
    now: datetime.datetime
    # Every source's sharing rules, read with the handle (the list and the open decide on them).
    source_rules: list[policy.SourceRules] = field(default_factory=list)

    @property
    def attest_facts(self) -> policy.AttestFacts | None:
        return selectors.attest_facts(self.attest)


def access_patient_by_handle(*, caller: Caller, handle: UUID) -> PatientAccess:
    """The one way from a URL handle to a patient.

    Unknown, expired and other users' handles all raise the same PatientNotFound (a 404)
    and are logged as denials, so guessing is both fruitless and visible (access/handles.py).
    """

    now = timezone.now()
    clinician = selectors.clinician_facts(caller)
    lookup = None
    if policy.may_use_clinical_portal(clinician):
        lookup = handles.live_handle(caller, handle, purpose=LookupPurpose.CLINICAL, now=now)
    if lookup is None:
        handles.refuse_handle(caller, handle)
    found = selectors.handle_facts(lookup)
    return PatientAccess(
        lookup=found.lookup,
        patient=found.lookup.patient,
        clinician=clinician,
        patient_facts=found.patient_facts,
        attest=found.attest,
        now=now,
        source_rules=found.source_rules,
    )


@dataclass(frozen=True)
class AttestOrigin:
    """An attest stated by an EPJ rather than on the portal's form: how it came (the
    launch, the API), from which HelseID client, and the trust framework's own words."""

    channel: str
    client_id: str
    decision_ref: str
    purpose_of_use: str
    care_relation: str
    self_selected: bool

    def details(self) -> dict[str, str]:
        return {
            "channel": self.channel,
            "client_id": self.client_id,
            "decision_ref": self.decision_ref,
            "purpose_of_use_details": self.care_relation,
        }


@dataclass(frozen=True)
class BasisResult:
    attest: AccessAttest | None
    decision: policy.Decision


def state_basis(
    *,
    caller: Caller,
    access: PatientAccess,
    basis: str,
    reason: str,
    situation: str = "",
    origin: AttestOrigin | None = None,
) -> BasisResult:
    """Record the clinician's basis for access as an attest, if the policy allows it. An
    emergency basis names the situation chosen from the form's list (`situation`); an
    attest from the EPJ names its `origin`."""

    reason = reason.strip()
    decision = policy.may_state_basis(access.clinician, access.patient_facts, basis, reason)
    if not decision:
        record_event(
            events.ACCESS_DENIED(
                outcome=Outcome.DENIED,
                reason_code=decision.reason_code,
                patient=access.patient,
                basis=basis if basis in Basis.values else "",
                reason_text=reason,
                details=origin.details() if origin is not None else None,
            ),
            actor=caller.actor,
            where=caller.where,
        )
        return BasisResult(None, decision)

    now = timezone.now()
    flagged = basis in policy.FLAGGED_FOR_REVIEW
    where = caller.where
    # A flagged basis writes its patient notice, attest and event in one transaction. An
    # ordinary one stores the attest and then commits its event through the group writer:
    # the attest is in force only once that event is in the log (selectors: _stating_event),
    # so an attest whose event could not be written opens nothing.
    with transaction.atomic() if flagged else nullcontext():
        attest = AccessAttest.objects.create(
            lookup=access.lookup,
            user=caller.user,
            organisation_id=access.lookup.organisation_id,
            patient=access.patient,
            basis=basis,
            purpose_of_use=origin.purpose_of_use
            if origin
            else policy.purpose_of_use(access.clinician, basis),
            care_relation=(origin.care_relation if origin else "BEHANDLER"),
            reason=reason,
            self_selected=origin.self_selected if origin else True,
            created_at=now,
            expires_at=now + datetime.timedelta(minutes=settings.ACCESS_ATTEST_MINUTES),
            login_key=access.lookup.login_key,
            channel=origin.channel if origin else "",
            client_id=origin.client_id if origin else "",
            decision_ref=origin.decision_ref if origin else "",
        )
        details: dict[str, Detail] = {}
        if flagged:
            # The patient is told: the notice commits with the attest and its event or not at all.
            user = caller.user
            notice = notices.create_notice(
                kind=policy.PATIENT_NOTICE_KIND[Basis(basis)],
                basis=basis,
                patient=access.patient,
                attest_id=attest.attest_id,
                accessed_at=now,
                organisation_orgnr=where.orgnr if where else "",
                organisation_name=where.name if where else "",
                clinician_name=str(user.display_name or user.username),
                clinician_authorizations=access.clinician.authorizations,
            )
            details["notice_id"] = str(notice.notice_id)
            if situation:
                details["situation"] = situation
        record_event(
            (events.EMERGENCY_ACCESS if flagged else events.BASIS_STATED)(
                outcome=Outcome.GRANTED,
                patient=access.patient,
                attest=attest,
                reason_text=reason,
                flagged_for_review=flagged,
                details=details or None,
            ),
            actor=caller.actor,
            where=where,
        )
    return BasisResult(attest, decision)


def refuse_basis_form(*, caller: Caller, access: PatientAccess, reason_code: str) -> None:
    """A basis form that did not validate (e.g. FORHØYET on the ordinary form, or an
    elevated basis without the confirmation): nothing is stored, but the attempt is
    logged like any other refusal."""

    record_event(
        events.ACCESS_DENIED(outcome=Outcome.INVALID, reason_code=reason_code, patient=access.patient),
        actor=caller.actor,
        where=caller.where,
    )


def refuse_by_status(
    *,
    caller: Caller,
    access: PatientAccess,
    decision: policy.Decision,
    visit: Mapping[str, str] | None = None,
) -> None:
    """The status pre-check refused (a block of this clinician, a reservation): logged as
    the list logs it, before any basis is asked."""

    record_event(
        events.ACCESS_DENIED(
            outcome=Outcome.DENIED,
            reason_code=decision.reason_code,
            patient=access.patient,
            attest=access.attest,
            details=visit,
        ),
        actor=caller.actor,
        where=caller.where,
    )
