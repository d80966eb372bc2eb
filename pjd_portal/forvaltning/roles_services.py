"""Writes of the access administrator: granting and revoking portal roles.

A role in force is its django-guardian permission row on the organisation
(`OrganisationUserObjectPermission`, accounts/roles.py), the one record: a grant creates
the row (with when and by whom), a revocation deletes it and keeps what was revoked in
`RevokedRoleGrant`. Each function writes that and its audit event in one transaction: if
the event cannot be written nothing is changed (AuditWriteFailed is raised).

A role already in force is granted once only. The database decides (guardian's unique
user, permission, object), so a double submit, also two at the same moment on
PostgreSQL, leaves one row; the loser is told "already granted".
"""

from __future__ import annotations

import enum
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from pjd_portal.access import policy
from pjd_portal.accounts import roles
from pjd_portal.accounts.caller import Caller
from pjd_portal.accounts.models import (
    Organisation,
    OrganisationUserObjectPermission,
    RevokedRoleGrant,
    Role,
    User,
)
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
    *, caller: Caller, organisation: Organisation, user: User, role: str, via: str
) -> tuple[Result, OrganisationUserObjectPermission]:
    """Grant `role` in `organisation` to `user` (the caller has asked the policy)."""

    actor = caller.user
    details = {"role": role, "via": via, **target_details(user)}
    with transaction.atomic():
        try:
            with transaction.atomic():  # a savepoint: the constraint may refuse the row
                grant = roles.grant(user, organisation, role, granted_by=actor)
        except IntegrityError:
            grant = roles.grants_in_force().get(
                user=user, content_object=organisation, permission__codename=roles.ROLE_PERMISSIONS[role]
            )
            result = Result.ALREADY
        else:
            result = Result.DONE
        record_event(
            events.ROLE_GRANTED(
                outcome=Outcome.GRANTED if result == Result.DONE else Outcome.INVALID,
                reason_code="" if result == Result.DONE else "role_already_granted",
                **details,
                grant_id=grant.pk,
            ),
            actor=caller.actor,
            where=caller.where,
        )
    return result, grant


def revoke_role(
    *,
    caller: Caller,
    staff: policy.StaffFacts,
    grant: OrganisationUserObjectPermission | RevokedRoleGrant,
) -> tuple[Result, policy.Decision]:
    """Revoke this grant (of the organisation acted for: the caller has checked). A
    `RevokedRoleGrant` is one revoked already: answered as not in force.

    The organisation's grants of the access administrator role are locked first, so two
    administrators revoking each other at the same moment cannot leave it with none."""

    actor = caller.user
    if isinstance(grant, RevokedRoleGrant):
        organisation_id, grant_id = grant.organisation_id, grant.grant_id
    else:
        organisation_id, grant_id = grant.content_object_id, grant.pk
    with transaction.atomic():
        # of=("self",): lock the grant rows, not the Permission rows every organisation
        # shares (the user rows are only read).
        admins = list(
            roles.grants_in_force()
            .select_for_update(of=("self",))
            .filter(
                content_object_id=organisation_id,
                permission__codename=roles.ROLE_PERMISSIONS[Role.ACCESS_ADMINISTRATOR],
            )
            .values_list("pk", "user_id", "user__is_active")
        )
        # None: revoked already, earlier or by another administrator a moment ago.
        current = (
            None
            if isinstance(grant, RevokedRoleGrant)
            else roles.grants_in_force()
            .select_for_update(of=("self",))
            .select_related("permission")
            .filter(pk=grant.pk)
            .first()
        )
        details = {"role": grant.role, "grant_id": grant_id, **target_details(grant.user)}
        # Read again under the lock: the actor's own role may have been revoked by another
        # administrator a moment ago.
        still = policy.still_administers(
            actor.pk, frozenset(user_id for _pk, user_id, is_active in admins if is_active)
        )
        if not still:
            record_event(
                events.ROLE_REVOKED(outcome=Outcome.DENIED, reason_code=still.reason_code, **details),
                actor=caller.actor,
                where=caller.where,
            )
            return Result.REFUSED, still
        if current is None:
            record_event(
                events.ROLE_REVOKED(outcome=Outcome.INVALID, reason_code="role_not_in_force", **details),
                actor=caller.actor,
                where=caller.where,
            )
            return Result.NOT_IN_FORCE, policy.ALLOW
        decision = policy.may_revoke_role(
            staff,
            grant_organisation_id=current.content_object_id,
            grant_user_id=current.user_id,
            grant_role=current.role,
            other_administrators=sum(
                1 for _pk, user_id, is_active in admins if user_id != current.user_id and is_active
            ),
        )
        if not decision:
            record_event(
                events.ROLE_REVOKED(outcome=Outcome.DENIED, reason_code=decision.reason_code, **details),
                actor=caller.actor,
                where=caller.where,
            )
            return Result.REFUSED, decision  # the refusal's event is kept: nothing else changed
        RevokedRoleGrant.objects.create(
            user_id=current.user_id,
            organisation_id=current.content_object_id,
            role=current.role,
            grant_id=current.pk,
            granted_at=current.granted_at,
            granted_by_id=current.granted_by_id,
            revoked_at=timezone.now(),
            revoked_by=actor,
        )
        current.delete()  # the role is no longer in force: guardian has no row for it
        record_event(
            events.ROLE_REVOKED(outcome=Outcome.GRANTED, **details),
            actor=caller.actor,
            where=caller.where,
        )
    return Result.DONE, policy.ALLOW
