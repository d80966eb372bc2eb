"""The patients' privacy choices, for the privacy officer (/forvaltning/personvern/).

On the patient's request the privacy officer registers and lifts a reservation, a
restriction of document sharing, blocked clinicians (by HPR number) and blocked documents
(NORS), each with the request's reference, date and reason. The history of every change is
kept and shown.

The patient is looked up by national id in a POST form; after that the pages refer to the
patient by an opaque handle that belongs to this user in this session, in the organisation
acted for, and expires. Anyone else's handle, or an expired one, gets the 404 of a missing
page, as does everyone the policy keeps out of the area. Every change goes through
`privacy_services`, which writes the change and its audit event together.
"""

from __future__ import annotations

import datetime
import re
import uuid
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from django import forms
from django.conf import settings
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_http_methods, require_POST

from pjd_portal.access import policy
from pjd_portal.accounts.context import authenticated_user, current_organisation
from pjd_portal.audit.models import EventType, Outcome
from pjd_portal.audit.services import AuditWriteFailed, record_event
from pjd_portal.documents.models import ConfidentialityCode, DocumentBlock, DocumentReference
from pjd_portal.forvaltning import privacy_services as services
from pjd_portal.forvaltning.access import staff_required
from pjd_portal.patients.forms import NO_SUCH_PATIENT, national_id_message
from pjd_portal.patients.models import Patient, PrivacyChoice, PrivacyChoiceKind
from pjd_portal.patients.national_id import InvalidNationalId, parse_national_id

CHANNEL = "privacy_officer"
# The handles of the privacy officer's lookups, in their session: handle -> patient, user,
# organisation and expiry (Unix time).
SESSION_HANDLES_KEY = "pjd_privacy_handles"
HANDLE_MINUTES = 60
HPR_NUMBER = re.compile(r"^[0-9]{9}$")
LOOKUP_TEMPLATE = "forvaltning/privacy/lookup.html"
PATIENT_TEMPLATE = "forvaltning/privacy/patient.html"


privacy_choices_officer_required = staff_required(policy.may_manage_privacy_choices)


# --- forms ---------------------------------------------------------------------------


def _date_input() -> forms.DateInput:
    return forms.DateInput(attrs={"type": "date", "class": "ds-input"}, format="%Y-%m-%d")


class PrivacyLookupForm(forms.Form):
    national_id = forms.CharField(
        label=_("The patient's national identity number"),
        max_length=20,
        help_text=_("11 digits: fødselsnummer, D-number or H-number."),
        error_messages={"required": _("Enter the patient's national identity number.")},
    )


class PatientRequestForm(forms.Form):
    """The patient's request behind every change: reference, date and reason."""

    reference = forms.CharField(
        label=_("Reference of the request"),
        help_text=_("For example the case number of the patient's request."),
        max_length=100,
        error_messages={
            "required": _("Enter the reference of the patient's request."),
            "max_length": _("The reference can be at most %(limit_value)d characters."),
        },
        widget=forms.TextInput(attrs={"class": "ds-input", "autocomplete": "off"}),
    )
    request_date = forms.DateField(
        label=_("Date of the request"),
        help_text=_("The day the patient made the request (dd.mm.yyyy)."),
        input_formats=["%Y-%m-%d", "%d.%m.%Y"],
        error_messages={
            "required": _("Enter the date of the patient's request."),
            "invalid": _("Enter the date of the request as dd.mm.yyyy."),
        },
        widget=_date_input(),
    )
    reason = forms.CharField(
        label=_("Reason"),
        help_text=_("Why the change is made, as the patient stated it."),
        max_length=2000,
        error_messages={
            "required": _("Write the reason for the change."),
            "max_length": _("The reason can be at most %(limit_value)d characters."),
        },
        widget=forms.Textarea(attrs={"class": "ds-input", "rows": 2}),
    )

    def clean_request_date(self) -> datetime.date:
        value: datetime.date = self.cleaned_data["request_date"]
        if value > timezone.localdate():
            raise forms.ValidationError(_("The date of the request cannot be in the future."))
        return value

    def patient_request(self) -> services.PatientRequest:
        return services.PatientRequest(
            reference=self.cleaned_data["reference"],
            request_date=self.cleaned_data["request_date"],
            reason=self.cleaned_data["reason"],
        )


