"""Loading the facts the policy decides on. Reads only; a bounded number of queries."""

from __future__ import annotations

import datetime
import functools
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, cast
from uuid import UUID

from django.db import connection
from django.db.models import Exists, JSONField, OuterRef, QuerySet, Subquery
from django.db.models.expressions import RawSQL
from django.db.models.functions import JSONObject

from pjd_portal.access import policy
from pjd_portal.access.models import AccessAttest, PatientLookup
from pjd_portal.accounts.caller import Caller
from pjd_portal.accounts.models import Role
from pjd_portal.auditlog import events
from pjd_portal.auditlog.models import AccessEvent
from pjd_portal.documents.models import DocumentSource
from pjd_portal.lib.compiled import compiled, instance_from, prepared, with_values
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
        pid=caller.user.pid or "",
    )


def patient_facts(patient: Patient) -> policy.PatientFacts:
    """Privacy choices in force now. Read on every request: a choice made a moment ago
    applies to the very next request, so nothing here is cached across requests."""

    choices = PrivacyChoice.objects.filter(patient=patient, lifted_at__isnull=True).values_list(
        "kind", "blocked_hpr_number"
    )
    return _patient_facts(patient, choices)


def _patient_facts(patient: Patient, choices: Iterable[tuple[str, str]]) -> policy.PatientFacts:
    reserved = restricted = False
    blocked: set[str] = set()
    for kind, hpr in choices:
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


# An attest is in force only once the event that states it is in the log (audit 0018
# indexes this): one stored without its event (the write failed after it) opens nothing.
_stating_event = AccessEvent.objects.filter(
    attest_id=OuterRef("pk"), event_type__in=[events.BASIS_STATED.name, events.EMERGENCY_ACCESS.name]
)


def stating_event() -> QuerySet[AccessEvent]:
    """The events that put an attest in force, for an `Exists` against an attest query."""

    return _stating_event


def patient_id_for(national_id: str) -> int | None:
    return Patient.objects.filter(national_id=national_id).values_list("pk", flat=True).first()


