"""The auditor's overview (loggkontroll, oversikt): counts over a period, read only.

Every count is made in the database (GROUP BY), a fixed number of queries whatever the
period or the size of the log, and starts from the auditor's scope
(`policy.log_review_events_q`), the same as the search: the overview can never count an
event the search would not show.

The flagged counts (per signal, and the clinicians with the most flagged events) are
behind one function, `flagged_counts`: today it evaluates the signals' query filters
(`risk.signal_q`) over the events as the search does; when signals are stored per event,
only that function changes.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from django.db.models import Count, Q, QuerySet
from django.db.models.functions import TruncDate

from pjd_portal.access import policy
from pjd_portal.auditlog import events
from pjd_portal.auditlog.models import AccessEvent
from pjd_portal.logreading import risk

# How many clinicians the "most flagged events" list shows.
TOP_CLINICIANS = 10


@dataclass(frozen=True)
class Period:
    """Whole days in Norwegian time, both inclusive."""

    first: datetime.date
    last: datetime.date

    @property
    def start(self) -> datetime.datetime:
        return datetime.datetime.combine(self.first, datetime.time.min, tzinfo=risk.OSLO)

    @property
    def end(self) -> datetime.datetime:  # exclusive
        return datetime.datetime.combine(
            self.last + datetime.timedelta(days=1), datetime.time.min, tzinfo=risk.OSLO
        )

    def days(self) -> list[datetime.date]:
        return [self.first + datetime.timedelta(days=n) for n in range((self.last - self.first).days + 1)]


@dataclass(frozen=True)
class Tally:
    """One bar: what is counted (a code), its label for people, and the count."""

    code: str
    label: str
    count: int


@dataclass(frozen=True)
class ClinicianTally:
    name: str
    hpr_number: str
    count: int


@dataclass(frozen=True)
class FlaggedCounts:
    per_signal: list[Tally]  # every signal, in the order of risk.Signal, zeros included
    clinicians: list[ClinicianTally]  # most flagged events first, at most TOP_CLINICIANS


@dataclass(frozen=True)
class Overview:
    period: Period
    total: int
    per_day: list[Tally]  # every day of the period, zeros included
    per_type: list[Tally]  # the types that occurred, most frequent first
    flagged: FlaggedCounts


def events_in_scope(staff: policy.StaffFacts, period: Period) -> QuerySet[AccessEvent]:
    return AccessEvent.objects.filter(
        policy.log_review_events_q(staff), occurred_at__gte=period.start, occurred_at__lt=period.end
    )


def per_day(staff: policy.StaffFacts, period: Period) -> list[Tally]:
    """Events per day (Norwegian time), one query; days without events count 0."""

    rows = (
        events_in_scope(staff, period)
        .annotate(day=TruncDate("occurred_at", tzinfo=risk.OSLO))
        .values("day")
        .annotate(n=Count("pk"))
        .order_by()
    )
    counts = {_as_date(row["day"]): row["n"] for row in rows}
    return [Tally(day.isoformat(), day.strftime("%d.%m.%Y"), counts.get(day, 0)) for day in period.days()]


def _as_date(value: datetime.date | str) -> datetime.date:
    # SQLite hands the truncated date back as text through .values().
    return value if isinstance(value, datetime.date) else datetime.date.fromisoformat(value)


def per_type(staff: policy.StaffFacts, period: Period) -> list[Tally]:
    """Events per event type, most frequent first, one query."""

    rows = (
        events_in_scope(staff, period)
        .values("event_type")
        .annotate(n=Count("pk"))
        .order_by("-n", "event_type")
    )
    return [Tally(row["event_type"], events.label(row["event_type"]), row["n"]) for row in rows]


def flagged_counts(
    staff: policy.StaffFacts, period: Period, *, thresholds: risk.Thresholds, top: int = TOP_CLINICIANS
) -> FlaggedCounts:
    """Flagged events per signal and the clinicians with the most flagged events, in two
    queries. An event with several signals counts once per signal, and once for its
    clinician. The context signals count only the auditor's own staff's events, as in the
    search (`risk.signal_q` with `reviewer_orgnr`)."""

    annotated = risk.annotate_facts(events_in_scope(staff, period), thresholds)
    signal_filters = {
        str(signal): risk.signal_q(signal, thresholds, reviewer_orgnr=staff.organisation_orgnr)
        for signal in risk.Signal
    }
    totals = annotated.aggregate(
        **{f"signal_{code}": Count("pk", filter=q) for code, q in signal_filters.items()}
    )
    per_signal = [
        Tally(str(signal), str(signal.label), totals[f"signal_{signal}"] or 0) for signal in risk.Signal
    ]
    any_signal = Q()
    for q in signal_filters.values():
        any_signal |= q
    rows = (
        annotated.filter(any_signal)
        .exclude(actor_name="", actor_hpr_number="")
        .values("actor_hpr_number", "actor_name")
        .annotate(n=Count("pk"))
        .order_by("-n", "actor_name", "actor_hpr_number")[:top]
    )
    clinicians = [ClinicianTally(row["actor_name"], row["actor_hpr_number"], row["n"]) for row in rows]
    return FlaggedCounts(per_signal=per_signal, clinicians=clinicians)


def overview(staff: policy.StaffFacts, period: Period, *, thresholds: risk.Thresholds) -> Overview:
    """The log's part of the overview in four queries, whatever the period or the size of
    the log (the review items' counts are the review queue's: review/overview.py)."""

    days = per_day(staff, period)
    return Overview(
        period=period,
        total=sum(day.count for day in days),
        per_day=days,
        per_type=per_type(staff, period),
        flagged=flagged_counts(staff, period, thresholds=thresholds),
    )
