"""Portal roles: django-guardian object permissions on the Organisation, the one record.

A person holds a role in an organisation when they have its permission on it (one per
role, `ROLE_PERMISSIONS`), a row of `OrganisationUserObjectPermission` that also says when
and by whom it was granted. Everything that asks which roles are in force reads these
rows: the login (`roles_held_by_pid`), the organisation chooser
(`organisations_with_roles`), every request (`accounts.context.active_roles`, with
guardian's ObjectPermissionChecker) and the access administrator's page. Revoking deletes
the row; what was revoked is kept in `RevokedRoleGrant`, which nothing reads to decide.

Who may grant or revoke which role is the policy's (access/policy.py); the audited writes
are forvaltning/roles_services.py. `grant` here is the plain write, for the demo seed and
the tests.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable

from django.contrib.auth.models import Permission
from django.contrib.contenttypes.models import ContentType
from django.db.models import QuerySet

from pjd_portal.accounts.models import (
    PERMISSION_ROLES,
    ROLE_PERMISSIONS,
    Organisation,
    OrganisationUserObjectPermission,
    RevokedRoleGrant,
    User,
)

__all__ = [
    "PERMISSION_ROLES",
    "ROLE_PERMISSIONS",
    "grant",
    "grants_in_force",
    "organisations_held",
    "organisations_with_roles",
    "role_permissions",
    "roles_from_permissions",
    "roles_held_by_pid",
]


def role_permissions() -> dict[str, Permission]:
    """role -> its Permission, created if missing (a database flushed between tests, or a
    write before post_migrate ran)."""

    content_type = ContentType.objects.get_for_model(Organisation)
    found = {
        p.codename: p
        for p in Permission.objects.filter(content_type=content_type, codename__in=PERMISSION_ROLES)
    }
    names = dict(Organisation._meta.permissions)
    for codename in PERMISSION_ROLES:
        if codename not in found:
            found[codename], _created = Permission.objects.get_or_create(
                content_type=content_type, codename=codename, defaults={"name": names[codename]}
            )
    return {role: found[codename] for role, codename in ROLE_PERMISSIONS.items()}


def grants_in_force() -> QuerySet[OrganisationUserObjectPermission]:
    """The rows that are roles in force (not any other object permission on Organisation)."""

    return OrganisationUserObjectPermission.objects.filter(
        permission__content_type=ContentType.objects.get_for_model(Organisation),
        permission__codename__in=list(PERMISSION_ROLES),
    )


def grant(
    user: User,
    organisation: Organisation,
    role: str,
    *,
    granted_by: User | None = None,
    granted_at: datetime.datetime | None = None,
) -> OrganisationUserObjectPermission:
    """Put `role` in force for `user` in `organisation`. Raises IntegrityError when it
    already is (guardian's unique user, permission, object). Not audited: the access
    administrator's grants go through forvaltning/roles_services.py."""

    row = OrganisationUserObjectPermission(
        user=user, content_object=organisation, permission=role_permissions()[role], granted_by=granted_by
    )
    if granted_at is not None:
        row.granted_at = granted_at
    row.save()
    return row


def roles_from_permissions(codenames: Iterable[str]) -> frozenset[str]:
    return frozenset(PERMISSION_ROLES[c] for c in codenames if c in PERMISSION_ROLES)


def roles_held_by_pid(pid: str) -> frozenset[str]:
    """The roles the person with this national id holds in any organisation (the login's
    question, asked before the account is looked up or created)."""

    return roles_from_permissions(
        grants_in_force().filter(user__pid=pid).values_list("permission__codename", flat=True)
    )


def organisations_with_roles(user: User) -> list[Organisation]:
    """The organisations where the user holds a role in force."""

    return list(
        Organisation.objects.filter(pk__in=grants_in_force().filter(user=user).values("content_object_id"))
    )


def organisations_held(user_ids: Iterable[int]) -> dict[int, frozenset[int]]:
    """user id -> the organisations where they hold or have held a role (the policy's
    "own staff", access/policy.py `is_own_staff`). Two queries, however many users."""

    ids = list(user_ids)
    found: dict[int, set[int]] = {user_id: set() for user_id in ids}
    for user_id, organisation_id in (
        grants_in_force().filter(user_id__in=ids).values_list("user_id", "content_object_id")
    ):
        found[user_id].add(organisation_id)
    for user_id, organisation_id in RevokedRoleGrant.objects.filter(user_id__in=ids).values_list(
        "user_id", "organisation_id"
    ):
        found[user_id].add(organisation_id)
    return {user_id: frozenset(orgs) for user_id, orgs in found.items()}
