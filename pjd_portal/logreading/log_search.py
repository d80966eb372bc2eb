"""Searching the access log for the log review (loggkontroll): reads only.

Every query starts from the auditor's scope, so search, event page and export can never
disagree about what an auditor may see. Results are newest first and paged by keyset on
(occurred_at, id), never OFFSET, with a signed cursor as in `audit.selectors`.

The search reads the stored signals (`models.EventSignals`: one row per event and
reviewing organisation, the signals as they were a minute after the access): the scope is
`reviewer_orgnr = X`, and each filter of the form has an index that gives its rows in the
page's order, so a page costs the same at the top of a ten-million-row log as deep in it.
The events the job has not reached yet (the last minute, or all of them where it never
ran) are found the old way (`live_events`: `policy.log_review_events_q`, signals computed
with the page by `risk.annotate_facts` and filtered by `risk.signal_q`) and merged in, so
none is ever left out.
"""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

from django.db.models import Q, QuerySet

from pjd_portal.access import policy
from pjd_portal.auditlog.models import AccessEvent
from pjd_portal.lib.cursor import Cursor, SignedCursor, after
from pjd_portal.logreading import risk, stored_signals
from pjd_portal.logreading.models import EventSignals

MAX_PAGE_SIZE = 200
EXPORT_CHUNK = 500
TAIL_CAP = 500  # events without stored signals loaded by key; more: the facts' query
_CURSOR_SALT = "pjd_portal.audit.log_search.cursor"


@dataclass(frozen=True)
class LogFilters:
    """What the auditor searches for; empty values do not filter."""

    patient_id: int | None = None
    patient_national_id: str = ""
    clinician: str = ""  # an HPR number (digits) or a part of the name
    organisation_orgnr: str = ""  # the acting organisation (the clinician's), by org.nr
    start: datetime.datetime | None = None  # inclusive
    end: datetime.datetime | None = None  # exclusive
    event_type: str = ""
    outcome: str = ""
    signal: str = ""


@dataclass(frozen=True)
class ReviewRow:
    event: AccessEvent
    signals: tuple[str, ...]


@dataclass(frozen=True)
class ReviewPage:
    rows: list[ReviewRow]
    next_cursor: str | None  # None on the last page


_CURSOR = SignedCursor(_CURSOR_SALT)


def encode_cursor(event: AccessEvent) -> str:
    return _CURSOR.encode(event.occurred_at, event.pk)


def cursor_at(occurred_at: datetime.datetime, pk: int) -> str:
    """A page link that starts after (occurred_at, pk): for the benchmark's deep pages."""
    return _CURSOR.encode(occurred_at, pk)


def decode_cursor(raw: str) -> Cursor:
    return _CURSOR.decode(raw)


def filters_q(filters: LogFilters) -> Q:
    q = Q()
    if filters.patient_id is not None:
        q &= Q(patient_id=filters.patient_id)
    elif filters.patient_national_id:
        q &= Q(patient_national_id=filters.patient_national_id)
    clinician = filters.clinician.strip()
    if clinician.isdigit():
        q &= Q(actor_hpr_number=clinician)
    elif clinician:
        q &= Q(actor_name__icontains=clinician)
    if filters.organisation_orgnr:
        q &= Q(organisation_orgnr=filters.organisation_orgnr)
    if filters.start is not None:
        q &= Q(occurred_at__gte=filters.start)
    if filters.end is not None:
        q &= Q(occurred_at__lt=filters.end)
    if filters.event_type:
        q &= Q(event_type=filters.event_type)
    if filters.outcome:
        q &= Q(outcome=filters.outcome)
    return q


def live_events(
    staff: policy.StaffFacts, filters: LogFilters, thresholds: risk.Thresholds
) -> QuerySet[AccessEvent]:
    """The events in scope with their facts, every signal computed at read time and the
    scope as an OR: the search as it was before the signals were stored. Used now for
    the events not yet computed (the tail), and by the benchmark as "before"."""

    query = risk.annotate_facts(
        AccessEvent.objects.filter(policy.log_review_events_q(staff) & filters_q(filters)), thresholds
    )
    if filters.signal:
        query = query.filter(
            risk.signal_q(filters.signal, thresholds, reviewer_orgnr=staff.organisation_orgnr)
        )
    return query


