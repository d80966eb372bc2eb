"""Membership is gone: the roles in force are django-guardian's permission rows on the
organisation (accounts/roles.py), their ends RevokedRoleGrant. 0006 copied the rows over;
reversing this recreates the (empty) table, and reversing 0006 fills it again."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0006_roles_from_memberships"),
    ]

    operations = [
        migrations.DeleteModel(name="Membership"),
    ]
