"""The patient register and the patients' privacy choices."""

from __future__ import annotations

import datetime

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from pjd_portal.patients.national_id import NationalIdKind


class AddressProtection(models.TextChoices):
    NONE = "", _("None")
    FORTROLIG = "fortrolig", _("Confidential address")
    STRENGT_FORTROLIG = "strengt_fortrolig", _("Strictly confidential address")


class Gender(models.TextChoices):
    FEMALE = "female", _("Female")
    MALE = "male", _("Male")
    UNKNOWN = "unknown", _("Unknown")


class Patient(models.Model):
    national_id = models.CharField(max_length=11, unique=True)
    national_id_kind = models.CharField(max_length=10, choices=[(k.value, k.name) for k in NationalIdKind])
    given_name = models.CharField(max_length=100)
    family_name = models.CharField(max_length=100)
    birth_date = models.DateField()
    gender = models.CharField(max_length=10, choices=Gender.choices)
    address = models.CharField(max_length=200, blank=True)
    address_protection = models.CharField(
        max_length=20, choices=AddressProtection.choices, blank=True, default=""
    )
    # The fastlege list the patient is on, by the GP's HPR number (fastlegeregisteret).
    fastlege_hpr_number = models.CharField(max_length=9, blank=True, db_index=True)

    def __str__(self) -> str:  # no national id: this string may reach a log line
        return f"Patient {self.pk}"

    @property
    def name(self) -> str:
        return f"{self.given_name} {self.family_name}"

    @property
    def has_protected_address(self) -> bool:
        return bool(self.address_protection)

    def age_on(self, day: datetime.date) -> int:
        b = self.birth_date
        return day.year - b.year - ((day.month, day.day) < (b.month, b.day))


class PrivacyChoiceKind(models.TextChoices):
    RESERVATION = "reservation", _("Reservation: no documents for anyone")
    RESTRICTION = "restriction", _("Restriction: documents only with an elevated basis")
    BLOCKED_CLINICIAN = "blocked_clinician", _("Blocked clinician")


class PrivacyChoice(models.Model):
    """A patient's reservation, restriction or blocked clinician.

    Lifting a choice sets `lifted_at`; rows are never deleted, so the history stays.
    Blocked documents are marked at the source (confidentiality code NORS).
    """

    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="privacy_choices")
    kind = models.CharField(max_length=20, choices=PrivacyChoiceKind.choices)
    blocked_hpr_number = models.CharField(max_length=9, blank=True)
    # The patient's request: its reference (case number), the date it was made, the reason.
    reference = models.CharField(max_length=100, blank=True)
    request_date = models.DateField(null=True, blank=True)
    reason = models.TextField(blank=True)
    registered_at = models.DateTimeField(default=timezone.now)
    registered_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    # Lifting is a request of its own, with its own reference, date and reason.
    lifted_at = models.DateTimeField(null=True, blank=True)
    lifted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    lift_reference = models.CharField(max_length=100, blank=True)
    lift_request_date = models.DateField(null=True, blank=True)
    lift_reason = models.TextField(blank=True)

    class Meta:
        indexes = [models.Index(fields=["patient", "lifted_at"])]
        constraints = [
            # One choice of a kind in force per patient (per HPR number for blocks): a
            # second registration, also a concurrent double submit, fails here.
            models.UniqueConstraint(
                fields=["patient", "kind", "blocked_hpr_number"],
                condition=models.Q(lifted_at__isnull=True),
                name="uniq_privacy_choice_in_force",
            )
        ]

    def __str__(self) -> str:
        return f"{self.kind} for patient {self.patient_id}"
