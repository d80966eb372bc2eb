"""The auditor's overview (loggkontroll, oversikt): counts over a period, read only.

Every count is made in the database (GROUP BY), a fixed number of queries whatever the
period or the size of the log, and starts from the auditor's scope
(`policy.log_review_events_q`), the same as the search: the overview can never count an
event the search would not show.

The flagged counts (per signal, and the clinicians with the most flagged events) read the
stored signals (`models.EventSignals`), as the search and the review queue do, with the
events not yet computed counted the way the search shows them (`flagged_counts`).
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

from django.db.models import Count, Q, QuerySet
from django.db.models.functions import TruncDate

from pjd_portal.access import policy
from pjd_portal.auditlog import events
from pjd_portal.auditlog.models import AccessEvent
from pjd_portal.logreading import risk, stored_signals
from pjd_portal.logreading.models import EventSignals

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
    """Flagged events per signal and the clinicians with the most flagged events. An event
    with several signals counts once per signal, and once for its clinician. The context
    signals count only the auditor's own staff's events, as in the search.

    The counts are those of the stored signals (`models.EventSignals`, fixed a minute
    after the access), as the search and the queue read them, plus the events the job has
    not reached yet (`stored_signals.tail_start`), whose signals are computed now with the
    same rules (`risk.signal_q`): so the overview, the search and the queue agree, and no
    event is left out. Six queries at most, whatever the size of the log."""

    signal_names = [risk.Signal(signal).value for signal in risk.Signal]
    stored = EventSignals.objects.filter(
        reviewer_orgnr=staff.organisation_orgnr, occurred_at__gte=period.start, occurred_at__lt=period.end
    )
    if not policy.may_review_access_log(staff):
        stored = stored.none()
    since = stored_signals.tail_start()
    tail = stored_signals.without_rows(events_in_scope(staff, period))
    if since is not None:
        tail = tail.filter(occurred_at__gte=since)
    tail = risk.annotate_facts(tail, thresholds)
    tail_filters = {
        name: risk.signal_q(name, thresholds, reviewer_orgnr=staff.organisation_orgnr)
        for name in signal_names
    }
    stored_totals = stored.aggregate(**{name: Count("pk", filter=Q(**{name: True})) for name in signal_names})
    tail_totals = tail.aggregate(**{name: Count("pk", filter=q) for name, q in tail_filters.items()})
    per_signal = [
        Tally(str(signal), str(signal.label), (stored_totals[name] or 0) + (tail_totals[name] or 0))
        for signal, name in zip(risk.Signal, signal_names, strict=True)
    ]
    return FlaggedCounts(per_signal=per_signal, clinicians=_top_clinicians(stored, tail, tail_filters, top))


def _top_clinicians(
    stored: QuerySet[EventSignals], tail: QuerySet[AccessEvent], tail_filters: dict[str, Q], top: int
) -> list[ClinicianTally]:
    """The `top` clinicians by flagged events, stored and tail together, exactly: a
    clinician with no flagged event in the tail has only stored ones, so if they belong in
    the merged top they are in the stored top already; those with tail events get their
    stored count looked up by key. Three queries (two when the tail has none)."""

    def flagged(query: QuerySet[Any], any_signal: Q) -> QuerySet[Any]:
        grouped: QuerySet[Any] = (
            query.filter(any_signal)
            .exclude(actor_name="", actor_hpr_number="")
            .values("actor_hpr_number", "actor_name")
            .annotate(n=Count("pk"))
        )
        return grouped

    any_stored = Q()
    for name in tail_filters:
        any_stored |= Q(**{name: True})
    any_tail = Q()
    for q in tail_filters.values():
        any_tail |= q
    totals: dict[tuple[str, str], int] = {}
    for row in flagged(stored, any_stored).order_by("-n", "actor_name", "actor_hpr_number")[:top]:
        totals[(row["actor_name"], row["actor_hpr_number"])] = row["n"]
    in_tail = {
        (row["actor_name"], row["actor_hpr_number"]): row["n"] for row in flagged(tail, any_tail).order_by()
    }
    if in_tail:
        missing = [key for key in in_tail if key not in totals]
        if missing:
            only = Q()
            for name, hpr in missing:
                only |= Q(actor_name=name, actor_hpr_number=hpr)
            for row in flagged(stored.filter(only), any_stored).order_by():
                totals[(row["actor_name"], row["actor_hpr_number"])] = row["n"]
        for key, n in in_tail.items():
            totals[key] = totals.get(key, 0) + n
    ranked = sorted(totals.items(), key=lambda item: (-item[1], item[0][0], item[0][1]))
    return [ClinicianTally(name, hpr, n) for (name, hpr), n in ranked[:top]]


def overview(staff: policy.StaffFacts, period: Period, *, thresholds: risk.Thresholds) -> Overview:
    """The log's part of the overview in at most eight queries, whatever the period or the size of
    the log (the review items' counts are the review queue's: review/overview.py)."""

    days = per_day(staff, period)
    return Overview(
        period=period,
        total=sum(day.count for day in days),
        per_day=days,
        per_type=per_type(staff, period),
        flagged=flagged_counts(staff, period, thresholds=thresholds),
    )
