"""Log review (loggkontroll) in the administration area, for an organisation's auditors.

An auditor searches the access log (the patient's national id only in the POST body),
sees each event with its risk signals, opens one event by its UUID and exports a search as
CSV. They see the events made by their organisation's staff and the events on documents
their organisation shares, nothing else (`policy.log_review_events_q`). Every search,
event page and export is itself an audited event, committed before anything is shown.

Everyone but an auditor gets the 404 of a missing page; so does an auditor asking for an
event outside their scope (and that attempt is logged).

The review queue (status, comment, reviewer per flagged or sampled event) is in
pjd_portal/review, with the same scope and the same `auditor_required`.
"""

from __future__ import annotations

import csv
import datetime
import uuid
from collections.abc import Iterator
from typing import Any

from django import forms
from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import render
from django.utils import timezone, translation
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from pjd_portal.access import policy
from pjd_portal.accounts.audit_context import actor_of, point_of_care_of
from pjd_portal.auditlog import events
from pjd_portal.auditlog.events import Outcome
from pjd_portal.auditlog.services import record_event, record_event_committed
from pjd_portal.forvaltning.access import auditor_required
from pjd_portal.lib.replica import replica_reads
from pjd_portal.logreading import log_search as queries
from pjd_portal.logreading import risk
from pjd_portal.logreading.event_basis import basis_label, basis_reason
from pjd_portal.logreading.logged_documents import reviewed_document
from pjd_portal.logreading.selectors import InvalidCursor
from pjd_portal.patients.forms import NationalIdField, entered_national_id
from pjd_portal.patients.lookup import PatientMatch, find_patient
from pjd_portal.patients.models import Patient
from pjd_portal.patients.national_id import InvalidNationalId

SEARCH_TEMPLATE = "forvaltning/logreview/search.html"
EVENT_TEMPLATE = "forvaltning/logreview/event.html"
FILTER_FIELDS = ("clinician", "organisation", "date_from", "date_to", "event_type", "outcome", "signal")


def _method_not_allowed(*allowed: str) -> HttpResponse:
    response = HttpResponse(status=405)
    response["Allow"] = ", ".join(allowed)
    return response


