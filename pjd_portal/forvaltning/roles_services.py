"""Writes of the access administrator: granting and revoking portal roles.

Each function writes the grant record (`Membership`), the django-guardian permission that
enforces it (`accounts.roles.sync_role_permissions`) and its audit event in one
transaction: if the event cannot be written nothing is changed (AuditWriteFailed is
raised). Grant rows are never deleted; a revocation sets when and by whom.

A role already in force is granted once only. The database decides (the partial unique
constraint `uniq_membership_role_in_force`), so a double submit, also two at the same
moment on PostgreSQL, leaves one row; the loser is told "already granted".
"""

from __future__ import annotations

import enum
from typing import Any

from django.db import IntegrityError, transaction
from django.http import HttpRequest
from django.utils import timezone

from pjd_portal.access import policy
from pjd_portal.accounts.audit_context import actor_of, point_of_care_of
from pjd_portal.accounts.context import authenticated_user
from pjd_portal.accounts.models import Membership, Organisation, Role, User
from pjd_portal.accounts.roles import sync_role_permissions
from pjd_portal.auditlog import events
from pjd_portal.auditlog.events import Outcome
from pjd_portal.auditlog.services import record_event


class Result(enum.StrEnum):
    DONE = "done"
    ALREADY = "already"  # the role is already in force: nothing changed
    NOT_IN_FORCE = "not_in_force"  # the grant was already revoked: nothing changed
    REFUSED = "refused"  # the policy refuses it (e.g. the last administrator's own role)


def target_details(user: User) -> dict[str, Any]:
    """Who the grant is about, copied into the audit event (never the national id)."""

    return {
        "target_user_id": user.pk,
        "target_public_id": str(user.public_id),
        "target_name": user.display_name or user.username,
        "target_hpr_number": user.hpr_number,
    }


def grant_role(
    *, request: HttpRequest, organisation: Organisation, user: User, role: str, via: str
) -> tuple[Result, Membership]:
    """Grant `role` in `organisation` to `user` (the caller has asked the policy)."""

    actor = authenticated_user(request)
    details = {"role": role, "via": via, **target_details(user)}
    with transaction.atomic():
        try:
            with transaction.atomic():  # a savepoint: the constraint may refuse the row
                membership = Membership.objects.create(
                    user=user, organisation=organisation, role=role, granted_by=actor
                )
        except IntegrityError:
            membership = Membership.objects.get(user=user, organisation=organisation, role=role, active=True)
            result = Result.ALREADY
        else:
            sync_role_permissions(user.pk, organisation.pk)
            result = Result.DONE
        record_event(
            events.ROLE_GRANTED(
                outcome=Outcome.GRANTED if result == Result.DONE else Outcome.INVALID,
                reason_code="" if result == Result.DONE else "role_already_granted",
                **details,
                membership_id=membership.pk,
            ),
            actor=actor_of(request),
            where=point_of_care_of(request),
        )
    return result, membership


def revoke_role(
    *, request: HttpRequest, staff: policy.StaffFacts, membership: Membership
) -> tuple[Result, policy.Decision]:
    """Revoke this grant (of the organisation acted for: the caller has checked).

    The organisation's grants of the access administrator role are locked first, so two
    administrators revoking each other at the same moment cannot leave it with none."""

    actor = authenticated_user(request)
    with transaction.atomic():
        admins = list(
            Membership.objects.select_for_update()
            .filter(organisation_id=membership.organisation_id, role=Role.ACCESS_ADMINISTRATOR, active=True)
            .values_list("pk", "user_id", "user__is_active")
        )
        current = Membership.objects.select_for_update().get(pk=membership.pk)
        details = {"role": current.role, "membership_id": current.pk, **target_details(membership.user)}
        # Read again under the lock: the actor's own role may have been revoked by another
        # administrator a moment ago.
        still = policy.still_administers(
            actor.pk, frozenset(user_id for _pk, user_id, is_active in admins if is_active)
        )
        if not still:
            record_event(
                events.ROLE_REVOKED(outcome=Outcome.DENIED, reason_code=still.reason_code, **details),
                actor=actor_of(request),
                where=point_of_care_of(request),
            )
            return Result.REFUSED, still
        if not current.active:
            record_event(
                events.ROLE_REVOKED(outcome=Outcome.INVALID, reason_code="role_not_in_force", **details),
                actor=actor_of(request),
                where=point_of_care_of(request),
            )
            return Result.NOT_IN_FORCE, policy.ALLOW
        decision = policy.may_revoke_role(
            staff,
            grant_organisation_id=current.organisation_id,
            grant_user_id=current.user_id,
            grant_role=current.role,
            other_administrators=sum(
                1 for _pk, user_id, is_active in admins if user_id != current.user_id and is_active
            ),
        )
        if not decision:
            record_event(
                events.ROLE_REVOKED(outcome=Outcome.DENIED, reason_code=decision.reason_code, **details),
                actor=actor_of(request),
                where=point_of_care_of(request),
            )
            return Result.REFUSED, decision  # the refusal's event is kept: nothing else changed
        current.active = False
        current.revoked_at = timezone.now()
        current.revoked_by = actor
        current.save(update_fields=["active", "revoked_at", "revoked_by"])
        sync_role_permissions(current.user_id, current.organisation_id)
        record_event(
            events.ROLE_REVOKED(outcome=Outcome.GRANTED, **details),
            actor=actor_of(request),
            where=point_of_care_of(request),
        )
    return Result.DONE, policy.ALLOW
