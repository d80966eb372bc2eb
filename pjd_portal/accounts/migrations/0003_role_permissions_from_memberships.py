"""Backfill: each grant in force becomes its django-guardian permission on the
organisation (accounts/roles.py), so existing databases keep their roles."""

from typing import Any

from django.db import migrations

ROLE_PERMISSIONS = {
    "clinician": ("role_clinician", "Holds the clinician role in the organisation"),
    "auditor": ("role_auditor", "Holds the auditor role in the organisation"),
    "access_administrator": (
        "role_access_administrator",
        "Holds the access administrator role in the organisation",
    ),
}


def forward(apps: Any, schema_editor: Any) -> None:
    ContentType = apps.get_model("contenttypes", "ContentType")
    Permission = apps.get_model("auth", "Permission")
    Membership = apps.get_model("accounts", "Membership")
    OrganisationUserObjectPermission = apps.get_model("accounts", "OrganisationUserObjectPermission")
    memberships = list(
        Membership.objects.filter(active=True, role__in=list(ROLE_PERMISSIONS)).values_list(
            "user_id", "organisation_id", "role"
        )
    )
    if not memberships:
        return
    content_type, _ = ContentType.objects.get_or_create(app_label="accounts", model="organisation")
    permissions = {
        role: Permission.objects.get_or_create(
            content_type=content_type, codename=codename, defaults={"name": name}
        )[0]
        for role, (codename, name) in ROLE_PERMISSIONS.items()
    }
    OrganisationUserObjectPermission.objects.bulk_create(
        [
            OrganisationUserObjectPermission(
                user_id=user_id, content_object_id=organisation_id, permission=permissions[role]
            )
            for user_id, organisation_id, role in memberships
        ],
        ignore_conflicts=True,
    )


def backward(apps: Any, schema_editor: Any) -> None:
    apps.get_model("accounts", "OrganisationUserObjectPermission").objects.all().delete()


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0002_role_permissions"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(forward, backward)]