def latest_attest(lookup: PatientLookup, now: datetime.datetime) -> AccessAttest | None:
    """The newest live attest of this user, organisation and patient, from this lookup or
    an earlier one: a basis stated a few minutes ago still holds when the clinician looks
    the same patient up again (the policy checks it is theirs, here and live)."""

    return (
        AccessAttest.objects.filter(
            user_id=lookup.user_id,
            organisation_id=lookup.organisation_id,
            patient_id=lookup.patient_id,
            login_key=lookup.login_key,
            expires_at__gt=now,
        )
        .filter(Exists(_stating_event))
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


def _rules(
    source_id: int,
    *,
    list_authorizations: Iterable[str] | None,
    list_organisation_kinds: Iterable[str] | None,
    open_authorizations: Iterable[str] | None,
    open_organisation_kinds: Iterable[str] | None,
    list_only_if_may_open: bool,
) -> policy.SourceRules:
    return policy.SourceRules(
        source_id=source_id,
        list_authorizations=frozenset(list_authorizations or ()),
        list_organisation_kinds=frozenset(list_organisation_kinds or ()),
        open_authorizations=frozenset(open_authorizations or ()),
        open_organisation_kinds=frozenset(open_organisation_kinds or ()),
        list_only_if_may_open=bool(list_only_if_may_open),
    )


def source_rules() -> list[policy.SourceRules]:
    """Every source's sharing rules, in one query. Read per request like the privacy
    choices: a rule changed in the admin area applies to the next request."""

    return [
        _rules(
            source.pk,
            list_authorizations=source.list_authorizations,
            list_organisation_kinds=source.list_organisation_kinds,
            open_authorizations=source.open_authorizations,
            open_organisation_kinds=source.open_organisation_kinds,
            list_only_if_may_open=source.list_only_if_may_open,
        )
        for source in DocumentSource.objects.all()
    ]


# --- The clinician's handle, with everything the policy decides on, in one query --------
#
# A page behind a handle needs the lookup, the patient, the patient's privacy choices in
# force, the newest live attest and every source's rules: read together, as one statement
# (one round trip), fresh on every request as the separate reads were. The lists come back
# as JSON built by the database: json_agg on PostgreSQL, json_group_array on SQLite.

_SOURCE_RULE_COLUMNS = (
    "list_authorizations",
    "list_organisation_kinds",
    "open_authorizations",
    "open_organisation_kinds",
)


def _json_subqueries(vendor: str) -> tuple[str, str]:
    choice = PrivacyChoice._meta.db_table
    lookup = PatientLookup._meta.db_table
    source = DocumentSource._meta.db_table
    if vendor == "postgresql":
        agg, obj, embed = "json_agg", "json_build_object", "{}"
    else:
        # SQLite keeps a JSON column as text: json() embeds it as JSON, not as a string.
        agg, obj, embed = "json_group_array", "json_object", "json({})"
    rules = ", ".join(f"'{c}', {embed.format(f's.{c}')}" for c in _SOURCE_RULE_COLUMNS)
    choices_sql = (
        f"(SELECT {agg}({obj}('kind', c.kind, 'hpr', c.blocked_hpr_number)) FROM {choice} c "  # noqa: S608
        f'WHERE c.patient_id = "{lookup}"."patient_id" AND c.lifted_at IS NULL)'
    )
    sources_sql = (
        f"(SELECT {agg}({obj}('id', s.id, {rules}, 'list_only_if_may_open', s.list_only_if_may_open)) "  # noqa: S608
        f"FROM {source} s)"
    )
    return choices_sql, sources_sql


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


_ATTEST_FIELDS = [f.attname for f in AccessAttest._meta.concrete_fields]


def _attest_from(values: dict[str, Any] | None) -> AccessAttest | None:
    return instance_from(AccessAttest, values) if values else None


_PATIENT_FIELDS = [f.attname for f in Patient._meta.concrete_fields]


@dataclass(frozen=True)
class HandleFacts:
    lookup: PatientLookup
    patient_facts: policy.PatientFacts
    attest: AccessAttest | None
    source_rules: list[policy.SourceRules]


def with_handle_facts(lookups: QuerySet[PatientLookup], now: datetime.datetime) -> QuerySet[PatientLookup]:
    """These lookups with the patient, the privacy choices in force, the newest live attest
    of the lookup's user, organisation and patient (as `latest_attest`) and every source's
    rules, all in the one query (`handle_facts` reads them)."""

    choices_sql, sources_sql = _json_subqueries(connection.vendor)
    attest = (
        AccessAttest.objects.filter(
            user_id=OuterRef("user_id"),
            organisation_id=OuterRef("organisation_id"),
            patient_id=OuterRef("patient_id"),
            login_key=OuterRef("login_key"),
            expires_at__gt=now,
        )
        .filter(Exists(_stating_event))
        .order_by("-created_at")
        .values(j=JSONObject(**{name: name for name in _ATTEST_FIELDS}))[:1]
    )
    return lookups.annotate(
        pjd_patient=JSONObject(**{name: f"patient__{name}" for name in _PATIENT_FIELDS}),
        pjd_choices=RawSQL(choices_sql, []),  # noqa: S611 - no parameters, table names only
        pjd_sources=RawSQL(sources_sql, []),  # noqa: S611
        pjd_attest=Subquery(attest, output_field=JSONField()),
    )


# Building that query costs more than running it (about 1.7 ms of the ORM's time on every
# request): it is compiled once per purpose, with stand-ins for the handle, the person, the
# organisation and the time, and run with the request's own values in their places.
_STAND_IN_HANDLE = UUID("00000000-0000-4000-8000-00000000d1ce")
_STAND_IN_USER = -7_391_063
_STAND_IN_ORGANISATION = -7_391_064
_STAND_IN_LOGIN_KEY = "pjd-stand-in-login-key-7391065"
_STAND_IN_NOW = datetime.datetime(1970, 1, 2, 3, 4, 5, 678901, tzinfo=datetime.UTC)


@functools.lru_cache(maxsize=8)
def _compiled_handle_query(purpose: str, vendor: str) -> tuple[str, tuple[Any, ...]]:
    lookups = PatientLookup.objects.filter(
        handle=_STAND_IN_HANDLE,
        user_id=_STAND_IN_USER,
        organisation_id=_STAND_IN_ORGANISATION,
        login_key=_STAND_IN_LOGIN_KEY,
        purpose=purpose,
        expires_at__gt=_STAND_IN_NOW,
    )
    return compiled(with_handle_facts(lookups, _STAND_IN_NOW))


def live_lookup(
    *,
    user_id: int,
    organisation_id: int,
    login_key: str,
    handle: UUID,
    purpose: str,
    now: datetime.datetime,
) -> PatientLookup | None:
    """The live lookup behind this handle of this person, login, organisation and purpose, with
    the facts `handle_facts` reads; None if there is none. One query."""

    sql, params = _compiled_handle_query(purpose, connection.vendor)
    put = {
        prepared(PatientLookup, "handle", _STAND_IN_HANDLE): prepared(PatientLookup, "handle", handle),
        _STAND_IN_USER: user_id,
        _STAND_IN_ORGANISATION: organisation_id,
        _STAND_IN_LOGIN_KEY: login_key,
        prepared(PatientLookup, "expires_at", _STAND_IN_NOW): prepared(PatientLookup, "expires_at", now),
    }
    # The handle, the person, the organisation, the login, and the time twice (the
    # lookup's, the attest's).
    values = with_values(params, put, expected=6)
    return next(iter(PatientLookup.objects.raw(sql, values)), None)


def handle_facts(lookup: PatientLookup) -> HandleFacts:
    """The facts read with a lookup by `with_handle_facts`."""

    extra = cast(Any, lookup)
    choices = [(c["kind"], c["hpr"] or "") for c in _json(extra.pjd_choices) or []]
    rules = sorted(
        (
            _rules(
                int(r["id"]),
                **{c: _json(r[c]) for c in _SOURCE_RULE_COLUMNS},
                list_only_if_may_open=bool(r["list_only_if_may_open"]),
            )
            for r in _json(extra.pjd_sources) or []
        ),
        key=lambda r: r.source_id,
    )
    patient = instance_from(Patient, _json(extra.pjd_patient))
    lookup.patient = patient
    return HandleFacts(
        lookup=lookup,
        patient_facts=_patient_facts(patient, choices),
        attest=_attest_from(_json(extra.pjd_attest)),
        source_rules=rules,
    )
