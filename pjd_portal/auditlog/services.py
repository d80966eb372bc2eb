"""The one writer of access events.

Every event the portal produces goes through `record_event`. It copies who, where and
whom into the row, so the row stays exact whatever later happens to accounts and
organisations. `record_event_committed` is for events that must be durable before the
caller continues (a document's bytes are returned only after it returns).

An event written outside any transaction is committed by the group writer
(audit/group_commit.py): concurrent requests' events share one commit, and each request
still waits for the commit that holds its own event.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, ParamSpec

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.models import CharField
from django.http import HttpRequest
from django.utils import timezone

from pjd_portal.accounts.context import authorizations_for, current_organisation
from pjd_portal.accounts.models import Organisation, User
from pjd_portal.auditlog import chain
from pjd_portal.auditlog.models import AccessEvent
from pjd_portal.auditlog.writer import AuditWriteFailed, write

# Callers catch the writer's failure where they record: it is part of this interface.
__all__ = ["AuditWriteFailed", "build_event", "plain_details", "record_event", "record_event_committed"]

logger = logging.getLogger(__name__)
P = ParamSpec("P")


def _client_ip(request: HttpRequest) -> str | None:
    """The client's address: behind our own proxies, the one the outermost proxy saw."""

    proxies = settings.TRUSTED_PROXY_COUNT
    forwarded = [a.strip() for a in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if a.strip()]
    if proxies > 0 and forwarded:
        candidate = forwarded[-proxies] if len(forwarded) >= proxies else forwarded[0]
        address = _address(candidate)
        if address is not None:
            return address
        logger.warning("unparseable X-Forwarded-For entry; logging the proxy's address")
    return _address(request.META.get("REMOTE_ADDR") or "")


def _address(value: str) -> str | None:
    # Stored in the form the hash covers (chain.canonical_ip, cached there).
    try:
        return chain.canonical_ip(value) if value else None
    except ValueError:
        return None  # not an address (a misconfigured server): logged as unknown, not a 500


def _authorizations(request: HttpRequest, user: User) -> frozenset[str]:
    # The policy's facts for this request already hold them (one query fewer per event).
    facts = getattr(request, "_pjd_clinician_facts", None)
    if facts is not None and facts.user_id == user.pk:
        return frozenset(facts.authorizations)
    return authorizations_for(user.hpr_number)


def build_event(
    *,
    request: HttpRequest,
    event_type: str,
    outcome: str,
    reason_code: str = "",
    user: User | None = None,
    organisation: Organisation | None = None,
    patient: Any = None,
    patient_national_id: str = "",
    document: Any = None,
    attest: Any = None,
    basis: str = "",
    purpose_of_use: str = "",
    reason_text: str = "",
    flagged_for_review: bool = False,
    details: dict[str, Any] | None = None,
    actor_pid: str = "",
    actor_from_request: bool = True,
    source_orgnr: str = "",
) -> AccessEvent:
    """The event, not yet written: who, where and whom copied in from the request.

    The actor is `user`, else the logged-in user, unless `actor_from_request` is False
    (an event caused by someone else in this browser, e.g. a forged login answer)."""

    if user is None and actor_from_request and request.user.is_authenticated:
        user = request.user
    if organisation is None and actor_from_request:
        organisation = current_organisation(request)
    legal_entity = (
        organisation.parent if organisation is not None and organisation.parent_id else organisation
    )
    event = _new_event(
        occurred_at=timezone.now(),
        event_type=event_type,
        outcome=outcome,
        reason_code=reason_code,
        flagged_for_review=flagged_for_review,
        actor_user_id=user.pk if user else None,
        actor_pid=(user.pid or "") if user else actor_pid,
        actor_hpr_number=user.hpr_number if user else "",
        actor_name=user.display_name if user else "",
        actor_authorizations=",".join(sorted(_authorizations(request, user))) if user else "",
        organisation_orgnr=organisation.orgnr if organisation else "",
        organisation_name=organisation.name if organisation else "",
        legal_entity_orgnr=legal_entity.orgnr if legal_entity else "",
        legal_entity_name=legal_entity.name if legal_entity else "",
        patient_id=patient.pk if patient is not None else None,
        patient_national_id=patient.national_id if patient is not None else patient_national_id,
        document_id=document.pk if document is not None else None,
        # A remote document has no local row: its source is named by the caller.
        source_orgnr=document.source.organisation.orgnr if document is not None else source_orgnr,
        attest_id=attest.pk if attest is not None else None,
        basis=basis or (attest.basis if attest is not None else ""),
        purpose_of_use=purpose_of_use or (attest.purpose_of_use if attest is not None else ""),
        reason_text=reason_text,
        request_id=getattr(request, "request_id", ""),
        client_ip=_client_ip(request),
        # A NUL cannot be stored in PostgreSQL text: it must not make the event unwritable.
        user_agent=request.META.get("HTTP_USER_AGENT", "").replace("\x00", "")[:300],
        details=plain_details(details or {}),
    )
    # The database must store exactly what is hashed: PostgreSQL silently cuts trailing
    # spaces that overflow a varchar, so every text is cut to its column here instead.
    for attname, max_length in _CHAR_FIELDS:
        value = getattr(event, attname)
        if isinstance(value, str) and len(value) > max_length:
            setattr(event, attname, value[:max_length])
    return event


_EVENT_FIELDS = [(f.attname, f) for f in AccessEvent._meta.concrete_fields]
_EVENT_FIELD_NAMES = frozenset(name for name, _ in _EVENT_FIELDS)


def _new_event(**values: Any) -> AccessEvent:
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


def plain_details(value: Any) -> Any:
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


def _written(build: Callable[P, AccessEvent]) -> Callable[P, AccessEvent]:
    def record(*args: P.args, **kwargs: P.kwargs) -> AccessEvent:
        event = build(*args, **kwargs)
        write(event)
        return event

    return record


# Write one access event (the fields are `build_event`'s). Raises AuditWriteFailed. Inside
# a transaction the event is part of it; outside one it is committed before this returns.
record_event = _written(build_event)


def record_event_committed(**kwargs: Any) -> AccessEvent:
    """Write one event and return only once it is committed.

    Outside a transaction that is what `record_event` does (through the group writer, or
    in its own transaction). Inside one the commit would be deferred, so `durable=True`
    makes Django refuse (except in a test's own transaction): the guarantee "committed
    before the first byte" is enforced, not hoped for.
    """

    if not connection.in_atomic_block:
        return record_event(**kwargs)
    try:
        with transaction.atomic(durable=True):
            return record_event(**kwargs)
    except AuditWriteFailed:
        raise
    except DatabaseError as exc:  # the commit itself failed
        logger.error("audit commit failed: %s", type(exc).__name__)
        raise AuditWriteFailed(type(exc).__name__) from exc
