"""Patient lookups (the opaque handle) and access attests (the stated basis)."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models

from pjd_portal.accounts.models import Organisation
from pjd_portal.patients.models import Patient


class Basis(models.TextChoices):
    """Grunnlag for tilgang. Labels are the terms clinicians know."""

    UNNTAK = "UNNTAK", "Unntak fra samtykke"
    SAMTYKKE = "SAMTYKKE", "Samtykke"
    AKUTT = "AKUTT", "Akutt"
    FORHOYET_SAMTYKKE = "FORHOYET_SAMTYKKE", "Forhøyet samtykke"
    FORHOYET_AKUTT = "FORHOYET_AKUTT", "Forhøyet akutt"


class PurposeOfUse(models.TextChoices):
    TREAT = "TREAT", "TREAT"
    ETREAT = "ETREAT", "ETREAT"
    COC = "COC", "COC"
    BTG = "BTG", "BTG"


class LookupPurpose(models.TextChoices):
    """What a lookup's handle opens: the clinician's pages or the privacy officer's."""

    CLINICAL = "clinical", "clinical"
    PRIVACY_OFFICER = "privacy_officer", "privacy_officer"


class PatientLookup(models.Model):
    """One person's lookup of one patient. `handle` is what URLs carry (access/handles.py).

    A handle belongs to the user who made the lookup, in the organisation they acted for,
    for one purpose, until it expires: anyone else presenting it, or presenting it to the
    other purpose's pages, gets the same 404 as for a handle that does not exist.
    """

    handle = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    purpose = models.CharField(max_length=20, choices=LookupPurpose.choices, default=LookupPurpose.CLINICAL)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT)
    organisation = models.ForeignKey(Organisation, on_delete=models.PROTECT)
    patient = models.ForeignKey(Patient, on_delete=models.PROTECT)
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField()

    def __str__(self) -> str:  # no patient data: this may reach a log line
        return f"Lookup {self.handle}"


class AccessAttest(models.Model):
    """The stated basis for access, bound to one clinician, organisation and patient."""

    attest_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    lookup = models.ForeignKey(PatientLookup, on_delete=models.PROTECT, related_name="attests")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT)
    organisation = models.ForeignKey(Organisation, on_delete=models.PROTECT)
    patient = models.ForeignKey(Patient, on_delete=models.PROTECT)
    basis = models.CharField(max_length=20, choices=Basis.choices)
    purpose_of_use = models.CharField(max_length=10, choices=PurposeOfUse.choices)
    care_relation = models.CharField(max_length=30, blank=True)
    reason = models.TextField(blank=True)
    self_selected = models.BooleanField(default=True)
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField()

    class Meta:
        indexes = [
            models.Index(fields=["lookup", "-expires_at"]),
            # The attest still live for this person, organisation and patient (reused by a
            # new lookup of the same patient: selectors.latest_attest).
            models.Index(fields=["user", "organisation", "patient", "-expires_at"], name="attest_live_idx"),
        ]

    def __str__(self) -> str:
        return f"Attest {self.attest_id} ({self.basis})"
