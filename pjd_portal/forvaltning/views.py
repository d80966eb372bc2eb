"""The administration area (/forvaltning/): the patient's access log for the privacy officer.

"Innsyn i logg": a patient asks who has accessed their records; the privacy officer looks
the patient up by national id (POST, never in a URL) and prints the log for them: who,
which organisation, when, which document, on what basis, and the outcome, newest first.

The area exists only for those the policy lets in. Everyone else, anonymous users
included, gets the very 404 a missing page gives, so the area cannot be discovered.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from pjd_portal.access import policy
from pjd_portal.access.models import Basis
from pjd_portal.accounts.audit_context import actor_of, point_of_care_of
from pjd_portal.accounts.context import current_organisation
from pjd_portal.auditlog.events import Outcome
from pjd_portal.auditlog.models import AccessEvent
from pjd_portal.forvaltning.access import staff_required
from pjd_portal.forvaltning.forms import PatientLogForm
from pjd_portal.lib.replica import replica_reads
from pjd_portal.logreading.log_reads import record_log_read
from pjd_portal.logreading.logged_documents import logged_document
from pjd_portal.logreading.selectors import InvalidCursor, patient_log_page
from pjd_portal.patients.forms import entered_national_id
from pjd_portal.patients.lookup import find_patient
from pjd_portal.patients.models import Patient
from pjd_portal.patients.national_id import InvalidNationalId

CHANNEL = "privacy_officer"
TEMPLATE = "forvaltning/patient_log.html"


privacy_officer_required = staff_required(policy.may_read_patient_access_log)


@dataclass(frozen=True)
class LogRow:
    """One line of the printed log, as the patient will read it."""

    occurred_at: Any
    action: str
    actor_name: str
    actor_hpr_number: str
    organisation_name: str
    organisation_orgnr: str
    legal_entity_name: str  # "" when the organisation is its own legal entity
    document_title: str
    document_institution: str
    document_withheld: bool
    basis: str
    reason_text: str
    # An access from the EPJ: its own decision's reference and the care relation it attested.
    decision_ref: str
    care_relation: str
    outcome: str
    granted: bool


def _basis_label(code: str) -> str:
    return str(Basis(code).label) if code in Basis.values else code


def log_rows(events: list[AccessEvent]) -> list[LogRow]:
    rows = []
    for event in events:
        document = logged_document(event)
        rows.append(
            LogRow(
                occurred_at=event.occurred_at,
                action=event.get_event_type_display(),
                actor_name=event.actor_name,
                actor_hpr_number=event.actor_hpr_number,
                organisation_name=event.organisation_name,
                organisation_orgnr=event.organisation_orgnr,
                legal_entity_name=event.legal_entity_name if event.has_separate_legal_entity else "",
                document_title=document.title if document is not None else "",
                document_institution=document.institution_name if document is not None else "",
                document_withheld=document is not None and document.withheld,
                basis=_basis_label(event.basis),
                reason_text=event.reason_text,
                decision_ref=event.from_epj.get("decision_ref", ""),
                care_relation=event.from_epj.get("purpose_of_use_details", ""),
                outcome=event.get_outcome_display(),
                granted=event.outcome == Outcome.GRANTED,
            )
        )
    return rows


@privacy_officer_required
@replica_reads
def patient_access_log(request: HttpRequest) -> HttpResponse:
    if request.method not in ("GET", "POST"):
        response = HttpResponse(status=405)
        response["Allow"] = "GET, POST"
        return response
    if request.method == "GET":
        return render(request, TEMPLATE, {"form": PatientLogForm()})
    form = PatientLogForm(request.POST)
    entered = entered_national_id(form)
    if entered is None or (form.errors and not isinstance(entered, InvalidNationalId)):
        return render(request, TEMPLATE, {"form": form}, status=400)  # nothing looked up, nothing logged
    match = find_patient(entered)
    if match.patient is None:
        # Invalid (the field says why; the input is not stored) or no such patient (the number is).
        record_log_read(
            actor=actor_of(request),
            where=point_of_care_of(request),
            outcome=match.outcome,
            channel=CHANNEL,
            national_id=match.national_id,
            reason_code=match.reason_code,
        )
        if match.outcome == Outcome.INVALID:
            return render(request, TEMPLATE, {"form": form}, status=400)
        return render(request, TEMPLATE, {"form": form, "not_found": True})
    return _printed_log(request, form, match.patient)


def _printed_log(request: HttpRequest, form: PatientLogForm, patient: Patient) -> HttpResponse:
    """The found patient's log, one page of it; the read is logged before it is shown."""

    cursor = form.cleaned_data["cursor"] or None
    try:
        page = patient_log_page(patient.pk, cursor=cursor, limit=settings.PATIENT_LOG_PAGE_SIZE)
    except InvalidCursor:
        # A forged or stale page link: nothing is shown, and the attempt is logged.
        record_log_read(
            actor=actor_of(request),
            where=point_of_care_of(request),
            outcome=Outcome.INVALID,
            channel=CHANNEL,
            patient=patient,
            reason_code="invalid_cursor",
        )
        form.add_error(None, _("The page could not be shown. Search again from the first page."))
        return render(request, TEMPLATE, {"form": form}, status=400)
    record_log_read(
        actor=actor_of(request),
        where=point_of_care_of(request),
        outcome=Outcome.GRANTED,
        channel=CHANNEL,
        patient=patient,
        details={"returned": len(page.events), "cursor": bool(cursor)},
    )
    return render(
        request,
        TEMPLATE,
        {
            "form": PatientLogForm(initial={"national_id": patient.national_id}),
            "patient": patient,
            "national_id": patient.national_id,
            "rows": log_rows(page.events),
            "next_cursor": page.next_cursor,
            "first_page": cursor is None,
            "printed_at": timezone.now(),
            "organisation": current_organisation(request),
        },
    )