def _choices(choices: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    return [("", _("All")), *choices]


class LogSearchForm(forms.Form):
    """The auditor's search (POST only: the national id never goes in a URL)."""

    national_id = NationalIdField(
        label=_("The patient's national identity number"),
        required=False,
        help_text=_("11 digits. Leave empty to search all patients."),
    )
    clinician = forms.CharField(
        label=_("Clinician"),
        required=False,
        max_length=200,
        help_text=_("HPR number or part of the name."),
        widget=forms.TextInput(attrs={"autocomplete": "off", "class": "ds-input"}),
    )
    organisation = forms.RegexField(
        label=_("Organisation (org. no.)"),
        required=False,
        regex=r"^\d{9}$",
        strip=True,
        help_text=_("The organisation the clinician acted for: 9 digits."),
        error_messages={"invalid": _("Enter an organisation number of 9 digits.")},
        widget=forms.TextInput(attrs={"autocomplete": "off", "inputmode": "numeric", "class": "ds-input"}),
    )
    date_from = forms.DateField(
        label=_("From date"),
        required=False,
        error_messages={"invalid": _("Enter a date, for example 31.12.2026.")},
        widget=forms.DateInput(attrs={"type": "date", "class": "ds-input"}, format="%Y-%m-%d"),
    )
    date_to = forms.DateField(
        label=_("To date (inclusive)"),
        required=False,
        error_messages={"invalid": _("Enter a date, for example 31.12.2026.")},
        widget=forms.DateInput(attrs={"type": "date", "class": "ds-input"}, format="%Y-%m-%d"),
    )
    event_type = forms.ChoiceField(
        label=_("Event"),
        required=False,
        choices=_choices(events.choices()),
        widget=forms.Select(attrs={"class": "ds-input"}),
    )
    outcome = forms.ChoiceField(
        label=_("Outcome"),
        required=False,
        choices=_choices(Outcome.choices),
        widget=forms.Select(attrs={"class": "ds-input"}),
    )
    signal = forms.ChoiceField(
        label=_("Risk signal"),
        required=False,
        choices=_choices(risk.Signal.choices),
        widget=forms.Select(attrs={"class": "ds-input"}),
    )
    # Where the previous page ended (opaque, signed); empty for the first page.
    cursor = forms.CharField(required=False, max_length=500, widget=forms.HiddenInput)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        start, end = data.get("date_from"), data.get("date_to")
        for name in ("date_from", "date_to"):
            day = data.get(name)
            # The log starts with the portal; far-off dates overflow the date arithmetic.
            if day and not (EARLIEST_DATE <= day <= LATEST_DATE):
                self.add_error(name, _("Choose a date between 2000 and 2100."))
                data.pop(name, None)
        if start and end and start > end and "date_from" in data and "date_to" in data:
            self.add_error("date_to", _("The to date must be on or after the from date."))
        return data


EARLIEST_DATE = datetime.date(2000, 1, 1)
LATEST_DATE = datetime.date(2100, 12, 31)


def _oslo_midnight(day: datetime.date) -> datetime.datetime:
    return datetime.datetime.combine(day, datetime.time.min, tzinfo=risk.OSLO)


class SearchRefused(Exception):
    """The search form is not valid (its national id, or another field); the form carries
    the message."""


def _filters(
    request: HttpRequest, form: LogSearchForm, event_type: str
) -> tuple[queries.LogFilters, Patient | None]:
    """The search's filters from the form. Raises SearchRefused when the form is not valid;
    an invalid national id is logged as a refused search or export (`event_type`)."""

    entered = entered_national_id(form)
    if isinstance(entered, InvalidNationalId):
        record_event_committed(
            events.kind(event_type)(outcome=Outcome.INVALID, reason_code=f"invalid_{entered.code}"),
            actor=actor_of(request),
            where=point_of_care_of(request),
        )
    if not form.is_valid():
        raise SearchRefused()
    data = form.cleaned_data
    # No national id searches all patients; one no patient has still filters the log's column.
    match = find_patient(entered) if entered is not None else PatientMatch(outcome=Outcome.GRANTED)
    filters = queries.LogFilters(
        patient_id=match.patient.pk if match.patient is not None else None,
        patient_national_id=match.national_id,
        clinician=data["clinician"],
        organisation_orgnr=data["organisation"],
        start=_oslo_midnight(data["date_from"]) if data["date_from"] else None,
        end=_oslo_midnight(data["date_to"] + datetime.timedelta(days=1)) if data["date_to"] else None,
        event_type=data["event_type"],
        outcome=data["outcome"],
        signal=data["signal"],
    )
    return filters, match.patient


def _audit_details(form: LogSearchForm) -> dict[str, Any]:
    """The search's filters for the audit row (the national id has its own column)."""

    return {name: str(form.cleaned_data[name] or "") for name in FILTER_FIELDS}


def _search_event(
    form: LogSearchForm,
    filters: queries.LogFilters,
    patient: Patient | None,
    *,
    outcome: str,
    reason_code: str = "",
    **details: int | bool,
) -> events.Event:
    return events.LOG_SEARCH(
        outcome=outcome,
        reason_code=reason_code,
        patient=patient,
        patient_national_id=filters.patient_national_id,
        filters=_audit_details(form),
        details=details,
    )


def _context(**extra: Any) -> dict[str, Any]:
    return dict(extra)


@auditor_required
@replica_reads
def log_search(request: HttpRequest, staff: policy.StaffFacts) -> HttpResponse:
    if request.method not in ("GET", "POST"):
        return _method_not_allowed("GET", "POST")
    if request.method == "GET":
        return render(request, SEARCH_TEMPLATE, _context(form=LogSearchForm()))

    form = LogSearchForm(request.POST)
    try:
        filters, patient = _filters(request, form, events.LOG_SEARCH.name)
    except SearchRefused:
        return render(request, SEARCH_TEMPLATE, _context(form=form), status=400)
    thresholds = risk.Thresholds.from_settings()
    cursor = form.cleaned_data["cursor"] or None
    try:
        page = queries.search_page(
            staff, filters, thresholds=thresholds, cursor=cursor, limit=settings.LOG_REVIEW_PAGE_SIZE
        )
    except InvalidCursor:
        return _refuse_cursor(request, form, filters, patient)
    record_event_committed(
        _search_event(
            form, filters, patient, outcome=Outcome.GRANTED, returned=len(page.rows), cursor=bool(cursor)
        ),
        actor=actor_of(request),
        where=point_of_care_of(request),
    )
    return render(
        request,
        SEARCH_TEMPLATE,
        _context(
            form=form,
            searched=True,
            rows=[_row_view(row, thresholds, staff) for row in page.rows],
            next_cursor=page.next_cursor,
            first_page=cursor is None,
        ),
    )


def _refuse_cursor(
    request: HttpRequest, form: LogSearchForm, filters: queries.LogFilters, patient: Patient | None
) -> HttpResponse:
    """A forged or stale page link: nothing is shown, and the attempt is logged."""

    record_event(
        _search_event(form, filters, patient, outcome=Outcome.INVALID, reason_code="invalid_cursor"),
        actor=actor_of(request),
        where=point_of_care_of(request),
    )
    form.add_error(None, _("The page could not be shown. Search again from the first page."))
    return render(request, SEARCH_TEMPLATE, _context(form=form), status=400)


def _row_view(
    row: queries.ReviewRow, thresholds: risk.Thresholds, staff: policy.StaffFacts
) -> dict[str, Any]:
    event = row.event
    return {
        "event": event,
        # The auditor's own access, or an access to their own records: marked, for another
        # auditor to review (the review queue refuses them the item).
        "conflict": policy.review_conflict(
            staff,
            actor_user_id=event.actor_user_id,
            actor_pid=event.actor_pid,
            patient_national_id=event.patient_national_id,
        ),
        "basis": basis_label(event.basis),
        "document": reviewed_document(event),
        "signals": [
            {
                "code": code,
                "label": risk.Signal(code).label,
                "explanation": risk.explanation(code, thresholds),
            }
            for code in row.signals
        ],
    }


@auditor_required
@replica_reads
def log_event(request: HttpRequest, staff: policy.StaffFacts, event_id: uuid.UUID) -> HttpResponse:
    if request.method != "GET":
        return _method_not_allowed("GET")
    thresholds = risk.Thresholds.from_settings()
    row = queries.event_for_review(staff, event_id, thresholds=thresholds)
    if row is None:
        # A guessed or foreign event: the same 404 as a missing page, and logged.
        record_event(
            events.ACCESS_DENIED(
                outcome=Outcome.DENIED,
                reason_code="event_outside_scope",
                view="log_event",
                event_id=str(event_id),
            ),
            actor=actor_of(request),
            where=point_of_care_of(request),
        )
        raise Http404()
    event = row.event
    record_event_committed(
        events.LOG_EVENT_VIEW(
            outcome=Outcome.GRANTED,
            patient=event.patient if event.patient_id is not None else None,
            patient_national_id=event.patient_national_id,
            event_id=str(event.event_id),
        ),
        actor=actor_of(request),
        where=point_of_care_of(request),
    )
    return render(
        request, EVENT_TEMPLATE, _context(row=_row_view(row, thresholds, staff), reason=basis_reason(event))
    )


# --- CSV export ----------------------------------------------------------------------


class _Echo:
    """A file-like object whose write returns the line, for csv.writer in a stream."""

    def write(self, value: str) -> str:
        return value


_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> str:
    """A CSV cell that a spreadsheet will not run as a formula."""

    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_PREFIXES) else text


