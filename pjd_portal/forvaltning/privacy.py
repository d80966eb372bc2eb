"""The patients' privacy choices, for the privacy officer (/forvaltning/personvern/).

On the patient's request the privacy officer registers and lifts a reservation, a
restriction of document sharing, blocked clinicians (by HPR number) and blocked documents
(NORS), each with the request's reference, date and reason. The history of every change is
kept and shown.

The views only: the forms are in `privacy_forms`, the patient's page in `privacy_page`.
The patient is looked up by national id in a POST form (`patients.lookup`), then referred
to by an opaque handle, the clinician's mechanism with its own purpose (`access.handles`). Everyone the policy keeps out
of the area gets the 404 of a missing page. Every change goes through `privacy_services`,
which writes the change and its audit event together.
"""

from __future__ import annotations

from uuid import UUID

from django.contrib import messages
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_http_methods, require_POST

from pjd_portal.access import handles, policy
from pjd_portal.access.models import LookupPurpose
from pjd_portal.accounts.audit_context import actor_of, point_of_care_of
from pjd_portal.accounts.caller import caller_of
from pjd_portal.auditlog import events
from pjd_portal.auditlog.events import Outcome
from pjd_portal.auditlog.services import AuditWriteFailed, record_event
from pjd_portal.documents.models import DocumentReference
from pjd_portal.forvaltning import privacy_page
from pjd_portal.forvaltning import privacy_services as services
from pjd_portal.forvaltning.access import staff_required
from pjd_portal.forvaltning.privacy_forms import (
    DocumentBlockForm,
    LiftChoiceForm,
    PrivacyLookupForm,
    RegisterChoiceForm,
)
from pjd_portal.patients.forms import NO_SUCH_PATIENT, entered_national_id
from pjd_portal.patients.lookup import NO_SUCH_PATIENT_CODE, find_patient
from pjd_portal.patients.models import Patient

LOOKUP_TEMPLATE = "forvaltning/privacy/lookup.html"
CHANNEL = "privacy_officer"
HANDLE_MINUTES = 60  # how long the privacy officer's handle lives


privacy_choices_officer_required = staff_required(policy.may_manage_privacy_choices)


# --- views -----------------------------------------------------------------------------


def _patient_for(request: HttpRequest, handle: UUID) -> Patient:
    """The patient behind this officer's live privacy handle; the logged 404 otherwise."""

    lookup = handles.resolve_handle(
        caller_of(request), handle, purpose=LookupPurpose.PRIVACY_OFFICER, channel=CHANNEL
    )
    return lookup.patient


@privacy_choices_officer_required
@require_http_methods(["GET", "POST"])
def privacy_lookup(request: HttpRequest) -> HttpResponse:
    if request.method == "GET":
        return render(request, LOOKUP_TEMPLATE, {"form": PrivacyLookupForm()})
    form = PrivacyLookupForm(request.POST)
    entered = entered_national_id(form)
    if entered is None:  # empty or too long: nothing looked up, nothing logged
        return render(request, LOOKUP_TEMPLATE, {"form": form}, status=400)
    match = find_patient(entered)
    if match.patient is None:
        record_event(
            events.PATIENT_LOOKUP(**match.event_fields(), channel=CHANNEL),
            actor=actor_of(request),
            where=point_of_care_of(request),
        )
        if match.reason_code == NO_SUCH_PATIENT_CODE:  # an invalid number has the field's message
            form.add_error("national_id", NO_SUCH_PATIENT)
            return render(request, LOOKUP_TEMPLATE, {"form": form}, status=404)
        return render(request, LOOKUP_TEMPLATE, {"form": form}, status=400)
    with transaction.atomic():
        lookup = handles.issue_handle(
            caller_of(request), match.patient, purpose=LookupPurpose.PRIVACY_OFFICER, minutes=HANDLE_MINUTES
        )
        record_event(
            events.PATIENT_LOOKUP(**match.event_fields(), channel=CHANNEL),
            actor=actor_of(request),
            where=point_of_care_of(request),
        )
    return redirect("forvaltning:privacy_patient", handle=lookup.handle)


@privacy_choices_officer_required
@require_http_methods(["GET"])
def privacy_patient(request: HttpRequest, handle: UUID) -> HttpResponse:
    patient = _patient_for(request, handle)
    # The page shows who the patient is and their documents' titles: every view is logged.
    record_event(
        events.PRIVACY_CHOICES_VIEWED(outcome=Outcome.GRANTED, patient=patient, channel=CHANNEL),
        actor=actor_of(request),
        where=point_of_care_of(request),
    )
    return privacy_page.render_page(request, handle, patient)


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
        return privacy_page.render_page(request, handle, patient, register_form=form, status=400)
    try:
        result = services.register_choice(
            caller=caller_of(request),
            patient=patient,
            kind=form.cleaned_data["kind"],
            blocked_hpr_number=form.cleaned_data["blocked_hpr_number"],
            patient_request=form.patient_request(),
        )
    except AuditWriteFailed:
        return privacy_page.render_page(
            request, handle, patient, register_form=form, error=str(AUDIT_FAILED), status=503
        )
    return _done(request, handle, "register", result)


@privacy_choices_officer_required
@require_POST
def privacy_lift(request: HttpRequest, handle: UUID) -> HttpResponse:
    patient = _patient_for(request, handle)
    form = LiftChoiceForm(request.POST, auto_id="id_lift_%s")
    if not form.is_valid():
        return privacy_page.render_page(request, handle, patient, lift_form=form, status=400)
    try:
        result = services.lift_choice(
            caller=caller_of(request),
            patient=patient,
            choice_id=form.cleaned_data["choice"],
            patient_request=form.patient_request(),
        )
    except AuditWriteFailed:
        return privacy_page.render_page(
            request, handle, patient, lift_form=form, error=str(AUDIT_FAILED), status=503
        )
    return _done(request, handle, "lift", result)


def _document_action(request: HttpRequest, handle: UUID, action: str) -> HttpResponse:
    patient = _patient_for(request, handle)
    form = DocumentBlockForm(request.POST, auto_id="id_document_%s")
    if not form.is_valid():
        return privacy_page.render_page(request, handle, patient, document_form=form, status=400)
    document = DocumentReference.objects.filter(
        document_id=form.cleaned_data["document"], patient=patient
    ).first()
    if document is None:  # not this patient's document: as for a missing page, logged
        record_event(
            events.ACCESS_DENIED(
                outcome=Outcome.NOT_FOUND,
                reason_code="unknown_document",
                patient=patient,
                document_id=str(form.cleaned_data["document"]),
                channel=CHANNEL,
            ),
            actor=actor_of(request),
            where=point_of_care_of(request),
        )
        raise Http404()
    service = services.block_document if action == "block" else services.unblock_document
    try:
        result = service(
            caller=caller_of(request),
            patient=patient,
            document=document,
            patient_request=form.patient_request(),
        )
    except AuditWriteFailed:
        return privacy_page.render_page(
            request, handle, patient, document_form=form, error=str(AUDIT_FAILED), status=503
        )
    return _done(request, handle, action, result)


@privacy_choices_officer_required
@require_POST
def privacy_block_document(request: HttpRequest, handle: UUID) -> HttpResponse:
    return _document_action(request, handle, "block")


@privacy_choices_officer_required
@require_POST
def privacy_unblock_document(request: HttpRequest, handle: UUID) -> HttpResponse:
    return _document_action(request, handle, "unblock")
