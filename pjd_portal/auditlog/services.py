"""The one writer of access events.

Every event the portal produces goes through `record_event`. It copies who, where and
whom into the row, so the row stays exact whatever later happens to accounts and
organisations. `record_event_committed` is for events that must be durable before the
caller continues (a document's bytes are returned only after it returns).

An event written outside any transaction is committed by the group writer
(auditlog/group_commit.py): concurrent requests' events share one commit, and each request
still waits for the commit that holds its own event.
"""

from __future__ import annotations

import logging

from django.db import DatabaseError, connection, transaction
from django.db.models import CharField
from django.utils import timezone

from pjd_portal.auditlog.actor import Actor, PointOfCare
from pjd_portal.auditlog.events import Event
from pjd_portal.auditlog.models import AccessEvent
from pjd_portal.auditlog.writer import AuditWriteFailed, write

# Callers catch the writer's failure where they record: it is part of this interface.
__all__ = ["AuditWriteFailed", "build_event", "plain_details", "record_event", "record_event_committed"]

logger = logging.getLogger(__name__)


def build_event(event: Event, *, actor: Actor, where: PointOfCare | None) -> AccessEvent:
    """The row, not yet written: the event as its caller describes it, and who and where,
    copied in so the row stays exact whatever later happens to accounts and organisations."""

    patient, document, attest = event.patient, event.document, event.attest
    row = _new_event(
        occurred_at=timezone.now(),
        event_type=event.kind.name,
        outcome=event.outcome,
        reason_code=event.reason_code,
        flagged_for_review=event.flagged_for_review,
        actor_user_id=actor.user_id,
        actor_pid=actor.pid,
        actor_hpr_number=actor.hpr_number,
        actor_name=actor.name,
        actor_authorizations=",".join(sorted(actor.authorizations)),
        organisation_orgnr=where.orgnr if where else "",
        organisation_name=where.name if where else "",
        legal_entity_orgnr=where.legal_entity_orgnr if where else "",
        legal_entity_name=where.legal_entity_name if where else "",
        patient_id=patient.pk if patient is not None else None,
        patient_national_id=patient.national_id if patient is not None else event.patient_national_id,
        document_id=document.pk if document is not None else None,
        # A remote document has no local row: its source is named by the caller.
        source_orgnr=document.source_orgnr if document is not None else event.source_orgnr,
        attest_id=attest.pk if attest is not None else None,
        basis=event.basis or (attest.basis if attest is not None else ""),
        purpose_of_use=event.purpose_of_use or (attest.purpose_of_use if attest is not None else ""),
        reason_text=event.reason_text,
        request_id=actor.request_id,
        client_ip=actor.client_ip,
        # A NUL cannot be stored in PostgreSQL text: it must not make the event unwritable.
        user_agent=actor.user_agent.replace("\x00", ""),
        # An attest from the EPJ puts its channel, client and decision on every event
        # under it; what the caller names itself wins.
        details=plain_details({**(attest.visit_details if attest is not None else {}), **event.details}),
    )
    # The database must store exactly what is hashed: PostgreSQL silently cuts trailing
    # spaces that overflow a varchar, so every text is cut to its column here instead.
    for attname, max_length in _CHAR_FIELDS:
        value = getattr(row, attname)
        if isinstance(value, str) and len(value) > max_length:
            setattr(row, attname, value[:max_length])
    return row


_EVENT_FIELDS = [(f.attname, f) for f in AccessEvent._meta.concrete_fields]
_EVENT_FIELD_NAMES = frozenset(name for name, _ in _EVENT_FIELDS)


def _new_event(**values: object) -> AccessEvent:
    """AccessEvent(**values), built the cheap way: Model(**kwargs) walks every field for
    every keyword, the positional form does not (one event per request: the hot path)."""

    unknown = values.keys() - _EVENT_FIELD_NAMES
    if unknown:
        raise TypeError(f"not fields of an access event: {sorted(unknown)}")
    return AccessEvent(*[values[name] if name in values else f.get_default() for name, f in _EVENT_FIELDS])


_CHAR_FIELDS = [
    (f.attname, f.max_length)
    for f in AccessEvent._meta.concrete_fields
    if isinstance(f, CharField) and f.max_length is not None
]


def plain_details(value: object) -> object:
    """Details as JSON that comes back from the database exactly as it went in (and so
    hashes the same when verified): text keys; strings, integers, booleans and null;
    anything else (a float, which jsonb may rewrite as 1e20 -> 100000000000000000000, a
    date, a UUID) as its text."""

    if isinstance(value, dict):
        return {str(k): plain_details(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_details(v) for v in value]
    if value is None or isinstance(value, (str, bool, int)):
        return value
    return str(value)


def record_event(event: Event, *, actor: Actor, where: PointOfCare | None) -> AccessEvent:
    """Write one access event. Raises AuditWriteFailed. Inside a transaction the event is
    part of it; outside one it is committed before this returns."""

    row = build_event(event, actor=actor, where=where)
    write(row)
    return row


def record_event_committed(event: Event, *, actor: Actor, where: PointOfCare | None) -> AccessEvent:
    """Write one event and return only once it is committed.

    Outside a transaction that is what `record_event` does (through the group writer, or
    in its own transaction). Inside one the commit would be deferred, so `durable=True`
    makes Django refuse (except in a test's own transaction): the guarantee "committed
    before the first byte" is enforced, not hoped for.
    """

    if not connection.in_atomic_block:
        return record_event(event, actor=actor, where=where)
    try:
        with transaction.atomic(durable=True):
            return record_event(event, actor=actor, where=where)
    except AuditWriteFailed:
        raise
    except DatabaseError as exc:  # the commit itself failed
        logger.error("audit commit failed: %s", type(exc).__name__)
        raise AuditWriteFailed(type(exc).__name__) from exc
