"""Writes of the privacy officer: registering and lifting a patient's privacy choices, and
blocking and unblocking single documents (NORS).

Each function writes its rows and its audit event in one transaction: if the event cannot
be written, nothing is changed (AuditWriteFailed is raised). Rows are never deleted; lifting
and unblocking set a time, a person and the request behind it, so the history stays.

A choice already in force is registered once only. The database decides (partial unique
constraints `uniq_privacy_choice_in_force` and `uniq_document_block_in_force`), so a double
submit, also two at the same moment, leaves one row; the loser is told "already
registered". The clinician path reads the choices on every request, so a change applies to
the very next one.
"""

from __future__ import annotations

import datetime
import enum
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from pjd_portal.accounts.caller import Caller
from pjd_portal.auditlog import events
from pjd_portal.auditlog.events import EventKind, Outcome
from pjd_portal.auditlog.services import record_event
from pjd_portal.documents.models import ConfidentialityCode, DocumentBlock, DocumentReference
from pjd_portal.patients.models import Patient, PrivacyChoice, PrivacyChoiceKind

# The kind written in the audit details for a blocked document (not a PrivacyChoice row).
BLOCKED_DOCUMENT = "blocked_document"


class Result(enum.StrEnum):
    DONE = "done"
    ALREADY = "already"  # already registered / blocked: nothing changed
    NOT_IN_FORCE = "not_in_force"  # nothing to lift / unblock: nothing changed
    BLOCKED_AT_SOURCE = "blocked_at_source"  # NORS set by the source itself


@dataclass(frozen=True)
class PatientRequest:
    """The patient's request behind a change: its reference, date and reason."""

    reference: str
    request_date: datetime.date
    reason: str

    def details(self) -> dict[str, Any]:
        return {"reference": self.reference, "request_date": self.request_date.isoformat()}


def _audit(
    *,
    caller: Caller,
    kind_of_event: EventKind,
    result: Result,
    patient: Patient,
    kind: str,
    patient_request: PatientRequest,
    document: DocumentReference | None = None,
    extra: dict[str, Any] | None = None,
) -> None:
    record_event(
        kind_of_event(
            outcome=Outcome.GRANTED if result == Result.DONE else Outcome.INVALID,
            reason_code="" if result == Result.DONE else str(result),
            patient=patient,
            document=document,
            reason_text=patient_request.reason,
            kind=kind,
            **patient_request.details(),
            **extra or {},
        ),
        actor=caller.actor,
        where=caller.where,
    )


def register_choice(
    *,
    caller: Caller,
    patient: Patient,
    kind: str,
    blocked_hpr_number: str,
    patient_request: PatientRequest,
) -> Result:
    """Register a reservation, a restriction or a blocked clinician (by HPR number)."""

    assert kind in PrivacyChoiceKind.values
    hpr = blocked_hpr_number if kind == PrivacyChoiceKind.BLOCKED_CLINICIAN else ""
    extra: dict[str, Any] = {"blocked_hpr_number": hpr} if hpr else {}
    with transaction.atomic():
        try:
            with transaction.atomic():  # a savepoint: the constraint may refuse the row
                choice = PrivacyChoice.objects.create(
                    patient=patient,
                    kind=kind,
                    blocked_hpr_number=hpr,
                    reference=patient_request.reference,
                    request_date=patient_request.request_date,
                    reason=patient_request.reason,
                    registered_at=timezone.now(),
                    registered_by=caller.user,
                )
        except IntegrityError:
            result = Result.ALREADY
        else:
            result = Result.DONE
            extra["choice_id"] = choice.pk
        _audit(
            caller=caller,
            kind_of_event=events.PRIVACY_CHOICE_REGISTERED,
            result=result,
            patient=patient,
            kind=kind,
            patient_request=patient_request,
            extra=extra,
        )
    return result