class RegisterChoiceForm(PatientRequestForm):
    kind = forms.ChoiceField(
        label=_("What the patient asks for"),
        choices=PrivacyChoiceKind.choices,
        error_messages={
            "required": _("Choose what to register."),
            "invalid_choice": _("Choose what to register."),
        },
        widget=forms.RadioSelect,
    )
    blocked_hpr_number = forms.CharField(
        label=_("HPR number of the clinician to block"),
        help_text=_("9 digits. Only when blocking a clinician."),
        required=False,
        max_length=20,
        widget=forms.TextInput(attrs={"class": "ds-input", "inputmode": "numeric", "autocomplete": "off"}),
    )
    field_order = ["kind", "blocked_hpr_number", "reference", "request_date", "reason"]

    def clean_blocked_hpr_number(self) -> str:
        return "".join(self.cleaned_data["blocked_hpr_number"].split())

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        kind, hpr = data.get("kind"), data.get("blocked_hpr_number", "")
        if kind == PrivacyChoiceKind.BLOCKED_CLINICIAN:
            if not hpr:
                self.add_error("blocked_hpr_number", _("Enter the HPR number of the clinician to block."))
            elif not HPR_NUMBER.match(hpr):
                self.add_error("blocked_hpr_number", _("An HPR number has 9 digits. Check the number."))
        elif kind and hpr:
            self.add_error(
                "blocked_hpr_number",
                _(
                    "An HPR number is given only when blocking a clinician. Remove it, or choose a blocked clinician."
                ),
            )
        return data


class LiftChoiceForm(PatientRequestForm):
    choice = forms.IntegerField(widget=forms.HiddenInput)


class DocumentBlockForm(PatientRequestForm):
    document = forms.UUIDField(widget=forms.HiddenInput)


# --- the handle ------------------------------------------------------------------------


def _now_ts() -> int:
    return int(timezone.now().timestamp())


def _new_handle(request: HttpRequest, patient: Patient) -> str:
    organisation = current_organisation(request)
    assert organisation is not None  # the policy checked it
    now = _now_ts()
    handles = {
        h: entry
        for h, entry in request.session.get(SESSION_HANDLES_KEY, {}).items()
        if entry["expires"] > now
    }
    handle = str(uuid.uuid4())
    handles[handle] = {
        "patient": patient.pk,
        "user": authenticated_user(request).pk,
        "organisation": organisation.pk,
        "expires": now + HANDLE_MINUTES * 60,
    }
    request.session[SESSION_HANDLES_KEY] = handles
    return handle


def _patient_for(request: HttpRequest, handle: UUID) -> Patient:
    """The patient behind this user's live handle; the 404 of a missing page otherwise
    (unknown, expired, another user's or another organisation's), logged."""

    entry = request.session.get(SESSION_HANDLES_KEY, {}).get(str(handle))
    organisation = current_organisation(request)
    patient = None
    if (
        entry is not None
        and entry["expires"] > _now_ts()
        and entry["user"] == request.user.pk
        and organisation is not None
        and entry["organisation"] == organisation.pk
    ):
        patient = Patient.objects.filter(pk=entry["patient"]).first()
    if patient is None:
        record_event(
            request=request,
            event_type=EventType.ACCESS_DENIED,
            outcome=Outcome.NOT_FOUND,
            reason_code="unknown_handle",
            details={"handle": str(handle), "channel": CHANNEL},
        )
        raise Http404()
    return patient


# --- views -----------------------------------------------------------------------------