def _live_rows(
    staff: policy.StaffFacts, events: list[AccessEvent], thresholds: risk.Thresholds
) -> list[ReviewRow]:
    return [
        ReviewRow(
            event,
            risk.signals_for(
                risk.facts_for(event),
                thresholds,
                own_staff=event.organisation_orgnr == staff.organisation_orgnr,
            ),
        )
        for event in events
    ]


def stored_query(
    staff: policy.StaffFacts, filters: LogFilters, cursor: Cursor | None
) -> QuerySet[EventSignals]:
    """The stored rows of the auditor's organisation that match, newest first: one table,
    one equality for the scope, and an index for each question (models.EventSignals)."""

    if not policy.may_review_access_log(staff):
        return EventSignals.objects.none()
    query = EventSignals.objects.filter(reviewer_orgnr=staff.organisation_orgnr).filter(filters_q(filters))
    if filters.signal:
        query = query.filter(**{risk.Signal(filters.signal).value: True})
    if cursor is not None:
        # The first condition makes the cursor an index bound; the OR breaks ties on time.
        query = query.filter(
            Q(occurred_at__lt=cursor.occurred_at)
            | Q(occurred_at=cursor.occurred_at, event_pk__lt=cursor.event_pk),
            occurred_at__lte=cursor.occurred_at,
        )
    return query.order_by("-occurred_at", "-event_pk")


def _stored_rows(stored: list[EventSignals]) -> list[ReviewRow]:
    """The events the stored rows point to (one query, pruned to their months)."""

    if not stored:
        return []
    events = {
        event.pk: event
        for event in AccessEvent.objects.select_related("patient", "document").filter(
            pk__in=[row.event_pk for row in stored],
            occurred_at__gte=min(row.occurred_at for row in stored),
            occurred_at__lte=max(row.occurred_at for row in stored),
        )
    }
    return [ReviewRow(events[row.event_pk], row.signals) for row in stored if row.event_pk in events]


def _tail(
    staff: policy.StaffFacts,
    filters: LogFilters,
    thresholds: risk.Thresholds,
    *,
    cursor: Cursor | None,
    since: datetime.datetime | None,
    size: int,
) -> list[ReviewRow]:
    """The events in scope not yet computed (`stored_signals`), signals on the fly.

    With a watermark the tail is short (the last minute's events): a plain query finds
    them, one query loads their facts by primary key, and the signal filter is the pure
    function (`risk.signals_for`, which the tests keep agreeing with `risk.signal_q`).
    That is cheaper than the facts' query with every filter in SQL, which is still the way
    when there is no watermark (the job never ran: every event is in the tail) or the
    tail is longer than TAIL_CAP."""

    query = stored_signals.without_rows(
        AccessEvent.objects.filter(policy.log_review_events_q(staff) & filters_q(filters))
    )
    if since is not None:
        query = query.filter(occurred_at__gte=since)
    if cursor is not None:
        query = query.filter(after(cursor))
    if since is not None:
        found = list(query.order_by("-occurred_at", "-pk").values_list("pk", "occurred_at")[:TAIL_CAP])
        if not found:
            return []
        if len(found) < TAIL_CAP:
            first, last = min(t for _p, t in found), max(t for _p, t in found)
            events = risk.annotate_facts(
                AccessEvent.objects.filter(
                    pk__in=[pk for pk, _t in found], occurred_at__gte=first, occurred_at__lte=last
                ),
                thresholds,
                between=(first, last),
            )
            rows = _live_rows(staff, list(events), thresholds)
            if filters.signal:
                rows = [row for row in rows if filters.signal in row.signals]
            rows.sort(key=lambda row: (row.event.occurred_at, row.event.pk), reverse=True)
            return rows[:size]
    live = stored_signals.without_rows(live_events(staff, filters, thresholds))
    if since is not None:
        live = live.filter(occurred_at__gte=since)
    if cursor is not None:
        live = live.filter(after(cursor))
    return _live_rows(staff, list(live.order_by("-occurred_at", "-pk")[:size]), thresholds)