def _csv_header() -> list[str]:
    return [
        gettext("Time (Norwegian time)"),
        gettext("Event id"),
        gettext("Event"),
        gettext("Outcome"),
        gettext("Reason code"),
        gettext("Clinician"),
        gettext("HPR number"),
        gettext("Organisation"),
        gettext("Org. no."),
        gettext("Patient"),
        gettext("National identity number"),
        gettext("Document"),
        gettext("Source org. no."),
        gettext("Basis for access"),
        gettext("Reason given"),
        gettext("Risk signals"),
        gettext("The EPJ's decision"),
        gettext("Care relation"),
    ]


def _csv_line(row: queries.ReviewRow) -> list[str]:
    event = row.event
    patient = event.patient if event.patient_id is not None else None
    document = reviewed_document(event)
    return [
        _cell(timezone.localtime(event.occurred_at, risk.OSLO).isoformat(timespec="seconds")),
        _cell(event.event_id),
        _cell(event.get_event_type_display()),
        _cell(event.get_outcome_display()),
        _cell(event.reason_code),
        _cell(event.actor_name),
        _cell(event.actor_hpr_number),
        _cell(event.organisation_name),
        _cell(event.organisation_orgnr),
        _cell(patient.name if patient is not None else ""),
        _cell(event.patient_national_id),
        _cell(document.title if document is not None else ""),
        _cell(event.source_orgnr),
        _cell(basis_label(event.basis)),
        _cell(event.reason_text),
        _cell("; ".join(str(risk.Signal(code).label) for code in row.signals)),
        _cell(event.from_epj.get("decision_ref", "")),
        _cell(event.from_epj.get("purpose_of_use_details", "")),
    ]


@auditor_required
@replica_reads
def log_export(request: HttpRequest, staff: policy.StaffFacts) -> HttpResponseBase:
    if request.method != "POST":
        return _method_not_allowed("POST")
    form = LogSearchForm(request.POST)
    try:
        filters, patient = _filters(request, form, events.LOG_EXPORT.name)
    except SearchRefused:
        return render(request, SEARCH_TEMPLATE, _context(form=form), status=400)
    thresholds = risk.Thresholds.from_settings()
    max_rows = settings.LOG_REVIEW_EXPORT_MAX_ROWS
    # Committed before the first byte: an export that cannot be logged is not made.
    record_event_committed(
        events.LOG_EXPORT(
            outcome=Outcome.GRANTED,
            patient=patient,
            patient_national_id=filters.patient_national_id,
            filters=_audit_details(form),
            format="csv",
            max_rows=max_rows,
        ),
        actor=actor_of(request),
        where=point_of_care_of(request),
    )
    writer = csv.writer(_Echo(), delimiter=";")
    header = _csv_header()

    language = translation.get_language()

    def lines() -> Iterator[str]:
        yield "\ufeff" + writer.writerow(header)  # the BOM: spreadsheets then read UTF-8
        with translation.override(language):  # the stream runs after the view returns
            for row in queries.iter_rows(staff, filters, thresholds=thresholds, max_rows=max_rows):
                yield writer.writerow(_csv_line(row))

    response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
    stamp = timezone.localtime(timezone.now(), risk.OSLO).strftime("%Y%m%d-%H%M")
    response["Content-Disposition"] = f'attachment; filename="loggkontroll-{stamp}.csv"'
    return response
