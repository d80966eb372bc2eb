"""People and organisations: who is logged in and for whom they act."""

from __future__ import annotations

import uuid
from typing import Any

from django.contrib.auth.models import AbstractUser
from django.db import models
from django.utils.translation import gettext_lazy as _
from guardian.models import GroupObjectPermissionBase, UserObjectPermissionBase


class OrganisationKind(models.TextChoices):
    FASTLEGEKONTOR = "fastlegekontor", _("GP office")
    LEGEVAKT = "legevakt", _("Emergency primary care (legevakt)")
    SYKEHJEM = "sykehjem", _("Nursing home")
    HELSEFORETAK = "helseforetak", _("Hospital trust")
    AVTALESPESIALIST = "avtalespesialist", _("Contract specialist")
    FORVALTNING = "forvaltning", _("Administration")


class Organisation(models.Model):
    """A legal entity or sub-unit, known by its org.nr (Enhetsregisteret)."""

    orgnr = models.CharField(max_length=9, unique=True)
    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=20, choices=OrganisationKind.choices)
    region = models.CharField(max_length=100, blank=True)
    is_source = models.BooleanField(default=False)
    is_consumer = models.BooleanField(default=False)
    # A sub-unit's legal entity (Enhetsregisteret: underenhet -> hovedenhet; HelseID's
    # orgnr_child / orgnr_parent). The access log records both: the sub-unit as the
    # point of care, the parent as the legal entity responsible.
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="units")

    class Meta:
        ordering = ["name"]
        # The portal roles held in an organisation, as django-guardian object permissions
        # on it (accounts/roles.py maps roles to these). The national privacy officer role
        # is not among them: it stays a Membership role.
        permissions = [
            ("role_clinician", "Holds the clinician role in the organisation"),
            ("role_auditor", "Holds the auditor role in the organisation"),
            ("role_access_administrator", "Holds the access administrator role in the organisation"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.orgnr})"


class User(AbstractUser):
    """A person who logs in with HelseID, keyed on the national id (pid), never e-mail.

    `username` is an opaque generated value: the pid is a national id and must not turn
    up wherever Django shows or logs a username.
    """

    pid = models.CharField(max_length=11, unique=True, null=True, blank=True)
    hpr_number = models.CharField(max_length=9, blank=True, db_index=True)
    display_name = models.CharField(max_length=200, blank=True)
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)

    def __str__(self) -> str:
        return self.display_name or self.username


class HprAuthorization(models.Model):
    """The local copy of the health personnel register (HPR): authorizations per number.

    Codes from Volven 9060: LE lege, SP sykepleier, JM jordmor, PS psykolog, …
    """

    hpr_number = models.CharField(max_length=9, db_index=True)
    code = models.CharField(max_length=5)
    name = models.CharField(max_length=100, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["hpr_number", "code"], name="uniq_hpr_authorization")]

    def __str__(self) -> str:
        return f"{self.hpr_number}:{self.code}"


class Role(models.TextChoices):
    CLINICIAN = "clinician", _("Clinician")
    AUDITOR = "auditor", _("Auditor")
    ACCESS_ADMINISTRATOR = "access_administrator", _("Access administrator")
    PRIVACY_OFFICER = "privacy_officer", _("Privacy officer")


class MembershipQuerySet(models.QuerySet["Membership"]):
    """Bulk writes bypass post_save; these keep the guardian permissions in step anyway."""

    def update(self, **kwargs: Any) -> int:
        from pjd_portal.accounts.roles import sync_role_permissions  # noqa: PLC0415 - cycle

        rows = list(self.values_list("pk", "user_id", "organisation_id"))
        count = super().update(**kwargs)
        pairs = {(user_id, organisation_id) for _pk, user_id, organisation_id in rows}
        if {"user", "user_id", "organisation", "organisation_id"} & set(kwargs):
            moved = self.model.objects.filter(pk__in=[pk for pk, _u, _o in rows])
            pairs |= set(moved.values_list("user_id", "organisation_id"))
        for user_id, organisation_id in pairs:
            sync_role_permissions(user_id, organisation_id)
        return count

    def bulk_create(self, objs: Any, *args: Any, **kwargs: Any) -> list[Membership]:
        from pjd_portal.accounts.roles import sync_role_permissions  # noqa: PLC0415 - cycle

        created = super().bulk_create(objs, *args, **kwargs)
        for user_id, organisation_id in {(m.user_id, m.organisation_id) for m in created}:
            sync_role_permissions(user_id, organisation_id)
        return created


class Membership(models.Model):
    """The record of one grant of a portal role to a person in one organisation.

    Rows are never deleted: a revoked grant keeps who granted it and when, and gets who
    revoked it and when (`active` False). At most one grant per (user, organisation, role)
    is in force (`uniq_membership_role_in_force`), so a repeated grant adds no row.

    The record is not what decides: the roles in force are django-guardian object
    permissions on the Organisation (accounts/roles.py), which every write here keeps in
    step, whoever the writer (grant service, post_save signal, the queryset's update).
    """

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="memberships")
    organisation = models.ForeignKey(Organisation, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=30, choices=Role.choices)
    granted_at = models.DateTimeField(auto_now_add=True)
    granted_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    active = models.BooleanField(default=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.PROTECT, related_name="+")

    objects = MembershipQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["user", "organisation", "role"],
                condition=models.Q(active=True),
                name="uniq_membership_role_in_force",
            )
        ]
        indexes = [models.Index(fields=["organisation", "-granted_at"], name="acc_membership_org_time")]

    def __str__(self) -> str:
        return f"{self.user} {self.role} @ {self.organisation.orgnr}"


class OrganisationUserObjectPermission(UserObjectPermissionBase):
    """django-guardian's per-object permissions of users on an Organisation, with a direct
    foreign key (no generic content type and text primary key)."""

    content_object = models.ForeignKey(Organisation, on_delete=models.CASCADE)


class OrganisationGroupObjectPermission(GroupObjectPermissionBase):
    """The group variant, so guardian's group lookups use a direct foreign key too. The
    portal grants roles to users only; no rows are expected here."""

    content_object = models.ForeignKey(Organisation, on_delete=models.CASCADE)
