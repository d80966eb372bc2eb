"""The review queue's pages in the administration area (/forvaltning/loggkontroll/ko/).

For an organisation's auditors only (the log review's `auditor_required`: everyone else
gets the 404 of a missing page). The list filters by status and signal, newest event
first, keyset-paged; an item is addressed by its own UUID, and an item outside the
auditor's scope is answered as missing, and logged. The status form is POST only (CSRF);
a change is written with its history row and its access event (`services.change_status`).
Listing the queue and opening an item show personal data and are logged as log searches
and event views. An item of the auditor's own access, or of an access to them as a patient,
is shown marked and without the form; its status POST is refused (403, logged) before the
form is read (`services.refuse_if_conflicted`, the rule `policy.may_act_on_review_item`).
"""

from __future__ import annotations

import uuid
from typing import Any, NoReturn
from urllib.parse import urlencode

from django import forms
from django.conf import settings
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext_lazy as _

from pjd_portal.access import policy
from pjd_portal.accounts.audit_context import actor_of, point_of_care_of
from pjd_portal.accounts.caller import caller_of
from pjd_portal.accounts.models import User
from pjd_portal.auditlog import events
from pjd_portal.auditlog.events import Outcome
from pjd_portal.auditlog.models import AccessEvent
from pjd_portal.auditlog.services import record_event, record_event_committed
from pjd_portal.forvaltning.access import auditor_required
from pjd_portal.lib.replica import note_primary_write, replica_reads
from pjd_portal.logreading import log_search, risk
from pjd_portal.logreading.event_basis import basis_label, basis_reason
from pjd_portal.logreading.logged_documents import reviewed_document
from pjd_portal.logreading.selectors import InvalidCursor
from pjd_portal.review import services
from pjd_portal.review.models import ReviewItem, ReviewStatus

QUEUE_TEMPLATE = "forvaltning/review/queue.html"
ITEM_TEMPLATE = "forvaltning/review/item.html"
# A status that closes or escalates the review needs the reviewer's reasons.
COMMENT_REQUIRED = frozenset({ReviewStatus.JUSTIFIED, ReviewStatus.FOLLOW_UP, ReviewStatus.VIOLATION})


def _method_not_allowed(*allowed: str) -> HttpResponse:
    response = HttpResponse(status=405)
    response["Allow"] = ", ".join(allowed)
    return response


class QueueFilterForm(forms.Form):
    """The list's filters (GET: they carry no personal data)."""

    status = forms.ChoiceField(
        label=_("Status"),
        required=False,
        choices=[("", _("All")), *ReviewStatus.choices],
        widget=forms.Select(attrs={"class": "ds-input"}),
    )
    signal = forms.ChoiceField(
        label=_("Risk signal"),
        required=False,
        choices=[("", _("All")), *risk.Signal.choices],
        widget=forms.Select(attrs={"class": "ds-input"}),
    )
    kind = forms.ChoiceField(
        label=_("Why queued"),
        required=False,
        choices=[("", _("All")), ("signal", _("Risk signal")), ("sample", _("Random sample"))],
        widget=forms.Select(attrs={"class": "ds-input"}),
    )
    cursor = forms.CharField(required=False, max_length=500, widget=forms.HiddenInput)


