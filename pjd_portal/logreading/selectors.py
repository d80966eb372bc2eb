"""Reading the access log: a patient's own log ("innsyn i logg"), newest first.

Pages are keyset pages on (occurred_at, id), never OFFSET: a deep page costs what the
first does, and events written while someone pages (the log read is itself an event)
neither shift nor repeat rows. The cursor is opaque and signed; it only says where the
previous page ended, so a tampered one is refused rather than trusted.
"""

from __future__ import annotations

from dataclasses import dataclass

from pjd_portal.auditlog import events
from pjd_portal.auditlog.models import AccessEvent
from pjd_portal.lib.cursor import Cursor, InvalidCursor, SignedCursor, after

# The events a patient sees in their own log: every access to them or their documents
# and every refusal. Logins, log reads and admin actions are not accesses to the patient.
PATIENT_LOG_EVENT_TYPES = events.PATIENT_ACCESS_TYPES  # the registry's patient_access entries

MAX_PAGE_SIZE = 200
_CURSOR_SALT = "pjd_portal.audit.selectors.patient_log_cursor"  # kept: page links stay valid

# The cursor's parts are part of this module's interface (the pages catch InvalidCursor).
__all__ = [
    "MAX_PAGE_SIZE",
    "PATIENT_LOG_EVENT_TYPES",
    "Cursor",
    "EventPage",
    "InvalidCursor",
    "decode_cursor",
    "encode_cursor",
    "patient_log_page",
]


@dataclass(frozen=True)
class EventPage:
    events: list[AccessEvent]
    next_cursor: str | None  # None on the last page


_CURSOR = SignedCursor(_CURSOR_SALT)


def encode_cursor(event: AccessEvent) -> str:
    return _CURSOR.encode(event.occurred_at, event.pk)


def decode_cursor(raw: str) -> Cursor:
    return _CURSOR.decode(raw)


def patient_log_page(patient_id: int, *, cursor: str | None = None, limit: int = 50) -> EventPage:
    """One page of a patient's log, newest first, with what a reader needs loaded.

    One query whatever the page size: the document and the attest come along (the FHIR
    mapping and the printable page both use them). Raises InvalidCursor.
    """

    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise ValueError(f"limit must be 1..{MAX_PAGE_SIZE}")
    query = AccessEvent.objects.filter(patient_id=patient_id, event_type__in=sorted(PATIENT_LOG_EVENT_TYPES))
    if cursor:
        query = query.filter(after(decode_cursor(cursor)))
    rows = list(query.select_related("document", "attest").order_by("-occurred_at", "-pk")[: limit + 1])
    events = rows[:limit]
    next_cursor = encode_cursor(events[-1]) if len(rows) > limit else None
    return EventPage(events=events, next_cursor=next_cursor)
