"""Reading and changing review queue items, for an organisation's auditors.

An auditor sees the items whose event they may see in the log review
(`policy.log_review_events_q`, over the organisation numbers copied onto the item), and
nothing else. A status change names the item's version it was made on: the change, its
history row and its access event are written together, or not at all. A second submit of
the same change (a double click, a retry, a second tab) finds the version moved on and
the same change already recorded: it writes no second row and says so. A different
change made on an old version is refused as stale.

Separation of duties (`policy.may_act_on_review_item`): no auditor changes the review of
their own access, nor of an access to themselves as a patient. They see the item, marked;
a change they send anyway is refused and logged, and changes nothing.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from pjd_portal.access import policy
from pjd_portal.accounts.caller import Caller
from pjd_portal.accounts.models import User
from pjd_portal.auditlog import events
from pjd_portal.auditlog.events import Detail, Outcome
from pjd_portal.auditlog.models import AccessEvent
from pjd_portal.auditlog.services import record_event
from pjd_portal.lib.cursor import SignedCursor, after
from pjd_portal.review.models import ReviewChange, ReviewItem

MAX_PAGE_SIZE = 200
_CURSOR_SALT = "pjd_portal.review.cursor"


def items_in_scope(staff: policy.StaffFacts) -> QuerySet[ReviewItem]:
    """The items this auditor may see: their organisation's own items, of events in the
    log review's scope (the same rule, on the item's copies of the organisation numbers)."""

    if not policy.may_review_access_log(staff):
        return ReviewItem.objects.none()
    assert staff is not None
    return ReviewItem.objects.filter(
        policy.log_review_events_q(staff), reviewer_orgnr=staff.organisation_orgnr
    )


@dataclass(frozen=True)
class QueueFilters:
    status: str = ""
    signal: str = ""
    kind: str = ""  # "signal": queued for a risk signal; "sample": drawn in the random sample


@dataclass(frozen=True)
class QueueRow:
    item: ReviewItem
    event: AccessEvent | None  # None only if the event row cannot be read


@dataclass(frozen=True)
class QueuePage:
    rows: list[QueueRow]
    next_cursor: str | None


_CURSOR = SignedCursor(_CURSOR_SALT)


def queue_page(
    staff: policy.StaffFacts, filters: QueueFilters, *, cursor: str | None = None, limit: int = 50
) -> QueuePage:
    """One page of the queue, newest event first, keyset-paged: two queries whatever the
    page size (the items with their reviewers, then their events with the patients).
    Raises InvalidCursor."""

    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise ValueError(f"limit must be 1..{MAX_PAGE_SIZE}")
    query = items_in_scope(staff).select_related("reviewer")
    if filters.status:
        query = query.filter(status=filters.status)
    if filters.signal:
        query = query.filter(signal_codes__contains=f",{filters.signal},")
    if filters.kind:
        query = query.filter(sampled=filters.kind == "sample")
    if cursor:
        query = query.filter(after(_CURSOR.decode(cursor), time_field="event_occurred_at"))
    found = list(query.order_by("-event_occurred_at", "-pk")[: limit + 1])
    items = found[:limit]
    events = _events_for(items)
    return QueuePage(
        rows=[QueueRow(item, events.get(item.event_id)) for item in items],
        next_cursor=_CURSOR.encode(items[-1].event_occurred_at, items[-1].pk) if len(found) > limit else None,
    )


def _events_for(items: list[ReviewItem]) -> dict[uuid.UUID, AccessEvent]:
    if not items:
        return {}
    events = AccessEvent.objects.filter(pk__in=[item.event_pk for item in items]).select_related(
        "patient", "document"
    )
    return {event.event_id: event for event in events}


def item_for_review(staff: policy.StaffFacts, item_id: uuid.UUID) -> ReviewItem | None:
    """One item by its UUID if this auditor may see it; None for a missing and for a
    foreign item alike."""

    return items_in_scope(staff).select_related("reviewer").filter(item_id=item_id).first()


def history(item: ReviewItem) -> list[ReviewChange]:
    return list(item.changes.select_related("changed_by").order_by("-version"))


class Result(enum.Enum):
    DONE = "done"
    DUPLICATE = "duplicate"  # the same change was already made on this version
    STALE = "stale"  # the item changed since the version the change was made on
    REFUSED = "refused"  # the auditor's own access, or an access to their own records


def review_decision(staff: policy.StaffFacts, event: AccessEvent) -> policy.Decision:
    """May this auditor act on the review of `event` (separation of duties)?"""

    return policy.may_act_on_review_item(
        staff,
        actor_user_id=event.actor_user_id,
        actor_pid=event.actor_pid,
        patient_national_id=event.patient_national_id,
    )


def _event_of(item: ReviewItem) -> AccessEvent | None:
    return (
        AccessEvent.objects.filter(pk=item.event_pk, occurred_at=item.event_occurred_at)
        .only("actor_user_id", "actor_pid", "patient_national_id")
        .first()
    )


def refuse_if_conflicted(
    *, caller: Caller, staff: policy.StaffFacts, item: ReviewItem, status: str
) -> policy.Decision:
    """The separation-of-duties check before anything is read from the form: a refusal is
    logged (REVIEW_STATUS_CHANGED, denied, with its reason) and returned."""

    event = _event_of(item)
    decision = review_decision(staff, event) if event is not None else policy.ALLOW
    if not decision:
        _record_refusal(caller, item, decision, version=item.version, status=status)
    return decision


def _record_refusal(
    caller: Caller, item: ReviewItem, decision: policy.Decision, *, version: int, status: str
) -> None:
    details: dict[str, Detail] = {
        "review_item": str(item.item_id),
        "event_id": str(item.event_id),
        "version": version,
        "from": item.status,
        "to": status[:20],
    }
    record_event(
        events.REVIEW_STATUS_CHANGED(
            outcome=Outcome.DENIED, reason_code=decision.reason_code, details=details
        ),
        actor=caller.actor,
        where=caller.where,
    )


def change_status(
    *,
    caller: Caller,
    staff: policy.StaffFacts,
    user: User,
    item_id: uuid.UUID,
    version: int,
    status: str,
    comment: str,
) -> Result | None:
    """Change an item's status (and comment) as of `version`. None if the item is not
    in this auditor's scope. Raises AuditWriteFailed (nothing is changed then)."""

    with transaction.atomic():
        # The row lock queues concurrent submits; the version decides what each one does.
        item = items_in_scope(staff).select_for_update().filter(item_id=item_id).first()
        if item is None:
            return None
        event = _event_of(item)
        decision = review_decision(staff, event) if event is not None else policy.ALLOW
        if not decision:
            _record_refusal(caller, item, decision, version=version, status=status)
            return Result.REFUSED
        details: dict[str, Detail] = {
            "review_item": str(item.item_id),
            "event_id": str(item.event_id),
            "version": version,
            "from": item.status,
            "to": status,
        }
        if item.version != version:
            same = ReviewChange.objects.filter(
                item=item, version=version + 1, to_status=status, comment=comment
            ).exists()
            result = Result.DUPLICATE if same else Result.STALE
            record_event(
                events.REVIEW_STATUS_CHANGED(
                    outcome=Outcome.INVALID,
                    reason_code=f"review_{result.value}",
                    details=details,
                    current_version=item.version,
                ),
                actor=caller.actor,
                where=caller.where,
            )
            return result
        now = timezone.now()
        ReviewChange.objects.create(
            item=item,
            version=version + 1,
            changed_at=now,
            changed_by=user,
            changed_by_name=user.display_name,
            from_status=item.status,
            to_status=status,
            comment=comment,
        )
        item.status = status
        item.comment = comment
        item.reviewer = user
        item.version = version + 1
        item.updated_at = now
        item.save(update_fields=["status", "comment", "reviewer", "version", "updated_at"])
        record_event(
            events.REVIEW_STATUS_CHANGED(outcome=Outcome.GRANTED, details=details),
            actor=caller.actor,
            where=caller.where,
        )
        return Result.DONE
