"""People and organisations: who is logged in and for whom they act."""

from __future__ import annotations

import uuid

from django.contrib.auth.models import AbstractUser
from django.db import models
from django.utils.translation import gettext_lazy as _


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

    class Meta:
        ordering = ["name"]

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


class Membership(models.Model):
    """A portal role a person holds in one organisation."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="memberships")
    organisation = models.ForeignKey(Organisation, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=30, choices=Role.choices)
    granted_at = models.DateTimeField(auto_now_add=True)
    active = models.BooleanField(default=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "organisation", "role"], name="uniq_membership_role")
        ]

    def __str__(self) -> str:
        return f"{self.user} {self.role} @ {self.organisation.orgnr}"
