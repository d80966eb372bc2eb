"""Portal roles as django-guardian object permissions on the Organisation.

`Membership` is the record of every grant (who, which role, where, granted and revoked by
whom and when). What is enforced is the guardian permission: one per role, on the
organisation (`accounts.context.active_roles` reads them with guardian's
ObjectPermissionChecker). The national privacy officer role is the exception: it stays a
Membership role and has no permission here.

`sync_role_permissions` makes a person's guardian permissions on one organisation exactly
what their grants in force say. It is idempotent and runs for every writer of Membership:
the grant and revoke service (forvaltning/roles_services.py, in its own transaction), the
post_save and post_delete signals below (seed_demo, test fixtures, the admin), and the
queryset's `update` and `bulk_create`, which send no signals.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import Permission
from django.contrib.contenttypes.models import ContentType
from django.db.models.signals import post_delete, post_save, pre_save
from django.dispatch import receiver

from pjd_portal.accounts.models import Membership, Organisation, OrganisationUserObjectPermission, Role

# Role -> the permission codename on Organisation (Organisation.Meta.permissions).
ROLE_PERMISSIONS: dict[str, str] = {
    Role.CLINICIAN: "role_clinician",
    Role.AUDITOR: "role_auditor",
    Role.ACCESS_ADMINISTRATOR: "role_access_administrator",
}
PERMISSION_ROLES: dict[str, str] = {codename: role for role, codename in ROLE_PERMISSIONS.items()}
# Kept as a Membership role, read from Membership: not an organisation's own role.
MEMBERSHIP_ONLY_ROLES = frozenset({Role.PRIVACY_OFFICER})


def role_permissions() -> dict[str, Permission]:
    """codename -> Permission for the role permissions, created if missing (a database
    flushed between tests, or a write before post_migrate ran)."""

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
    return found


def sync_role_permissions(user_id: int, organisation_id: int) -> None:
    """Make the user's role permissions on the organisation match their grants in force."""

    wanted = {
        ROLE_PERMISSIONS[role]
        for role in Membership.objects.filter(
            user_id=user_id, organisation_id=organisation_id, active=True
        ).values_list("role", flat=True)
        if role in ROLE_PERMISSIONS
    }
    held = OrganisationUserObjectPermission.objects.filter(
        user_id=user_id,
        content_object_id=organisation_id,
        permission__codename__in=list(PERMISSION_ROLES),
        permission__content_type=ContentType.objects.get_for_model(Organisation),
    )
    have = set(held.values_list("permission__codename", flat=True))
    if have - wanted:
        held.filter(permission__codename__in=sorted(have - wanted)).delete()
    if wanted - have:
        permissions = role_permissions()
        OrganisationUserObjectPermission.objects.bulk_create(
            [
                OrganisationUserObjectPermission(
                    user_id=user_id, content_object_id=organisation_id, permission=permissions[codename]
                )
                for codename in sorted(wanted - have)
            ],
            ignore_conflicts=True,  # a concurrent writer added it: the same row either way
        )


def roles_from_permissions(codenames: Any) -> frozenset[str]:
    return frozenset(PERMISSION_ROLES[c] for c in codenames if c in PERMISSION_ROLES)


@receiver(pre_save, sender=Membership, dispatch_uid="pjd_membership_remember_pair")
def _membership_saving(sender: Any, instance: Membership, raw: bool = False, **kwargs: Any) -> None:
    # A grant moved to another person or organisation must also end the old pair's role.
    if raw or instance.pk is None:
        return
    old = Membership.objects.filter(pk=instance.pk).values_list("user_id", "organisation_id").first()
    instance._pjd_old_pair = old  # type: ignore[attr-defined]


@receiver(post_save, sender=Membership, dispatch_uid="pjd_membership_sync_saved")
def _membership_saved(sender: Any, instance: Membership, raw: bool = False, **kwargs: Any) -> None:
    if raw:  # loaddata: the fixture carries its own permission rows, if any
        return
    sync_role_permissions(instance.user_id, instance.organisation_id)
    old = getattr(instance, "_pjd_old_pair", None)
    if old is not None and tuple(old) != (instance.user_id, instance.organisation_id):
        sync_role_permissions(old[0], old[1])


@receiver(post_delete, sender=Membership, dispatch_uid="pjd_membership_sync_deleted")
def _membership_deleted(sender: Any, instance: Membership, **kwargs: Any) -> None:
    # Rows are not deleted by the portal; a cascade from a deleted user or organisation
    # takes the permission rows with it, and anything else deleting a grant ends the role.
    sync_role_permissions(instance.user_id, instance.organisation_id)