def lift_choice(
    *, caller: Caller, patient: Patient, choice_id: int, patient_request: PatientRequest
) -> Result:
    """Lift one of the patient's choices in force. The row stays, with who lifted it,
    when, and the request behind it."""

    with transaction.atomic():
        choice = PrivacyChoice.objects.filter(pk=choice_id, patient=patient).first()
        # One conditional UPDATE: of two concurrent lifts, one changes the row.
        lifted = PrivacyChoice.objects.filter(pk=choice_id, patient=patient, lifted_at__isnull=True).update(
            lifted_at=timezone.now(),
            lifted_by=caller.user,
            lift_reference=patient_request.reference,
            lift_request_date=patient_request.request_date,
            lift_reason=patient_request.reason,
        )
        result = Result.DONE if lifted else Result.NOT_IN_FORCE
        extra: dict[str, Any] = {"choice_id": choice_id}
        if choice is not None and choice.blocked_hpr_number:
            extra["blocked_hpr_number"] = choice.blocked_hpr_number
        _audit(
            caller=caller,
            kind_of_event=events.PRIVACY_CHOICE_LIFTED,
            result=result,
            patient=patient,
            kind=choice.kind if choice is not None else "",
            patient_request=patient_request,
            extra=extra,
        )
    return result


def _locked_document(patient: Patient, document_id: Any) -> DocumentReference | None:
    return (
        DocumentReference.objects.select_for_update(of=("self",))
        .select_related("source__organisation")
        .filter(document_id=document_id, patient=patient)
        .first()
    )


def block_document(
    *, caller: Caller, patient: Patient, document: DocumentReference, patient_request: PatientRequest
) -> Result:
    """Block one document (NORS), remembering its code so that unblocking restores it."""

    with transaction.atomic():
        locked = _locked_document(patient, document.document_id)
        assert locked is not None  # the caller found it among the patient's documents
        extra: dict[str, Any] = {}
        if DocumentBlock.objects.filter(document=locked, unblocked_at__isnull=True).exists():
            result = Result.ALREADY
        elif locked.confidentiality_code == ConfidentialityCode.NORS:
            result = Result.BLOCKED_AT_SOURCE
        else:
            try:
                with transaction.atomic():
                    DocumentBlock.objects.create(
                        document=locked,
                        previous_code=locked.confidentiality_code,
                        reference=patient_request.reference,
                        request_date=patient_request.request_date,
                        reason=patient_request.reason,
                        blocked_at=timezone.now(),
                        blocked_by=caller.user,
                    )
            except IntegrityError:
                result = Result.ALREADY
            else:
                extra = {"previous_code": locked.confidentiality_code}
                locked.confidentiality_code = ConfidentialityCode.NORS
                locked.save(update_fields=["confidentiality_code"])
                result = Result.DONE
        _audit(
            caller=caller,
            kind_of_event=events.DOCUMENT_BLOCKED,
            result=result,
            patient=patient,
            kind=BLOCKED_DOCUMENT,
            patient_request=patient_request,
            document=locked,
            extra=extra,
        )
    return result


def unblock_document(
    *, caller: Caller, patient: Patient, document: DocumentReference, patient_request: PatientRequest
) -> Result:
    """Lift a block made here: the document gets back the code it had before."""

    with transaction.atomic():
        locked = _locked_document(patient, document.document_id)
        assert locked is not None
        block = DocumentBlock.objects.filter(document=locked, unblocked_at__isnull=True).first()
        extra: dict[str, Any] = {}
        if block is None:
            result = Result.NOT_IN_FORCE
        else:
            DocumentBlock.objects.filter(pk=block.pk, unblocked_at__isnull=True).update(
                unblocked_at=timezone.now(),
                unblocked_by=caller.user,
                unblock_reference=patient_request.reference,
                unblock_request_date=patient_request.request_date,
                unblock_reason=patient_request.reason,
            )
            locked.confidentiality_code = block.previous_code
            locked.save(update_fields=["confidentiality_code"])
            extra = {"restored_code": block.previous_code}
            result = Result.DONE
        _audit(
            caller=caller,
            kind_of_event=events.DOCUMENT_UNBLOCKED,
            result=result,
            patient=patient,
            kind=BLOCKED_DOCUMENT,
            patient_request=patient_request,
            document=locked,
            extra=extra,
        )
    return result
