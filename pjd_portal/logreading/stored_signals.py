"""Computing each event's risk signals once, shortly after the access, and storing them.

`compute_signals` (run every minute by `manage.py compute_signals`, docs/operations.md)
takes the events in some auditor's scope that have no stored signals yet, in keyset
chunks, loads their facts with `risk.annotate_facts` (the patient's fastlege, address
protection and name, the organisation's earlier contact, the colleagues, the clinician's
patients in the window: all as they are now, that is as they were a minute after the
access) and writes one `EventSignals` row per event and reviewing organisation. Rows are
never updated: a later change of the patient's fastlege, a block lifted or an address
protection added does not move the signals of an access already made.

"Many patients" and "no care relation" look only at earlier events, so computing them
after the fact gives what the same rule would have given at the moment of access. The
thresholds are those in force when the row is computed; changing them later changes the
signals of new accesses only.

Which events are computed: everything before the watermark (`SignalWatermark`) was
computed, but for events committed late (a long transaction that wrote an event with an
earlier time after a later one was computed): each run therefore looks back
`settings.LOG_SIGNALS_LOOKBACK_MINUTES` before the watermark for events still without
rows. The search (`log_search`) shows the events without rows too, with their signals
computed on the fly as before, so nothing is ever left out while the job catches up.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from dataclasses import dataclass

from django.conf import settings
from django.db.models import Exists, Min, OuterRef, Q, QuerySet
from django.utils import timezone

from pjd_portal.auditlog.models import AccessEvent
from pjd_portal.logreading import risk
from pjd_portal.logreading.models import SIGNAL_FIELDS, EventSignals, SignalWatermark

CHUNK = 500
WINDOW = datetime.timedelta(hours=1)
MAX_WINDOW = datetime.timedelta(days=32)


@dataclass
class ComputeCounts:
    events: int = 0
    rows: int = 0
    computed_before: datetime.datetime | None = None


def in_some_scope_q() -> Q:
    """The events some organisation's auditors can see (`policy.log_review_events_q`)."""

    return ~Q(organisation_orgnr="") | ~Q(source_orgnr="")


def without_rows(events: QuerySet[AccessEvent]) -> QuerySet[AccessEvent]:
    return events.filter(~Exists(EventSignals.objects.filter(event_pk=OuterRef("pk"))))


def tail_start() -> datetime.datetime | None:
    """From when on events may still lack stored signals (None: from the beginning)."""

    watermark = SignalWatermark.objects.filter(pk=1).values_list("computed_before", flat=True).first()
    if watermark is None:
        return None
    return watermark - datetime.timedelta(minutes=settings.LOG_SIGNALS_LOOKBACK_MINUTES)


def reviewers(event: AccessEvent) -> list[str]:
    """The organisations whose auditors see the event: the acting one, and the source's."""

    return list(dict.fromkeys(o for o in (event.organisation_orgnr, event.source_orgnr) if o))


def rows_for(
    events: Iterable[AccessEvent], thresholds: risk.Thresholds, now: datetime.datetime
) -> list[EventSignals]:
    """The rows of events loaded through `risk.annotate_facts`."""

    rows = []
    for event in events:
        facts = risk.facts_for(event)
        for reviewer in reviewers(event):
            fired = set(risk.signals_for(facts, thresholds, own_staff=reviewer == event.organisation_orgnr))
            rows.append(
                EventSignals(
                    event_pk=event.pk,
                    reviewer_orgnr=reviewer,
                    occurred_at=event.occurred_at,
                    event_type=event.event_type,
                    outcome=event.outcome,
                    organisation_orgnr=event.organisation_orgnr,
                    source_orgnr=event.source_orgnr,
                    actor_hpr_number=event.actor_hpr_number,
                    actor_name=event.actor_name,
                    patient_id=event.patient_id,
                    patient_national_id=event.patient_national_id,
                    computed_at=now,
                    **{name: name in fired for name in SIGNAL_FIELDS},
                )
            )
    return rows


