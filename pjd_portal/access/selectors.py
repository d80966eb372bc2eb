"""Loading the facts the policy decides on. Reads only; a bounded number of queries."""

from __future__ import annotations

import datetime

from pjd_portal.access import policy
from pjd_portal.access.models import AccessAttest, PatientLookup
from pjd_portal.accounts.caller import Caller
from pjd_portal.accounts.models import Role
from pjd_portal.documents.models import DocumentSource
from pjd_portal.patients.models import Patient, PrivacyChoice, PrivacyChoiceKind


def clinician_facts(caller: Caller) -> policy.ClinicianFacts:
    org = caller.organisation
    return policy.ClinicianFacts(
        user_id=caller.user.pk,
        hpr_number=caller.user.hpr_number or "",
        authorizations=caller.authorizations,
        organisation_id=org.pk if org else None,
        organisation_kind=org.kind if org else None,
        has_clinician_role=Role.CLINICIAN in caller.roles,
    )


def staff_facts(caller: Caller) -> policy.StaffFacts:
    """Who is asking in the administration area."""

    org = caller.organisation
    return policy.StaffFacts(
        user_id=caller.user.pk,
        organisation_id=org.pk if org else None,
        roles=caller.roles,
        organisation_orgnr=org.orgnr if org else "",
    )


def patient_facts(patient: Patient) -> policy.PatientFacts:
    """Privacy choices in force now. Read on every request: a choice made a moment ago
    applies to the very next request, so nothing here is cached across requests."""

    reserved = restricted = False
    blocked: set[str] = set()
    for kind, hpr in PrivacyChoice.objects.filter(patient=patient, lifted_at__isnull=True).values_list(
        "kind", "blocked_hpr_number"
    ):
        if kind == PrivacyChoiceKind.RESERVATION:
            reserved = True
        elif kind == PrivacyChoiceKind.RESTRICTION:
            restricted = True
        elif kind == PrivacyChoiceKind.BLOCKED_CLINICIAN and hpr:
            blocked.add(hpr)
    return policy.PatientFacts(
        patient_id=patient.pk,
        fastlege_hpr_number=patient.fastlege_hpr_number,
        reserved=reserved,
        restricted=restricted,
        blocked_hpr_numbers=frozenset(blocked),
        address_protected=patient.has_protected_address,
    )


def latest_attest(lookup: PatientLookup, now: datetime.datetime) -> AccessAttest | None:
    """The newest live attest of this user, organisation and patient, from this lookup or
    an earlier one: a basis stated a few minutes ago still holds when the clinician looks
    the same patient up again (the policy checks it is theirs, here and live)."""

    return (
        AccessAttest.objects.filter(
            user_id=lookup.user_id,
            organisation_id=lookup.organisation_id,
            patient_id=lookup.patient_id,
            expires_at__gt=now,
        )
        .order_by("-created_at")
        .first()
    )


def attest_facts(attest: AccessAttest | None) -> policy.AttestFacts | None:
    if attest is None:
        return None
    return policy.AttestFacts(
        basis=attest.basis,
        user_id=attest.user_id,
        organisation_id=attest.organisation_id,
        patient_id=attest.patient_id,
        expires_at=attest.expires_at,
    )


def source_rules() -> list[policy.SourceRules]:
    """Every source's sharing rules, in one query. Read per request like the privacy
    choices: a rule changed in the admin area applies to the next request."""

    return [
        policy.SourceRules(
            source_id=source.pk,
            list_authorizations=frozenset(source.list_authorizations or ()),
            list_organisation_kinds=frozenset(source.list_organisation_kinds or ()),
            open_authorizations=frozenset(source.open_authorizations or ()),
            open_organisation_kinds=frozenset(source.open_organisation_kinds or ()),
            list_only_if_may_open=source.list_only_if_may_open,
        )
        for source in DocumentSource.objects.all()
    ]
