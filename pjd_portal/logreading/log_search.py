"""Searching the access log for the log review (loggkontroll): reads only.

Every query starts from the auditor's scope (`policy.log_review_events_q`), so search,
event page and export can never disagree about what an auditor may see. Results are
newest first and paged by keyset on (occurred_at, id), never OFFSET, with a signed cursor
as in `audit.selectors`. The risk signals come along in the same query
(`risk.annotate_facts`); filtering on a signal happens in the database (`risk.signal_q`),
so a filtered page is as exact and as cheap as an unfiltered one.
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
from pjd_portal.logreading import risk

MAX_PAGE_SIZE = 200
EXPORT_CHUNK = 500
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


def _events(
    staff: policy.StaffFacts, filters: LogFilters, thresholds: risk.Thresholds
) -> QuerySet[AccessEvent]:
    query = risk.annotate_facts(
        AccessEvent.objects.filter(policy.log_review_events_q(staff) & filters_q(filters)), thresholds
    )
    if filters.signal:
        query = query.filter(
            risk.signal_q(filters.signal, thresholds, reviewer_orgnr=staff.organisation_orgnr)
        )
    return query


def _rows(
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


def search_page(
    staff: policy.StaffFacts,
    filters: LogFilters,
    *,
    thresholds: risk.Thresholds,
    cursor: str | None = None,
    limit: int = 50,
) -> ReviewPage:
    """One page of the search, newest first, in one query. Raises InvalidCursor."""

    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise ValueError(f"limit must be 1..{MAX_PAGE_SIZE}")
    query = _events(staff, filters, thresholds)
    if cursor:
        query = query.filter(after(decode_cursor(cursor)))
    found = list(query.order_by("-occurred_at", "-pk")[: limit + 1])
    events = found[:limit]
    next_cursor = encode_cursor(events[-1]) if len(found) > limit else None
    return ReviewPage(rows=_rows(staff, events, thresholds), next_cursor=next_cursor)


def iter_rows(
    staff: policy.StaffFacts, filters: LogFilters, *, thresholds: risk.Thresholds, max_rows: int
) -> Iterator[ReviewRow]:
    """Every matching event, newest first, in keyset chunks (for the export)."""

    last: Cursor | None = None
    sent = 0
    while sent < max_rows:
        query = _events(staff, filters, thresholds)
        if last is not None:
            query = query.filter(after(last))
        size = min(EXPORT_CHUNK, max_rows - sent)
        events = list(query.order_by("-occurred_at", "-pk")[:size])
        yield from _rows(staff, events, thresholds)
        sent += len(events)
        if len(events) < size:
            return
        last = Cursor(events[-1].occurred_at, events[-1].pk)


def event_for_review(
    staff: policy.StaffFacts, event_id: uuid.UUID, *, thresholds: risk.Thresholds
) -> ReviewRow | None:
    """One event by its UUID, if it is in this auditor's scope; None otherwise (whether
    it does not exist or belongs to someone else: the caller cannot tell them apart)."""

    event = _events(staff, LogFilters(), thresholds).filter(event_id=event_id).first()
    if event is None:
        return None
    return _rows(staff, [event], thresholds)[0]