def store(events: list[AccessEvent], thresholds: risk.Thresholds) -> int:
    """Store the rows of these events (loaded through `annotate_facts`). A row already
    there (a run at the same time) is left as it is. Returns the rows offered."""

    rows = rows_for(events, thresholds, timezone.now())
    EventSignals.objects.bulk_create(rows, ignore_conflicts=True)
    return len(rows)


def _compute_window(
    todo: QuerySet[AccessEvent],
    window: tuple[datetime.datetime, datetime.datetime],
    thresholds: risk.Thresholds,
    chunk: int,
    counts: ComputeCounts,
) -> None:
    base = todo.filter(occurred_at__gte=window[0], occurred_at__lt=window[1])
    after: tuple[datetime.datetime, int] | None = None
    while True:
        query = base
        if after is not None:
            query = query.filter(
                Q(occurred_at__gt=after[0]) | Q(occurred_at=after[0], pk__gt=after[1]),
                occurred_at__gte=after[0],
            )
        events = list(
            risk.annotate_facts(query, thresholds, between=window).order_by("occurred_at", "pk")[:chunk]
        )
        if not events:
            return
        after = (events[-1].occurred_at, events[-1].pk)
        counts.events += len(events)
        counts.rows += store(events, thresholds)


def compute_signals(
    *,
    until: datetime.datetime | None = None,
    thresholds: risk.Thresholds | None = None,
    chunk: int = CHUNK,
) -> ComputeCounts:
    """Store the signals of every event in scope before `until` (default now) that has
    none yet, from the watermark's lookback on; then move the watermark to `until`."""

    until = until or timezone.now()
    thresholds = thresholds or risk.Thresholds.from_settings()
    counts = ComputeCounts()
    todo = without_rows(AccessEvent.objects.filter(in_some_scope_q(), occurred_at__lt=until))
    since = tail_start()
    if since is None:  # the first run: from the log's first event (a backfill)
        since = todo.aggregate(first=Min("occurred_at"))["first"] or until
    # In windows of time, so that each query reads one window's events however far back a
    # backfill starts (the log has no index in time order over all organisations: BRIN),
    # within a window in keyset chunks; an empty window doubles the next, to cross gaps.
    start, window = since, WINDOW
    while start < until:
        end = min(start + window, until)
        before = counts.events
        _compute_window(todo, (start, end), thresholds, chunk, counts)
        window = WINDOW if counts.events > before else min(window * 2, MAX_WINDOW)
        start = end
    # Forward only: a run with an earlier `until`, at the same time, leaves it where it is.
    now = timezone.now()
    if not SignalWatermark.objects.filter(pk=1, computed_before__lt=until).update(
        computed_before=until, updated_at=now
    ):
        SignalWatermark.objects.get_or_create(pk=1, defaults={"computed_before": until, "updated_at": now})
    counts.computed_before = until
    return counts


def signals_of(
    events: list[AccessEvent], thresholds: risk.Thresholds
) -> dict[tuple[int, str], tuple[str, ...]]:
    """The stored signals of these events, per (event pk, reviewing organisation); those
    of events not computed yet are computed now, from today's facts, and stored (two
    queries, three when some were missing). For the nightly review queue."""

    pks = [event.pk for event in events]
    found = {
        (row.event_pk, row.reviewer_orgnr): row.signals
        for row in EventSignals.objects.filter(event_pk__in=pks)
    }
    done = {pk for pk, _reviewer in found}
    missing = [event.pk for event in events if event.pk not in done and reviewers(event)]
    if missing:
        wanted = set(missing)
        times = [event.occurred_at for event in events if event.pk in wanted]
        loaded = list(
            risk.annotate_facts(
                AccessEvent.objects.filter(pk__in=missing), thresholds, between=(min(times), max(times))
            )
        )
        rows = rows_for(loaded, thresholds, timezone.now())
        EventSignals.objects.bulk_create(rows, ignore_conflicts=True)
        # A run at the same time may have stored them first: what is stored is what counts.
        found.update(
            {
                (row.event_pk, row.reviewer_orgnr): row.signals
                for row in EventSignals.objects.filter(event_pk__in=missing)
            }
        )
    return found
