"""The person's facts (organisation acted for, roles there, HPR authorizations), kept in
the session between requests and re-checked against `User.facts_version`.

Reading them costs three queries (the organisation, guardian's permissions, the HPR
register). They change seldom, and every change moves the person's `FactsVersion` on in the
same transaction (the receivers below); the user row is read on every request anyway
(Django's authentication, with the version joined), so the check is free: the kept facts hold only while the
version, the person and the organisation chosen are the ones they were read for. A
revoked role is therefore gone from the very next request, on every instance.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Any

from django.db import connection
from django.db.models import F
from django.db.models.signals import post_delete, post_save, pre_save
from django.dispatch import receiver

from pjd_portal.accounts.models import (
    FactsVersion,
    HprAuthorization,
    Organisation,
    OrganisationUserObjectPermission,
    User,
)
from pjd_portal.lib.compiled import compiled, instance_from, with_values

SESSION_FACTS_KEY = "pjd_facts"

_ORGANISATION_FIELDS = [f.attname for f in Organisation._meta.concrete_fields]


def move_on(user_ids: Iterable[int] | None = None, *, hpr_number: str = "") -> None:
    """Mark these people's kept facts stale (all people when neither is given)."""

    users = User.objects.all()
    if user_ids is not None:
        users = users.filter(pk__in=list(user_ids))
    elif hpr_number:
        users = users.filter(hpr_number=hpr_number)
    ids = list(users.values_list("pk", flat=True))
    # Rows first, then one increment for all: two changes at once both move it on.
    FactsVersion.objects.bulk_create([FactsVersion(user_id=pk) for pk in ids], ignore_conflicts=True)
    FactsVersion.objects.filter(user_id__in=ids).update(version=F("version") + 1)


def version_of(user: User) -> int:
    """The person's facts version, as read with the user (`user_with_version`)."""

    joined: Any = getattr(user, "pjd_facts_version", _NOT_READ)
    if joined is not _NOT_READ:
        return int(joined or 0)  # NULL: nothing has changed since the account was made
    try:
        return user.facts_version.version
    except FactsVersion.DoesNotExist:
        return 0


_NOT_READ = object()
# The user row is read on every request: its query is compiled once (lib/compiled.py).
_STAND_IN_USER = -7_391_065


@functools.lru_cache(maxsize=2)
def _user_query(vendor: str) -> tuple[str, tuple[Any, ...]]:
    users = User.objects.filter(pk=_STAND_IN_USER).annotate(pjd_facts_version=F("facts_version__version"))
    return compiled(users[:1])


def user_with_version(user_id: Any) -> User | None:
    """The user with this id and their facts version, in one query (None if there is none)."""

    try:
        pk = int(user_id)
    except (TypeError, ValueError):
        return None
    sql, params = _user_query(connection.vendor)
    return next(iter(User.objects.raw(sql, with_values(params, {_STAND_IN_USER: pk}, expected=1))), None)


@receiver(pre_save, sender=OrganisationUserObjectPermission, dispatch_uid="pjd_facts_role_before")
def _role_moving(sender: Any, instance: OrganisationUserObjectPermission, **kwargs: Any) -> None:
    # A grant row given to another person (a shell's edit): the one it leaves moves on too.
    if instance.pk is not None:
        move_on(
            OrganisationUserObjectPermission.objects.filter(pk=instance.pk).values_list("user_id", flat=True)
        )


@receiver(pre_save, sender=HprAuthorization, dispatch_uid="pjd_facts_hpr_before")
def _authorization_moving(sender: Any, instance: HprAuthorization, **kwargs: Any) -> None:
    if instance.pk is not None:
        for old in HprAuthorization.objects.filter(pk=instance.pk).values_list("hpr_number", flat=True):
            if old and old != instance.hpr_number:
                move_on(hpr_number=old)


@receiver([post_save, post_delete], sender=OrganisationUserObjectPermission, dispatch_uid="pjd_facts_role")
def _role_changed(sender: Any, instance: OrganisationUserObjectPermission, **kwargs: Any) -> None:
    move_on([instance.user_id])


@receiver([post_save, post_delete], sender=HprAuthorization, dispatch_uid="pjd_facts_hpr")
def _authorization_changed(sender: Any, instance: HprAuthorization, **kwargs: Any) -> None:
    if instance.hpr_number:
        move_on(hpr_number=instance.hpr_number)


@receiver([post_save, post_delete], sender=Organisation, dispatch_uid="pjd_facts_organisation")
def _organisation_changed(sender: Any, instance: Organisation, created: bool = False, **kwargs: Any) -> None:
    # A new organisation is nobody's yet; an edited one may be anyone's (or anyone's parent).
    if not created:
        move_on()


def _plain(org: Organisation) -> dict[str, Any]:
    return {name: getattr(org, name) for name in _ORGANISATION_FIELDS}


def keep(  # noqa: PLR0917 - the facts as `kept` returns them
    session: Any,
    user: User,
    org_id: int | None,
    organisation: Organisation | None,
    roles: frozenset[str],
    authorizations: frozenset[str],
) -> None:
    """Keep freshly read facts in the session, tagged with what they were read for."""

    parent = organisation.parent if organisation is not None and organisation.parent_id else None
    session[SESSION_FACTS_KEY] = {
        "user": user.pk,
        "version": version_of(user),
        "hpr": user.hpr_number,
        "org_id": org_id,
        "organisation": _plain(organisation) if organisation is not None else None,
        "parent": _plain(parent) if parent is not None else None,
        "roles": sorted(roles),
        "authorizations": sorted(authorizations),
    }


def kept(
    session: Any, user: User, org_id: int | None
) -> tuple[Organisation | None, frozenset[str], frozenset[str]] | None:
    """The facts kept for this person, version and organisation; None when they must be read."""

    found = session.get(SESSION_FACTS_KEY)
    if (
        not isinstance(found, dict)
        or found.get("user") != user.pk
        or found.get("version") != version_of(user)
        or found.get("hpr") != user.hpr_number
        or found.get("org_id") != org_id
    ):
        return None
    organisation = None
    if found["organisation"] is not None:
        organisation = instance_from(Organisation, found["organisation"])
        if found["parent"] is not None:
            organisation.parent = instance_from(Organisation, found["parent"])
        elif organisation.parent_id is None:
            organisation.parent = None
    return organisation, frozenset(found["roles"]), frozenset(found["authorizations"])
