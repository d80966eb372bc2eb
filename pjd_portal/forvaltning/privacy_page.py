"""The privacy officer's page for one patient: the choices in force, the documents and their
blocks, and the history of every change, in a fixed number of queries."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.translation import gettext_lazy as _

from pjd_portal.documents.models import ConfidentialityCode, DocumentBlock, DocumentReference
from pjd_portal.forvaltning.privacy_forms import DocumentBlockForm, LiftChoiceForm, RegisterChoiceForm
from pjd_portal.notices.selectors import notices_for_patient
from pjd_portal.patients.models import Patient, PrivacyChoice, PrivacyChoiceKind

PATIENT_TEMPLATE = "forvaltning/privacy/patient.html"


@dataclass(frozen=True)
class HistoryRow:
    what: str
    detail: str
    in_force: bool
    registered_at: datetime.datetime
    registered_by: str
    reference: str
    request_date: datetime.date | None
    reason: str
    lifted_at: datetime.datetime | None
    lifted_by: str
    lift_reference: str
    lift_request_date: datetime.date | None
    lift_reason: str


@dataclass(frozen=True)
class ChoiceRow:
    choice: PrivacyChoice
    form: LiftChoiceForm


@dataclass(frozen=True)
class DocumentRow:
    document: DocumentReference
    state: str  # "open", "blocked_here" or "blocked_at_source"
    block: DocumentBlock | None
    form: DocumentBlockForm


def _name(user: Any) -> str:
    return str(user.display_name or user.username) if user is not None else ""


def _choice_history(choice: PrivacyChoice) -> HistoryRow:
    return HistoryRow(
        what=choice.get_kind_display(),
        detail=choice.blocked_hpr_number,
        in_force=choice.lifted_at is None,
        registered_at=choice.registered_at,
        registered_by=_name(choice.registered_by),
        reference=choice.reference,
        request_date=choice.request_date,
        reason=choice.reason,
        lifted_at=choice.lifted_at,
        lifted_by=_name(choice.lifted_by),
        lift_reference=choice.lift_reference,
        lift_request_date=choice.lift_request_date,
        lift_reason=choice.lift_reason,
    )


def _block_history(block: DocumentBlock) -> HistoryRow:
    return HistoryRow(
        what=str(_("Blocked document")),
        detail=block.document.title,
        in_force=block.unblocked_at is None,
        registered_at=block.blocked_at,
        registered_by=_name(block.blocked_by),
        reference=block.reference,
        request_date=block.request_date,
        reason=block.reason,
        lifted_at=block.unblocked_at,
        lifted_by=_name(block.unblocked_by),
        lift_reference=block.unblock_reference,
        lift_request_date=block.unblock_request_date,
        lift_reason=block.unblock_reason,
    )


def _choices_in_force(choices: list[PrivacyChoice], lift_form: LiftChoiceForm | None) -> list[ChoiceRow]:
    """Each choice in force with its lift form; the one just submitted keeps its errors."""

    bound = lift_form.data.get("choice") if lift_form is not None else None
    return [
        ChoiceRow(
            choice,
            lift_form
            if lift_form is not None and str(choice.pk) == str(bound)
            else LiftChoiceForm(initial={"choice": choice.pk}, auto_id=f"id_lift{choice.pk}_%s"),
        )
        for choice in choices
        if choice.lifted_at is None
    ]


def _document_state(document: DocumentReference, block: DocumentBlock | None) -> str:
    if block is not None:
        return "blocked_here"
    if document.confidentiality_code == ConfidentialityCode.NORS:
        return "blocked_at_source"
    return "open"


def _document_rows(
    documents: list[DocumentReference], blocks: list[DocumentBlock], document_form: DocumentBlockForm | None
) -> list[DocumentRow]:
    """Each document with its state and block form; the one just submitted keeps its errors."""

    active_blocks = {b.document_id: b for b in blocks if b.unblocked_at is None}
    bound = document_form.data.get("document") if document_form is not None else None
    rows = []
    for index, document in enumerate(documents):
        block = active_blocks.get(document.pk)
        form = (
            document_form
            if document_form is not None and str(document.document_id) == str(bound)
            else DocumentBlockForm(initial={"document": document.document_id}, auto_id=f"id_doc{index}_%s")
        )
        rows.append(DocumentRow(document, _document_state(document, block), block, form))
    return rows


def render_page(
    request: HttpRequest,
    handle: UUID,
    patient: Patient,
    *,
    register_form: RegisterChoiceForm | None = None,
    lift_form: LiftChoiceForm | None = None,
    document_form: DocumentBlockForm | None = None,
    error: str = "",
    status: int = 200,
) -> HttpResponse:
    """The patient's page. Three queries, however many choices, blocks and documents the
    patient has."""

    choices = list(
        PrivacyChoice.objects.filter(patient=patient)
        .select_related("registered_by", "lifted_by")
        .order_by("-registered_at", "-pk")
    )
    documents = list(DocumentReference.objects.filter(patient=patient).order_by("-service_date", "-pk"))
    blocks = list(
        DocumentBlock.objects.filter(document__patient=patient)
        .select_related("document", "blocked_by", "unblocked_by")
        .order_by("-blocked_at", "-pk")
    )
    history = [_choice_history(c) for c in choices] + [_block_history(b) for b in blocks]
    history.sort(key=lambda row: row.registered_at, reverse=True)
    context = {
        "handle": handle,
        "patient": patient,
        "in_force": _choices_in_force(choices, lift_form),
        "documents": _document_rows(documents, blocks, document_form),
        "history": history,
        "register_form": register_form or RegisterChoiceForm(),
        "blocked_clinician": PrivacyChoiceKind.BLOCKED_CLINICIAN,
        "notices": notices_for_patient(patient),  # templates/forvaltning/privacy/_notices.html
        "error": error,
    }
    return render(request, PATIENT_TEMPLATE, context, status=status)
