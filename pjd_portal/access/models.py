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
    # The login it was made in (accounts/sessions.py SESSION_LOGIN_KEY_KEY): a handle, and
    # the attests stated under it, open nothing in another login of the same person, and
    # end at logout. Blank for the sessionless API, whose caller has no login.
    login_key = models.CharField(max_length=64, blank=True, default="")

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
    # The trust framework's purpose_of_use_details (BEHANDLER, BLAALYS, ...).
    care_relation = models.CharField(max_length=30, blank=True)
    reason = models.TextField(blank=True)
    self_selected = models.BooleanField(default=True)
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    # The login it was stated in (as its lookup's): reused by a new lookup only in that login.
    login_key = models.CharField(max_length=64, blank=True, default="")
    # Where the basis was stated: in the portal's own form (blank), or attested by an EPJ
    # (AttestChannel), with the EPJ's HelseID client and its own access decision's id.
    channel = models.CharField(max_length=20, blank=True, default="")
    client_id = models.CharField(max_length=100, blank=True, default="")
    decision_ref = models.CharField(max_length=200, blank=True, default="")

    class Meta:
        indexes = [
            models.Index(fields=["lookup", "-expires_at"]),
            # The attest still live for this person, organisation and patient (reused by a
            # new lookup of the same patient: selectors.latest_attest).
            models.Index(fields=["user", "organisation", "patient", "-expires_at"], name="attest_live_idx"),
        ]

    def __str__(self) -> str:
        return f"Attest {self.attest_id} ({self.basis})"

    @property
    def visit_details(self) -> dict[str, str]:
        """What every event under an attest from the EPJ carries (auditlog build_event)."""

        if not self.channel:
            return {}
        return {
            "channel": self.channel,
            "client_id": self.client_id,
            "decision_ref": self.decision_ref,
            "purpose_of_use_details": self.care_relation,
        }


class AttestChannel(models.TextChoices):
    """How an attest reached the portal, when not by the portal's own basis form."""

    EPJ_LAUNCH = "epj_launch", "epj_launch"
    API = "api", "api"


class EpjLaunch(models.Model):
    """A one-time launch code: what an EPJ's `POST /api/launch` attested, waiting for the
    browser to bring the code and its verifier to `/start/`.

    In the database, so that any instance redeems what another issued, exactly once (an
    UPDATE that sets `used_at` only where it is still empty). Only the code's hash is kept:
    a copy of this table opens nothing.
    """

    code_hash = models.CharField(max_length=64, unique=True)
    code_challenge = models.CharField(max_length=128)
    client_id = models.CharField(max_length=100)
    token_jti = models.CharField(max_length=200, blank=True)
    # The attest as the token carried it (authorization_details), read again at /start/.
    attest = models.JSONField()
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)
    # When its visit began (after the login): a launch opens one visit, once.
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["expires_at"], name="epj_launch_expiry_idx")]

    def __str__(self) -> str:  # no patient data: this may reach a log line
        return f"EPJ launch {self.pk}"
