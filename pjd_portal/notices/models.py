"""The patient notice: the outbox row that says an elevated access is to be told the patient.

The row is the one source of truth for a notice's state; the task that delivers it keeps
nothing of its own (delivery.py). What the notice says is copied in when the access
happens, so it stays what the patient was told however accounts and organisations change.
"""

from __future__ import annotations

import uuid

from django.db import models
from django.utils.translation import gettext_lazy as _

from pjd_portal.patients.models import Patient


class NoticeKind(models.TextChoices):
    """What the patient is told of: an emergency access (AKUTT) or an elevated one past
    the patient's restriction (FORHØYET, with consent or in an emergency)."""

    AKUTT = "AKUTT", _("Emergency access")
    FORHOYET = "FORHOYET", _("Elevated access")


class NoticeStatus(models.TextChoices):
    PENDING = "pending", _("Waiting to be sent")
    SENT = "sent", _("Sent")
    FAILED = "failed", _("Could not be sent")


class PatientNotice(models.Model):
    notice_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="+")
    kind = models.CharField(max_length=10, choices=NoticeKind.choices)
    basis = models.CharField(max_length=20)
    # The attest the access was made under (access.AccessAttest.attest_id): a value, not a
    # key, so this floor names nothing above it.
    attest_id = models.UUIDField()
    accessed_at = models.DateTimeField()
    organisation_orgnr = models.CharField(max_length=9)
    organisation_name = models.CharField(max_length=200)
    clinician_name = models.CharField(max_length=200)
    clinician_role = models.CharField(max_length=200, blank=True)

    status = models.CharField(max_length=10, choices=NoticeStatus.choices, default=NoticeStatus.PENDING)
    # Delivery attempts begun; also the version a worker claims (delivery.claim), so one
    # attempt is made by one worker however many tasks name it.
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField()
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    # The class of the last failure ("HTTP 503", "ConnectionError"), never a message: a
    # message may echo what was sent.
    last_error = models.CharField(max_length=100, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField()

    class Meta:
        indexes = [
            models.Index(fields=["patient", "-created_at"]),
            models.Index(fields=["status", "next_attempt_at"]),
        ]

    def __str__(self) -> str:  # no patient data: this may reach a log line
        return f"Notice {self.notice_id} ({self.kind}, {self.status})"
