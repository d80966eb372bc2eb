"""Document sources, document references (metadata) and the local document store."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from pjd_portal.accounts.models import Organisation
from pjd_portal.patients.models import Patient


class DocumentCategory(models.TextChoices):
    """The classes kjernejournalforskriften § 4 nr 7 allows, coded in Volven 9602."""

    EPIKRISE = "A00-1", _("Discharge summaries and summaries")
    PROVESVAR = "C00-1", _("Test results, tissue and fluids")
    ORGANFUNKSJON = "D00-1", _("Organ function")
    BILDEDIAGNOSTIKK = "E00-1", _("Diagnostic imaging")
    KORRESPONDANSE = "I00-1", _("Correspondence and referrals")


class ConfidentialityCode(models.TextChoices):
    """Volven 9603 and HL7 codes. NORS = blocked for health personnel."""

    NORMAL = "N", _("Normal")
    RESTRICTED = "R", _("Restricted")
    VERY_RESTRICTED = "V", _("Very restricted")
    NORS = "NORS", _("Blocked for health personnel (NORS)")
    NORN_DUE = "NORN_DUE", _("Citizen denied access")
    NORU = "NORU", _("Citizen access delayed")


def _doctors_and_nurses() -> list[str]:
    return ["LE", "SP"]


def _clinical_organisation_kinds() -> list[str]:
    return ["fastlegekontor", "legevakt", "sykehjem", "helseforetak", "avtalespesialist"]


class DocumentSource(models.Model):
    """A source organisation's document store, and the source's own sharing rules.

    Each source decides which HPR authorizations and which kinds of consumer organisation
    may see its document list and which may open its documents, and whether its list is
    shown only to those who may open (as Helse Nord does). The policy module applies the
    rules; this model only stores them.
    """

    organisation = models.OneToOneField(
        Organisation, on_delete=models.PROTECT, related_name="document_source"
    )
    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=20, default="local")
    list_authorizations = models.JSONField(default=_doctors_and_nurses)
    list_organisation_kinds = models.JSONField(default=_clinical_organisation_kinds)
    open_authorizations = models.JSONField(default=_doctors_and_nurses)
    open_organisation_kinds = models.JSONField(default=_clinical_organisation_kinds)
    list_only_if_may_open = models.BooleanField(default=False)

    def __str__(self) -> str:
        return self.name


class DocumentReference(models.Model):
    """Metadata of one shared document. Addressed by `document_id`, never by pk."""

    document_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    source = models.ForeignKey(DocumentSource, on_delete=models.PROTECT, related_name="documents")
    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="documents")
    category = models.CharField(max_length=10, choices=DocumentCategory.choices)
    type_code = models.CharField(max_length=10)
    type_name = models.CharField(max_length=100)
    title = models.CharField(max_length=300)
    service_date = models.DateField()
    author = models.CharField(max_length=200)
    institution_name = models.CharField(max_length=200)
    institution_orgnr = models.CharField(max_length=9)
    department = models.CharField(max_length=200, blank=True)
    department_resh_id = models.CharField(max_length=12, blank=True)
    confidentiality_code = models.CharField(
        max_length=10, choices=ConfidentialityCode.choices, default=ConfidentialityCode.NORMAL
    )
    content_type = models.CharField(max_length=100)
    size = models.PositiveIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["patient", "-service_date"])]

    def __str__(self) -> str:
        return f"Document {self.document_id}"

    @property
    def source_orgnr(self) -> str:
        """The org.nr of the organisation that shares it (the access log copies it)."""
        # Read with the reference where the open's one query brought it (documents/store.py).
        known = self.__dict__.get("pjd_source_orgnr")
        return str(known) if known is not None else self.source.organisation.orgnr


class DocumentContent(models.Model):
    """The bytes of a document in the local store."""

    document = models.OneToOneField(
        DocumentReference, on_delete=models.PROTECT, related_name="content", primary_key=True
    )
    data = models.BinaryField()

    def __str__(self) -> str:
        return f"Content of document {self.document_id}"


class DocumentBlock(models.Model):
    """A document blocked (NORS) by the privacy officer on the patient's request.

    `previous_code` is the confidentiality code the document had before, so unblocking
    restores it. Unblocking sets `unblocked_at`; rows are never deleted, so the history
    stays. At most one block of a document is in force.
    """

    document = models.ForeignKey(DocumentReference, on_delete=models.PROTECT, related_name="blocks")
    previous_code = models.CharField(max_length=10, choices=ConfidentialityCode.choices)
    reference = models.CharField(max_length=100)
    request_date = models.DateField()
    reason = models.TextField()
    blocked_at = models.DateTimeField()
    blocked_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    unblocked_at = models.DateTimeField(null=True, blank=True)
    unblocked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    unblock_reference = models.CharField(max_length=100, blank=True)
    unblock_request_date = models.DateField(null=True, blank=True)
    unblock_reason = models.TextField(blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["document"],
                condition=models.Q(unblocked_at__isnull=True),
                name="uniq_document_block_in_force",
            )
        ]

    def __str__(self) -> str:
        return f"Block of document {self.document_id}"