@privacy_choices_officer_required
@require_http_methods(["GET", "POST"])
def privacy_lookup(request: HttpRequest) -> HttpResponse:
    if request.method == "GET":
        return render(request, LOOKUP_TEMPLATE, {"form": PrivacyLookupForm()})
    form = PrivacyLookupForm(request.POST)
    if not form.is_valid():
        return render(request, LOOKUP_TEMPLATE, {"form": form}, status=400)
    try:
        national_id = parse_national_id(
            form.cleaned_data["national_id"], allow_synthetic=settings.ALLOW_SYNTHETIC_IDS
        )
    except InvalidNationalId as exc:
        # The invalid input itself is not stored: it may be a mistyped real id.
        record_event(
            request=request,
            event_type=EventType.PATIENT_LOOKUP,
            outcome=Outcome.INVALID,
            reason_code=f"invalid_{exc.code}",
            details={"channel": CHANNEL},
        )
        form.add_error("national_id", national_id_message(exc.code))
        return render(request, LOOKUP_TEMPLATE, {"form": form}, status=400)

    patient = Patient.objects.filter(national_id=national_id.value).first()
    if patient is None:
        record_event(
            request=request,
            event_type=EventType.PATIENT_LOOKUP,
            outcome=Outcome.NOT_FOUND,
            reason_code="no_such_patient",
            patient_national_id=national_id.value,
            details={"channel": CHANNEL},
        )
        form.add_error("national_id", NO_SUCH_PATIENT)
        return render(request, LOOKUP_TEMPLATE, {"form": form}, status=404)

    record_event(
        request=request,
        event_type=EventType.PATIENT_LOOKUP,
        outcome=Outcome.GRANTED,
        patient=patient,
        details={"channel": CHANNEL},
    )
    handle = _new_handle(request, patient)
    return redirect("forvaltning:privacy_patient", handle=handle)


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