def _page(
    staff: policy.StaffFacts,
    filters: LogFilters,
    thresholds: risk.Thresholds,
    cursor: Cursor | None,
    size: int,
) -> list[ReviewRow]:
    """Up to `size` rows after the cursor, newest first: the stored rows and the tail,
    each already in order and merged. Four queries (the stored rows, the watermark, the
    tail, the stored rows' events), five when there is a tail since the watermark (its
    facts), or without a watermark (the tail's facts and filters in one query)."""

    stored = list(stored_query(staff, filters, cursor)[:size])
    since = stored_signals.tail_start()
    tail = _tail(staff, filters, thresholds, cursor=cursor, since=since, size=size)
    rows = _stored_rows(stored) + tail
    rows.sort(key=lambda row: (row.event.occurred_at, row.event.pk), reverse=True)
    return rows[:size]


def search_page(
    staff: policy.StaffFacts,
    filters: LogFilters,
    *,
    thresholds: risk.Thresholds,
    cursor: str | None = None,
    limit: int = 50,
) -> ReviewPage:
    """One page of the search, newest first. Raises InvalidCursor."""

    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise ValueError(f"limit must be 1..{MAX_PAGE_SIZE}")
    found = _page(staff, filters, thresholds, decode_cursor(cursor) if cursor else None, limit + 1)
    rows = found[:limit]
    next_cursor = encode_cursor(rows[-1].event) if len(found) > limit else None
    return ReviewPage(rows=rows, next_cursor=next_cursor)


def live_page(
    staff: policy.StaffFacts,
    filters: LogFilters,
    *,
    thresholds: risk.Thresholds,
    cursor: str | None = None,
    limit: int = 50,
) -> ReviewPage:
    """The same page the old way, every signal computed at read time (`live_events`):
    kept for the benchmark's "before" and for the tests that compare the two."""

    query = live_events(staff, filters, thresholds)
    if cursor:
        query = query.filter(after(decode_cursor(cursor)))
    found = list(query.order_by("-occurred_at", "-pk")[: limit + 1])
    events = found[:limit]
    next_cursor = encode_cursor(events[-1]) if len(found) > limit else None
    return ReviewPage(rows=_live_rows(staff, events, thresholds), next_cursor=next_cursor)


def iter_rows(
    staff: policy.StaffFacts, filters: LogFilters, *, thresholds: risk.Thresholds, max_rows: int
) -> Iterator[ReviewRow]:
    """Every matching event, newest first, in keyset chunks (for the export)."""

    last: Cursor | None = None
    sent = 0
    while sent < max_rows:
        size = min(EXPORT_CHUNK, max_rows - sent)
        rows = _page(staff, filters, thresholds, last, size)
        yield from rows
        sent += len(rows)
        if len(rows) < size:
            return
        last = Cursor(rows[-1].event.occurred_at, rows[-1].event.pk)


def event_for_review(
    staff: policy.StaffFacts, event_id: uuid.UUID, *, thresholds: risk.Thresholds
) -> ReviewRow | None:
    """One event by its UUID, if it is in this auditor's scope; None otherwise (whether
    it does not exist or belongs to someone else: the caller cannot tell them apart).
    Its stored signals for the auditor's organisation, or computed now if it has none yet."""

    event = (
        AccessEvent.objects.filter(policy.log_review_events_q(staff), event_id=event_id)
        .select_related("patient", "document")
        .first()
    )
    if event is None:
        return None
    stored = EventSignals.objects.filter(event_pk=event.pk, reviewer_orgnr=staff.organisation_orgnr).first()
    if stored is not None:
        return ReviewRow(event, stored.signals)
    live = live_events(staff, LogFilters(), thresholds).filter(pk=event.pk).first()
    return None if live is None else _live_rows(staff, [live], thresholds)[0]
