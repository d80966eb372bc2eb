"""One record of roles: Membership's rows move to django-guardian (accounts/roles.py).

Forward:
- each grant in force (active) becomes, or stays, its permission row on the organisation
  (OrganisationUserObjectPermission), with the grant's granted_at and granted_by; the
  national privacy officer role too (`role_privacy_officer`, new: it was a Membership
  role only);
- each revoked grant becomes a RevokedRoleGrant (granted and revoked at/by, no grant_id:
  its Membership id was never a permission row's), so the access administrator's page
  lists the same revoked roles and their holders stay "own staff";
- a permission row with no grant in force (written outside the portal) stays in force,
  as it was: guardian decided before too. It keeps the time of migration 0005 as its
  granted_at, and no granted_by.

Backward: the permission rows of the four roles become active Membership rows and each
RevokedRoleGrant a revoked one (granted/revoked at/by kept); the privacy officer
permission rows are deleted, since before this migration that role was Membership only.
Run after reversing 0007, which recreates the empty Membership table.
"""

from typing import Any

from django.db import migrations

ROLE_PERMISSIONS = {
    "clinician": ("role_clinician", "Holds the clinician role in the organisation"),
    "auditor": ("role_auditor", "Holds the auditor role in the organisation"),
    "access_administrator": (
        "role_access_administrator",
        "Holds the access administrator role in the organisation",
    ),
    "privacy_officer": (
        "role_privacy_officer",
        "Holds the national privacy officer role in the organisation",
    ),
}
CODENAME_ROLES = {codename: role for role, (codename, _name) in ROLE_PERMISSIONS.items()}


def _permissions(apps: Any) -> dict[str, Any]:
    ContentType = apps.get_model("contenttypes", "ContentType")
    Permission = apps.get_model("auth", "Permission")
    content_type, _ = ContentType.objects.get_or_create(app_label="accounts", model="organisation")
    return {
        role: Permission.objects.get_or_create(
            content_type=content_type, codename=codename, defaults={"name": name}
        )[0]
        for role, (codename, name) in ROLE_PERMISSIONS.items()
    }


def forward(apps: Any, schema_editor: Any) -> None:
    Membership = apps.get_model("accounts", "Membership")
    OrganisationUserObjectPermission = apps.get_model("accounts", "OrganisationUserObjectPermission")
    RevokedRoleGrant = apps.get_model("accounts", "RevokedRoleGrant")
    if not Membership.objects.exists():
        return
    permissions = _permissions(apps)
    for m in Membership.objects.filter(active=True).order_by("pk").iterator():
        # At most one active grant per (user, organisation, role): the old partial unique
        # constraint, so no two rows compete for one permission row.
        OrganisationUserObjectPermission.objects.update_or_create(
            user_id=m.user_id,
            content_object_id=m.organisation_id,
            permission=permissions[m.role],
            defaults={"granted_at": m.granted_at, "granted_by_id": m.granted_by_id},
        )
    RevokedRoleGrant.objects.bulk_create(
        [
            RevokedRoleGrant(
                user_id=m.user_id,
                organisation_id=m.organisation_id,
                role=m.role,
                grant_id=None,
                granted_at=m.granted_at,
                granted_by_id=m.granted_by_id,
                revoked_at=m.revoked_at,
                revoked_by_id=m.revoked_by_id,
            )
            for m in Membership.objects.filter(active=False).order_by("pk").iterator()
        ],
        batch_size=500,
    )


def backward(apps: Any, schema_editor: Any) -> None:
    Membership = apps.get_model("accounts", "Membership")
    OrganisationUserObjectPermission = apps.get_model("accounts", "OrganisationUserObjectPermission")
    RevokedRoleGrant = apps.get_model("accounts", "RevokedRoleGrant")
    rows = OrganisationUserObjectPermission.objects.filter(
        permission__content_type__app_label="accounts",
        permission__content_type__model="organisation",
        permission__codename__in=list(CODENAME_ROLES),
    )
    # Membership.granted_at is auto_now_add: written with the time of the create, so set
    # the original time with an update afterwards.
    for row in rows.select_related("permission").order_by("pk").iterator():
        m = Membership.objects.create(
            user_id=row.user_id,
            organisation_id=row.content_object_id,
            role=CODENAME_ROLES[row.permission.codename],
            granted_by_id=row.granted_by_id,
            active=True,
        )
        Membership.objects.filter(pk=m.pk).update(granted_at=row.granted_at)
    for r in RevokedRoleGrant.objects.order_by("pk").iterator():
        m = Membership.objects.create(
            user_id=r.user_id,
            organisation_id=r.organisation_id,
            role=r.role,
            granted_by_id=r.granted_by_id,
            active=False,
            revoked_at=r.revoked_at,
            revoked_by_id=r.revoked_by_id,
        )
        Membership.objects.filter(pk=m.pk).update(granted_at=r.granted_at)
    rows.filter(permission__codename="role_privacy_officer").delete()


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0005_grant_metadata"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(forward, backward)]