class StatusForm(forms.Form):
    status = forms.ChoiceField(
        label=_("New status"),
        choices=ReviewStatus.choices,
        error_messages={"required": _("Choose a status."), "invalid_choice": _("Choose a status.")},
        widget=forms.RadioSelect,
    )
    comment = forms.CharField(
        label=_("Comment"),
        required=False,
        max_length=2000,
        help_text=_("What you checked and what you found. Needed for justified, follow-up and violation."),
        widget=forms.Textarea(attrs={"rows": 4, "class": "ds-input"}),
    )
    # The item's version the form was shown with (optimistic concurrency).
    version = forms.IntegerField(min_value=1, widget=forms.HiddenInput)

    def __init__(self, *args: Any, item: ReviewItem, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.item = item

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        status, comment = data.get("status"), (data.get("comment") or "").strip()
        data["comment"] = comment
        if status in COMMENT_REQUIRED and not comment:
            self.add_error("comment", _("Write a comment: what you checked and what you found."))
        elif (
            status and status == self.item.status and not comment and data.get("version") == self.item.version
        ):
            self.add_error("status", _("Choose another status, or write a comment."))
        return data


def _signal_views(codes: tuple[str, ...], thresholds: risk.Thresholds) -> list[dict[str, Any]]:
    return [
        {"code": code, "label": risk.Signal(code).label, "explanation": risk.explanation(code, thresholds)}
        for code in codes
        if code in risk.Signal.values
    ]


@auditor_required
@replica_reads
def review_queue(request: HttpRequest, staff: policy.StaffFacts) -> HttpResponse:
    if request.method != "GET":
        return _method_not_allowed("GET")
    form = QueueFilterForm(request.GET)
    if not form.is_valid():
        return render(request, QUEUE_TEMPLATE, {"form": form, **_sample_rate()}, status=400)
    data = form.cleaned_data
    filters = services.QueueFilters(status=data["status"], signal=data["signal"], kind=data["kind"])
    cursor = form.cleaned_data["cursor"] or None
    try:
        page = services.queue_page(staff, filters, cursor=cursor, limit=settings.LOG_REVIEW_PAGE_SIZE)
    except InvalidCursor:
        form.add_error(None, _("The page could not be shown. Start again from the first page."))
        return render(request, QUEUE_TEMPLATE, {"form": form, **_sample_rate()}, status=400)
    record_event_committed(
        events.LOG_SEARCH(
            outcome=Outcome.GRANTED,
            view="review_queue",
            filters={"status": filters.status, "signal": filters.signal, "kind": filters.kind},
            returned=len(page.rows),
            cursor=bool(cursor),
        ),
        actor=actor_of(request),
        where=point_of_care_of(request),
    )
    rows = _row_views(staff, page)
    next_query = ""
    if page.next_cursor:
        next_query = "?" + _query(
            status=filters.status, signal=filters.signal, kind=filters.kind, cursor=page.next_cursor
        )
    context = {"form": form, "rows": rows, "next_query": next_query, "first_page": cursor is None}
    return render(request, QUEUE_TEMPLATE, {**context, **_sample_rate()})


def _row_views(staff: policy.StaffFacts, page: services.QueuePage) -> list[dict[str, Any]]:
    thresholds = risk.Thresholds.from_settings()
    return [
        {
            "item": row.item,
            "event": row.event,
            "signals": _signal_views(row.item.signals, thresholds),
            # Separation of duties: the auditor's own access, or one to their own records.
            "conflict": _conflict(services.review_decision(staff, row.event)) if row.event else "",
        }
        for row in page.rows
    ]


def _conflict(decision: policy.Decision) -> str:
    return "" if decision else decision.reason_code


def _sample_rate() -> dict[str, Any]:
    """The sample's rate and floor as the queue states them."""

    return {
        "sample_percent": f"{settings.REVIEW_QUEUE_SAMPLE_RATE * 100:g} %".replace(".", ","),
        "sample_min": settings.REVIEW_QUEUE_SAMPLE_MIN if settings.REVIEW_QUEUE_SAMPLE_RATE > 0 else 0,
    }


def _query(**params: str) -> str:
    return urlencode({name: value for name, value in params.items() if value})


def _refuse_outside_scope(request: HttpRequest, view: str, item_id: uuid.UUID) -> NoReturn:
    """A guessed or foreign item: logged, then the same 404 as a missing page."""

    record_event(
        events.ACCESS_DENIED(
            outcome=Outcome.DENIED,
            reason_code="review_item_outside_scope",
            view=view,
            review_item=str(item_id),
        ),
        actor=actor_of(request),
        where=point_of_care_of(request),
    )
    raise Http404()


def _render_item(
    request: HttpRequest,
    staff: policy.StaffFacts,
    item: ReviewItem,
    form: StatusForm | None = None,
    *,
    status: int = 200,
    error: str = "",
) -> HttpResponse:
    thresholds = risk.Thresholds.from_settings()
    row = log_search.event_for_review(staff, item.event_id, thresholds=thresholds)
    if row is None:  # the event is outside the scope too (cannot differ from the item's copy)
        _refuse_outside_scope(request, "review_item", item.item_id)
    event = row.event
    _record_event_view(request, event, item)
    conflict = services.review_decision(staff, event)
    if form is None:
        form = StatusForm(initial={"status": item.status, "version": item.version}, item=item)
    return render(
        request,
        ITEM_TEMPLATE,
        {
            "item": item,
            "event": event,
            "basis": basis_label(event.basis),
            "reason": basis_reason(event),
            "document": reviewed_document(event),
            "signals": _signal_views(item.signals, thresholds),
            "history": services.history(item),
            "form": form,
            "error": error,
            # Separation of duties: the item is shown, marked, without the form.
            **_sample_rate(),
            "conflict": _conflict(conflict),
            "conflict_message": "" if conflict else conflict.message,
        },
        status=status,
    )


def _record_event_view(request: HttpRequest, event: AccessEvent, item: ReviewItem) -> None:
    """The auditor read this event (through the item): committed before the page is sent."""

    record_event_committed(
        events.LOG_EVENT_VIEW(
            outcome=Outcome.GRANTED,
            patient=event.patient if event.patient_id is not None else None,
            patient_national_id=event.patient_national_id,
            event_id=str(event.event_id),
            review_item=str(item.item_id),
        ),
        actor=actor_of(request),
        where=point_of_care_of(request),
    )


@auditor_required
@replica_reads
def review_item(request: HttpRequest, staff: policy.StaffFacts, item_id: uuid.UUID) -> HttpResponse:
    if request.method != "GET":
        return _method_not_allowed("GET")
    item = services.item_for_review(staff, item_id)
    if item is None:
        _refuse_outside_scope(request, "review_item", item_id)
    return _render_item(request, staff, item)


RESULT_MESSAGES = {
    services.Result.DONE: _("The status is saved."),
    services.Result.DUPLICATE: _("This change was already saved. It was not saved twice."),
}


@auditor_required
def review_item_status(request: HttpRequest, staff: policy.StaffFacts, item_id: uuid.UUID) -> HttpResponse:
    if request.method != "POST":
        return _method_not_allowed("POST")
    item = services.item_for_review(staff, item_id)
    if item is None:
        _refuse_outside_scope(request, "review_item_status", item_id)
    posted = str(request.POST.get("status", ""))
    if not services.refuse_if_conflicted(caller=caller_of(request), staff=staff, item=item, status=posted):
        return _render_item(request, staff, item, status=403)
    form = StatusForm(request.POST, item=item)
    if not form.is_valid():
        return _render_item(request, staff, item, form, status=400)
    data = form.cleaned_data
    user = request.user
    if not isinstance(user, User):  # cannot happen past auditor_required
        raise Http404()
    result = services.change_status(
        caller=caller_of(request),
        staff=staff,
        user=user,
        item_id=item.item_id,
        version=data["version"],
        status=data["status"],
        comment=data["comment"],
    )
    if result is None:  # out of scope since it was read (the role was revoked meanwhile)
        _refuse_outside_scope(request, "review_item_status", item_id)
    if result == services.Result.REFUSED:  # cannot differ from the check above; kept for safety
        return _render_item(request, staff, item, status=403)
    if result == services.Result.STALE:
        return _changed_meanwhile(request, staff, item, data)
    # The item's page reads from the replica: only once the replica has this change.
    note_primary_write(request)
    (messages.success if result == services.Result.DONE else messages.info)(request, RESULT_MESSAGES[result])
    return redirect("forvaltning:review_item", item_id=item.item_id)


def _changed_meanwhile(
    request: HttpRequest, staff: policy.StaffFacts, item: ReviewItem, data: dict[str, Any]
) -> HttpResponse:
    """Someone else saved a change first: the item as it is now, with this change still in
    the form to submit again (nothing of it saved)."""

    item.refresh_from_db()
    fresh = StatusForm(
        initial={"status": data["status"], "comment": data["comment"], "version": item.version}, item=item
    )
    error = _(
        "Someone else changed this item after you opened it. Your change is not saved. "
        "Check the status and history below, and submit again if your change still applies."
    )
    return _render_item(request, staff, item, fresh, status=409, error=str(error))
