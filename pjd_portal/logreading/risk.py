"""Risk signals for the log review (loggkontroll): what makes an access worth a look.

The signals are those auditors look for (docs/audit-log.md, "Log review"): emergency
or elevated access, no care relation, the clinician looking up themselves, a family
member (same surname) or a colleague, many patients in a short time, unusual hours, a
protected-address patient, attempts by a blocked clinician and a clinician stopped by the
lookup rate limit.

Each signal is a pure function of `EventFacts`, facts already loaded with the event.
The facts that need other rows (an earlier contact, the patient being a colleague, how
many patients the clinician touched just before) are loaded in the same query as the
events, as annotations (`annotate_facts`), so a page costs one query however many rows it
has. Each signal is also a query filter (`signal_q`) over the same annotations, so the
search can filter on a signal in the database and page exactly (keyset, never OFFSET);
the test suite keeps the two forms agreeing, as for the access policy's list filter.

Signals are computed when the log is read, not stored: the event rows are append-only,
and a signal such as "many patients" depends on events written after the row.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import models
from django.db.models import Count, Exists, F, OuterRef, Q, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce, Concat, ExtractHour, ExtractIsoWeekDay, Upper
from django.utils.translation import gettext_lazy as _

from pjd_portal.access.models import Basis
from pjd_portal.accounts.roles import grants_in_force
from pjd_portal.auditlog import events
from pjd_portal.auditlog.events import Outcome
from pjd_portal.auditlog.models import AccessEvent
from pjd_portal.logreading.selectors import PATIENT_LOG_EVENT_TYPES

OSLO = ZoneInfo("Europe/Oslo")

# The signals are about accesses to patients: logins, log reads and the review's own
# events carry none.
CLINICAL_EVENT_TYPES = PATIENT_LOG_EVENT_TYPES
# What counts as an earlier contact: an access that was granted, not a refusal.
CONTACT_EVENT_TYPES = events.CONTACT_TYPES  # the registry says which granted accesses are contacts
EMERGENCY_BASES = frozenset({Basis.AKUTT, Basis.FORHOYET_SAMTYKKE, Basis.FORHOYET_AKUTT})
BLOCKED_REASON_CODE = "clinician_blocked"


class Signal(models.TextChoices):
    EMERGENCY = "emergency", _("Emergency or elevated access")
    NO_CARE_RELATION = "no_care_relation", _("No care relation")
    SELF_LOOKUP = "self_lookup", _("Looked up themselves")
    SAME_SURNAME = "same_surname", _("Same surname as the patient")
    COLLEAGUE = "colleague", _("The patient is a colleague")
    MANY_PATIENTS = "many_patients", _("Many patients in a short time")
    OUTSIDE_HOURS = "outside_hours", _("Outside normal hours")
    PROTECTED_ADDRESS = "protected_address", _("Patient with a protected address")
    BLOCKED_CLINICIAN = "blocked_clinician", _("Attempt by a blocked clinician")
    RATE_LIMITED = "rate_limited", _("Too many lookups in a short time")


@dataclass(frozen=True)
class Thresholds:
    """The settings the signals depend on (settings.LOG_REVIEW_*)."""

    many_patients: int = 20
    many_patients_minutes: int = 10
    workday_start_hour: int = 7
    workday_end_hour: int = 17
    care_relation_days: int = 365
    same_visit_hours: int = 8

    @classmethod
    def from_settings(cls) -> Thresholds:
        return cls(
            many_patients=settings.LOG_REVIEW_MANY_PATIENTS,
            many_patients_minutes=settings.LOG_REVIEW_MANY_PATIENTS_MINUTES,
            workday_start_hour=settings.LOG_REVIEW_WORKDAY_START_HOUR,
            workday_end_hour=settings.LOG_REVIEW_WORKDAY_END_HOUR,
            care_relation_days=settings.LOG_REVIEW_CARE_RELATION_DAYS,
            same_visit_hours=settings.LOG_REVIEW_SAME_VISIT_HOURS,
        )


def explanation(signal: str, thresholds: Thresholds) -> str:
    """The signal in plain Norwegian (through the translations), for the auditor."""

    texts = {
        Signal.EMERGENCY: _(
            "The clinician used emergency access or an elevated basis (forhøyet), which sets "
            "the usual rules aside. Check that the reason given fits the situation."
        ),
        Signal.NO_CARE_RELATION: _(
            "The patient is not on the clinician's GP list, and the organisation had not "
            "accessed this patient in the %(days)d days before this visit. Check that the "
            "patient was in their care."
        ),
        Signal.SELF_LOOKUP: _(
            "The clinician looked up their own records. Health personnel may not use the "
            "portal to read about themselves."
        ),
        Signal.SAME_SURNAME: _(
            "The clinician has the same surname as the patient, who may be family. Check "
            "that the access was part of their work."
        ),
        Signal.COLLEAGUE: _(
            "The patient works in the same organisation as the clinician. Check that the "
            "access was part of the patient's care."
        ),
        Signal.MANY_PATIENTS: _(
            "The clinician accessed %(count)d or more different patients within %(minutes)d "
            "minutes. This can be browsing without a care purpose."
        ),
        Signal.OUTSIDE_HOURS: _(
            "The access happened outside normal hours (weekdays %(start)02d:00–%(end)02d:00, "
            "Norwegian time). Check that the clinician was on duty."
        ),
        Signal.PROTECTED_ADDRESS: _(
            "The patient has a protected address (fortrolig or strengt fortrolig). Every "
            "access to such a patient deserves a look."
        ),
        Signal.BLOCKED_CLINICIAN: _(
            "The patient has blocked this clinician, and the clinician still tried to access "
            "the patient's documents."
        ),
        Signal.RATE_LIMITED: _(
            "The clinician looked up more patients than the portal allows in a short time and "
            "was stopped. Check what the lookups before it were for."
        ),
    }
    values = {
        "days": thresholds.care_relation_days,
        "count": thresholds.many_patients,
        "minutes": thresholds.many_patients_minutes,
        "start": thresholds.workday_start_hour,
        "end": thresholds.workday_end_hour,
    }
    text = str(texts[Signal(signal)])
    return text % values if "%(" in text else text


@dataclass(frozen=True)
class EventFacts:
    """What the signals need to know about one event, already loaded."""

    event_type: str
    basis: str
    reason_code: str
    occurred_at: datetime.datetime
    actor_pid: str
    actor_hpr_number: str
    actor_name: str
    has_patient: bool
    patient_national_id: str
    patient_family_name: str = ""
    patient_fastlege_hpr_number: str = ""
    patient_address_protected: bool = False
    # From other rows (see annotate_facts):
    earlier_contact: bool = False
    patient_is_colleague: bool = False
    patients_in_window: int = 0


# --- the signals, one pure function each ---------------------------------------------


def _clinical(facts: EventFacts) -> bool:
    return facts.event_type in CLINICAL_EVENT_TYPES


def _about_patient(facts: EventFacts) -> bool:
    return _clinical(facts) and facts.has_patient


def emergency(facts: EventFacts) -> bool:
    return facts.basis in EMERGENCY_BASES or facts.event_type == events.EMERGENCY_ACCESS.name


def on_own_list(facts: EventFacts) -> bool:
    return bool(facts.actor_hpr_number) and facts.patient_fastlege_hpr_number == facts.actor_hpr_number


def no_care_relation(facts: EventFacts) -> bool:
    return _about_patient(facts) and not on_own_list(facts) and not facts.earlier_contact


def self_lookup(facts: EventFacts) -> bool:
    return _clinical(facts) and bool(facts.actor_pid) and facts.actor_pid == facts.patient_national_id


def same_surname(facts: EventFacts) -> bool:
    """The clinician's name ends with the patient's family name, as whole words."""

    family = facts.patient_family_name.upper()
    name = facts.actor_name.upper()
    if not (_about_patient(facts) and family and name):
        return False
    return name == family or name.endswith(" " + family)


def colleague(facts: EventFacts) -> bool:
    return _about_patient(facts) and facts.patient_is_colleague and not self_lookup(facts)


def many_patients(facts: EventFacts, thresholds: Thresholds) -> bool:
    return _clinical(facts) and facts.patients_in_window >= thresholds.many_patients


def outside_hours(facts: EventFacts, thresholds: Thresholds) -> bool:
    local = facts.occurred_at.astimezone(OSLO)
    return _clinical(facts) and (
        local.isoweekday() >= 6
        or local.hour < thresholds.workday_start_hour
        or local.hour >= thresholds.workday_end_hour
    )


def protected_address(facts: EventFacts) -> bool:
    return _about_patient(facts) and facts.patient_address_protected


def blocked_clinician(facts: EventFacts) -> bool:
    return facts.reason_code == BLOCKED_REASON_CODE


def rate_limited(facts: EventFacts) -> bool:
    return facts.event_type == events.RATE_LIMITED.name


# Signals that read other rows than the event itself (the organisation's earlier
# contact, its staff, the clinician's other accesses). They are shown only to the acting
# organisation's own auditors: to the auditors of an organisation whose document was read
# they would reveal activity outside their scope.
CONTEXT_SIGNALS = frozenset({"no_care_relation", "colleague", "many_patients"})


def signals_for(facts: EventFacts, thresholds: Thresholds, *, own_staff: bool = True) -> tuple[str, ...]:
    """The signals this event raises, in the order of `Signal`. `own_staff`: the reviewer
    belongs to the organisation the clinician acted for (else no context signals)."""

    fired = {
        Signal.EMERGENCY: emergency(facts),
        Signal.NO_CARE_RELATION: no_care_relation(facts),
        Signal.SELF_LOOKUP: self_lookup(facts),
        Signal.SAME_SURNAME: same_surname(facts),
        Signal.COLLEAGUE: colleague(facts),
        Signal.MANY_PATIENTS: many_patients(facts, thresholds),
        Signal.OUTSIDE_HOURS: outside_hours(facts, thresholds),
        Signal.PROTECTED_ADDRESS: protected_address(facts),
        Signal.BLOCKED_CLINICIAN: blocked_clinician(facts),
        Signal.RATE_LIMITED: rate_limited(facts),
    }
    return tuple(
        str(signal)
        for signal in Signal
        if fired[signal] and (own_staff or str(signal) not in CONTEXT_SIGNALS)
    )


# --- loading the facts with the events, and the signals as query filters --------------


def annotate_facts(
    events: QuerySet[AccessEvent],
    thresholds: Thresholds,
    *,
    between: tuple[datetime.datetime, datetime.datetime] | None = None,
) -> QuerySet[AccessEvent]:
    """The events with what the signals need, in the same query: the patient (and the
    document, for the pages), an earlier contact, a colleague, the patients in the window.
    `between`: the events are known to lie in this time range; the subqueries then carry
    constant bounds too, so PostgreSQL leaves out the months they cannot touch when it
    plans the query (the same rows: the bounds follow from the per-row ones)."""

    earlier_contact = AccessEvent.objects.filter(
        patient_id=OuterRef("patient_id"),
        organisation_orgnr=OuterRef("organisation_orgnr"),
        outcome=Outcome.GRANTED,
        event_type__in=sorted(CONTACT_EVENT_TYPES),
        occurred_at__gte=OuterRef("occurred_at") - datetime.timedelta(days=thresholds.care_relation_days),
        occurred_at__lt=OuterRef("occurred_at") - datetime.timedelta(hours=thresholds.same_visit_hours),
    )
    if between is not None:
        earlier_contact = earlier_contact.filter(
            occurred_at__gte=between[0] - datetime.timedelta(days=thresholds.care_relation_days),
            occurred_at__lt=between[1] - datetime.timedelta(hours=thresholds.same_visit_hours),
        )
    colleague_role = grants_in_force().filter(
        user__pid=OuterRef("patient_national_id"),
        content_object__orgnr=OuterRef("organisation_orgnr"),
    )
    window = datetime.timedelta(minutes=thresholds.many_patients_minutes)
    in_window = AccessEvent.objects.filter(
        actor_user_id=OuterRef("actor_user_id"),
        # Only what the clinician did for this organisation: its auditors' scope.
        organisation_orgnr=OuterRef("organisation_orgnr"),
        event_type__in=sorted(CLINICAL_EVENT_TYPES),
        patient__isnull=False,
        occurred_at__gt=OuterRef("occurred_at") - window,
        occurred_at__lte=OuterRef("occurred_at"),
    )
    if between is not None:
        in_window = in_window.filter(occurred_at__gt=between[0] - window, occurred_at__lte=between[1])
    patients_in_window = (
        in_window.order_by()
        .values("actor_user_id")
        .annotate(n=Count("patient_id", distinct=True))
        .values("n")[:1]
    )
    return events.select_related("patient", "document").annotate(
        risk_earlier_contact=Exists(earlier_contact),
        risk_colleague=Exists(colleague_role),
        risk_patients_in_window=Coalesce(
            Subquery(patients_in_window, output_field=models.IntegerField()), Value(0)
        ),
        risk_hour=ExtractHour("occurred_at", tzinfo=OSLO),
        risk_weekday=ExtractIsoWeekDay("occurred_at", tzinfo=OSLO),
        risk_actor_name_upper=Upper("actor_name"),
    )


def facts_for(event: AccessEvent) -> EventFacts:
    """The facts of an event loaded through `annotate_facts` (no further query)."""

    patient = event.patient if event.patient_id is not None else None
    annotations: Any = event
    return EventFacts(
        event_type=event.event_type,
        basis=event.basis,
        reason_code=event.reason_code,
        occurred_at=event.occurred_at,
        actor_pid=event.actor_pid,
        actor_hpr_number=event.actor_hpr_number,
        actor_name=event.actor_name,
        has_patient=patient is not None,
        patient_national_id=event.patient_national_id,
        patient_family_name=patient.family_name if patient is not None else "",
        patient_fastlege_hpr_number=patient.fastlege_hpr_number if patient is not None else "",
        patient_address_protected=patient.has_protected_address if patient is not None else False,
        earlier_contact=bool(annotations.risk_earlier_contact),
        patient_is_colleague=bool(annotations.risk_colleague),
        patients_in_window=int(annotations.risk_patients_in_window or 0),
    )


def signal_q(signal: str, thresholds: Thresholds, *, reviewer_orgnr: str | None = None) -> Q:
    """One signal as a filter over events loaded through `annotate_facts`: the same rule
    as the pure function of the same name. With `reviewer_orgnr`, a context signal
    matches only events the reviewer's own organisation's staff made (see CONTEXT_SIGNALS)."""

    clinical = Q(event_type__in=sorted(CLINICAL_EVENT_TYPES))
    about_patient = clinical & Q(patient__isnull=False)
    self_q = clinical & ~Q(actor_pid="") & Q(actor_pid=F("patient_national_id"))
    on_list = ~Q(actor_hpr_number="") & Q(patient__fastlege_hpr_number=F("actor_hpr_number"))
    family = Upper("patient__family_name")
    filters = {
        Signal.EMERGENCY: Q(basis__in=sorted(EMERGENCY_BASES)) | Q(event_type=events.EMERGENCY_ACCESS.name),
        Signal.NO_CARE_RELATION: about_patient & ~on_list & Q(risk_earlier_contact=False),
        Signal.SELF_LOOKUP: self_q,
        Signal.SAME_SURNAME: about_patient
        & ~Q(patient__family_name="")
        & (Q(risk_actor_name_upper=family) | Q(risk_actor_name_upper__endswith=Concat(Value(" "), family))),
        Signal.COLLEAGUE: about_patient & Q(risk_colleague=True) & ~self_q,
        Signal.MANY_PATIENTS: clinical & Q(risk_patients_in_window__gte=thresholds.many_patients),
        Signal.OUTSIDE_HOURS: clinical
        & (
            Q(risk_weekday__gte=6)
            | Q(risk_hour__lt=thresholds.workday_start_hour)
            | Q(risk_hour__gte=thresholds.workday_end_hour)
        ),
        Signal.PROTECTED_ADDRESS: about_patient & ~Q(patient__address_protection=""),
        Signal.BLOCKED_CLINICIAN: Q(reason_code=BLOCKED_REASON_CODE),
        Signal.RATE_LIMITED: Q(event_type=events.RATE_LIMITED.name),
    }
    q = filters[Signal(signal)]
    if reviewer_orgnr is not None and str(signal) in CONTEXT_SIGNALS:
        q &= Q(organisation_orgnr=reviewer_orgnr)
    return q