def _page(
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
    """The patient's page. A fixed number of queries, however many choices, blocks and
    documents the patient has."""

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
    lift_id = lift_form.data.get("choice") if lift_form is not None else None
    in_force = [
        ChoiceRow(
            choice,
            lift_form
            if lift_form is not None and str(choice.pk) == str(lift_id)
            else LiftChoiceForm(initial={"choice": choice.pk}, auto_id=f"id_lift{choice.pk}_%s"),
        )
        for choice in choices
        if choice.lifted_at is None
    ]
    active_blocks = {b.document_id: b for b in blocks if b.unblocked_at is None}
    bound_document = document_form.data.get("document") if document_form is not None else None
    document_rows = []
    for index, document in enumerate(documents):
        block = active_blocks.get(document.pk)
        if block is not None:
            state = "blocked_here"
        elif document.confidentiality_code == ConfidentialityCode.NORS:
            state = "blocked_at_source"
        else:
            state = "open"
        form = (
            document_form
            if document_form is not None and str(document.document_id) == str(bound_document)
            else DocumentBlockForm(initial={"document": document.document_id}, auto_id=f"id_doc{index}_%s")
        )
        document_rows.append(DocumentRow(document, state, block, form))

    history = [
        HistoryRow(
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
        for choice in choices
    ] + [
        HistoryRow(
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
        for block in blocks
    ]
    history.sort(key=lambda row: row.registered_at, reverse=True)
    context = {
        "handle": handle,
        "patient": patient,
        "in_force": in_force,
        "documents": document_rows,
        "history": history,
        "register_form": register_form or RegisterChoiceForm(),
        "blocked_clinician": PrivacyChoiceKind.BLOCKED_CLINICIAN,
        "error": error,
    }
    return render(request, PATIENT_TEMPLATE, context, status=status)


@privacy_choices_officer_required
@require_http_methods(["GET"])
def privacy_patient(request: HttpRequest, handle: UUID) -> HttpResponse:
    patient = _patient_for(request, handle)
    # The page shows who the patient is and their documents' titles: every view is logged.
    record_event(
        request=request,
        event_type=EventType.PATIENT_LOOKUP,
        outcome=Outcome.GRANTED,
        patient=patient,
        details={"channel": CHANNEL, "view": "privacy_choices"},
    )
    return _page(request, handle, patient)


AUDIT_FAILED = _("The change could not be logged, so it was not made. Please try again in a minute.")

RESULT_MESSAGES = {
    "register": {
        services.Result.DONE: _("The choice is registered. It applies from the clinician's next request."),
        services.Result.ALREADY: _("This choice is already registered and in force. Nothing was changed."),
    },
    "lift": {
        services.Result.DONE: _(
            "The choice is lifted. It no longer applies from the clinician's next request."
        ),
        services.Result.NOT_IN_FORCE: _("This choice is no longer in force. Nothing was changed."),
    },
    "block": {
        services.Result.DONE: _("The document is blocked (NORS). Clinicians no longer see it."),
        services.Result.ALREADY: _("The document is already blocked. Nothing was changed."),
        services.Result.BLOCKED_AT_SOURCE: _(
            "The document is already blocked by the source that shares it. Nothing was changed."
        ),
    },
    "unblock": {
        services.Result.DONE: _(
            "The block is lifted. The document has its previous confidentiality code again."
        ),
        services.Result.NOT_IN_FORCE: _("The document is not blocked here. Nothing was changed."),
    },
}


def _done(request: HttpRequest, handle: UUID, action: str, result: services.Result) -> HttpResponse:
    message = RESULT_MESSAGES[action][result]
    if result == services.Result.DONE:
        messages.success(request, message)
    else:
        messages.info(request, message)
    return redirect("forvaltning:privacy_patient", handle=handle)


@privacy_choices_officer_required
@require_POST
def privacy_register(request: HttpRequest, handle: UUID) -> HttpResponse:
    patient = _patient_for(request, handle)
    form = RegisterChoiceForm(request.POST)
    if not form.is_valid():
        return _page(request, handle, patient, register_form=form, status=400)
    try:
        result = services.register_choice(
            request=request,
            patient=patient,
            kind=form.cleaned_data["kind"],
            blocked_hpr_number=form.cleaned_data["blocked_hpr_number"],
            patient_request=form.patient_request(),
        )
    except AuditWriteFailed:
        return _page(request, handle, patient, register_form=form, error=str(AUDIT_FAILED), status=503)
    return _done(request, handle, "register", result)


@privacy_choices_officer_required
@require_POST
def privacy_lift(request: HttpRequest, handle: UUID) -> HttpResponse:
    patient = _patient_for(request, handle)
    form = LiftChoiceForm(request.POST, auto_id="id_lift_%s")
    if not form.is_valid():
        return _page(request, handle, patient, lift_form=form, status=400)
    try:
        result = services.lift_choice(
            request=request,
            patient=patient,
            choice_id=form.cleaned_data["choice"],
            patient_request=form.patient_request(),
        )
    except AuditWriteFailed:
        return _page(request, handle, patient, lift_form=form, error=str(AUDIT_FAILED), status=503)
    return _done(request, handle, "lift", result)


def _document_action(request: HttpRequest, handle: UUID, action: str) -> HttpResponse:
    patient = _patient_for(request, handle)
    form = DocumentBlockForm(request.POST, auto_id="id_document_%s")
    if not form.is_valid():
        return _page(request, handle, patient, document_form=form, status=400)
    document = DocumentReference.objects.filter(
        document_id=form.cleaned_data["document"], patient=patient
    ).first()
    if document is None:  # not this patient's document: as for a missing page, logged
        record_event(
            request=request,
            event_type=EventType.ACCESS_DENIED,
            outcome=Outcome.NOT_FOUND,
            reason_code="unknown_document",
            patient=patient,
            details={"document_id": str(form.cleaned_data["document"]), "channel": CHANNEL},
        )
        raise Http404()
    service = services.block_document if action == "block" else services.unblock_document
    try:
        result = service(
            request=request, patient=patient, document=document, patient_request=form.patient_request()
        )
    except AuditWriteFailed:
        return _page(request, handle, patient, document_form=form, error=str(AUDIT_FAILED), status=503)
    return _done(request, handle, action, result)


@privacy_choices_officer_required
@require_POST
def privacy_block_document(request: HttpRequest, handle: UUID) -> HttpResponse:
    return _document_action(request, handle, "block")


@privacy_choices_officer_required
@require_POST
def privacy_unblock_document(request: HttpRequest, handle: UUID) -> HttpResponse:
    return _document_action(request, handle, "unblock")
