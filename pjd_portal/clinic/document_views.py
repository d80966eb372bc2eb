"""Clinician path, steps 3 to 5: the patient banner, the document list, opening a document."""

from __future__ import annotations

import logging
from collections.abc import Callable
from urllib.parse import urlencode
from uuid import UUID

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core import signing
from django.http import Http404, HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_GET
from django_htmx.http import HttpResponseClientRedirect, HttpResponseClientRefresh

from pjd_portal.access import policy
from pjd_portal.access.services import PatientAccess, access_patient_by_handle
from pjd_portal.accounts.audit_context import actor_of, point_of_care_of
from pjd_portal.accounts.caller import caller_of
from pjd_portal.auditlog import events
from pjd_portal.auditlog.events import Detail, Outcome
from pjd_portal.auditlog.services import record_event, record_event_committed
from pjd_portal.clinic import listing, opening, remote, selectors
from pjd_portal.clinic.banner import banner_of
from pjd_portal.clinic.decorators import clinician_required
from pjd_portal.documents.models import DocumentCategory

logger = logging.getLogger(__name__)

SORT_COLUMNS = [
    ("date", _("Date")),
    ("category", _("Category")),
    ("type", _("Type")),
    ("title", _("Title")),
    ("institution", _("Institution")),
    ("department", _("Department")),
    ("author", _("Author")),
]
# The list's own parameters, kept by the viewer's "back to the list".
LIST_PARAMETERS = ("sort", "category", "page", "size", "title", "from", "to")


def _list_view_id(request: HttpRequest, handle: UUID) -> str:
    """The page view a list request belongs to: the request id of the page that asked for
    this fragment or refresh (signed, so it cannot be made up), else this request's own."""

    token = request.GET.get("v", "")
    if token:
        try:
            return signing.Signer(salt=f"pjd.list-view.{handle}").unsign(token)
        except signing.BadSignature:
            pass
    return str(getattr(request, "request_id", ""))


def _list_view_token(view_id: str, handle: UUID) -> str:
    return signing.Signer(salt=f"pjd.list-view.{handle}").sign(view_id)


def _flagged(access: PatientAccess) -> bool:
    return policy.flagged_for_review(access.attest.basis if access.attest else "")


def _answers_recorder(
    request: HttpRequest, access: PatientAccess, view_id: str
) -> Callable[[list[remote.SourceAnswer]], None]:
    return listing.answers_recorder(access, view_id, actor=actor_of(request), where=point_of_care_of(request))


@login_required
@clinician_required
@require_GET
def document_list(request: HttpRequest, handle: UUID) -> HttpResponse:
    access = access_patient_by_handle(caller=caller_of(request), handle=handle)
    decision = policy.may_see_patient_documents(
        access.clinician, access.patient_facts, access.attest_facts, access.now
    )
    if policy.asks_for_basis(decision):
        if request.htmx:  # type: ignore[attr-defined]
            return HttpResponseClientRedirect(reverse("patients:basis", args=[handle]))
        return redirect("patients:basis", handle=handle)
    context: dict[str, object] = {
        "handle": handle,
        "banner": banner_of(access),
        "attest": access.attest,
        "decision": decision,
        "offer_elevated": policy.offers_elevated_access(decision),
    }
    if not decision:
        _record(request, _denied(access, decision.reason_code))
        # A refresh of the list: the whole page says why, not a list inside the list.
        if request.htmx:  # type: ignore[attr-defined]
            return HttpResponseClientRefresh()
        return render(request, "documents/list_page.html", context)
    context.update(_listed(request, access, handle))
    template = "documents/_list.html" if request.htmx else "documents/list_page.html"  # type: ignore[attr-defined]
    return render(request, template, context)


def _listed(request: HttpRequest, access: PatientAccess, handle: UUID) -> dict[str, object]:
    """The list as this request asks for it, its `document_list` event written before the
    page is sent, and what the page needs of it."""

    params = selectors.parse_list_params(
        request.GET.dict(),
        page_sizes=settings.DOCUMENT_PAGE_SIZES,
        default_size=settings.DOCUMENT_DEFAULT_PAGE_SIZE,
    )
    view_id = _list_view_id(request, handle)
    listed = listing.list_page(
        access,
        params,
        today=timezone.localdate(),
        # A browser without JavaScript, sent here by the page's <noscript> refresh.
        wait=request.GET.get("wait") == "1",
        record=_answers_recorder(request, access, view_id),
    )
    _record(
        request,
        events.DOCUMENT_LIST(
            outcome=Outcome.GRANTED,
            patient=access.patient,
            attest=access.attest,
            flagged_for_review=_flagged(access),
            details=listed.event_details(),
            list_request_id=view_id,
        ),
    )
    return {
        "listing": listed,
        "page": listed.page,
        "params": params,
        "view_token": _list_view_token(view_id, handle),
        "list_query": _list_query(request),
        "filter_query": params.filter_query(),
        "categories": DocumentCategory.choices,
        "page_sizes": settings.DOCUMENT_PAGE_SIZES,
        "sort_columns": SORT_COLUMNS,
    }


def _list_query(request: HttpRequest) -> str:
    """The list's own parameters (sort, filter, page), for links that keep them; not the
    one-page-view token or the no-JavaScript wait."""

    query = request.GET.copy()
    query.pop("v", None)
    query.pop("wait", None)
    return query.urlencode()


@login_required
@clinician_required
@require_GET
def document_list_source(request: HttpRequest, handle: UUID, source_id: int) -> HttpResponse:
    """One remote source's part of the list, asked on its own request so that the list
    never waits on the slowest source. It answers no content: the list refreshes itself on
    `source-arrived` and merges the answer kept for it. One list event per source asked,
    with the page's request id (`list_request_id`); an answer already kept (or being got
    by another request, waited for) asks nobody and logs nothing new."""

    access = access_patient_by_handle(caller=caller_of(request), handle=handle)
    if not request.htmx:  # type: ignore[attr-defined]
        return redirect("documents:list", handle=handle)  # a fragment is no page of its own
    status = policy.may_see_patient_documents(
        access.clinician, access.patient_facts, access.attest_facts, access.now
    )
    if not status:
        # The patient-level rules now refuse (the attest lapsed, a block came in): the
        # list itself says why, so the page is loaded again rather than left "Henter…".
        _record(request, _denied(access, status.reason_code, source_id=source_id), committed=True)
        return HttpResponseClientRefresh()
    source = remote.remote_sources().get(source_id)
    decision = policy.may_list_source(
        access.clinician,
        next((s for s in access.source_rules if s.source_id == source_id), None),
        known=source is not None,
    )
    if not decision or source is None:
        # Not allowed and not found look the same; the log tells them apart.
        event = _denied(access, decision.reason_code, source_id=source_id, found=source is not None)
        _record(request, event, committed=True)
        raise Http404()
    remote.answers_for_list(
        access, [source], record=_answers_recorder(request, access, _list_view_id(request, handle))
    )
    response = HttpResponse("")
    response["HX-Trigger"] = "source-arrived"
    return response


def _denied(
    access: PatientAccess, reason_code: str, *, found: bool = True, **details: Detail
) -> events.Event:
    return events.ACCESS_DENIED(
        outcome=Outcome.DENIED if found else Outcome.NOT_FOUND,
        reason_code=reason_code,
        patient=access.patient,
        attest=access.attest,
        details=details,
    )


def _record(request: HttpRequest, event: events.Event, *, committed: bool = False) -> None:
    # Committed: the answer (a refusal, a 404) leaves before the next line of this request.
    record = record_event_committed if committed else record_event
    record(event, actor=actor_of(request), where=point_of_care_of(request))


@login_required
@clinician_required
@require_GET
def document_open(request: HttpRequest, handle: UUID, document_id: UUID) -> HttpResponseBase:
    """Open a document in the portal's own store (the one path: `opening.open_document`)."""

    access = access_patient_by_handle(caller=caller_of(request), handle=handle)
    return opening.open_document(request, access, opening.local_opening(access, document_id))


@login_required
@clinician_required
@require_GET
def remote_document_open(
    request: HttpRequest, handle: UUID, source_id: int, document_id: str
) -> HttpResponseBase:
    """Open a document kept at a remote (MHD) source, by the same path as a local one."""

    access = access_patient_by_handle(caller=caller_of(request), handle=handle)
    return opening.open_document(request, access, opening.remote_opening(access, source_id, document_id))


def _back_to_list(request: HttpRequest, handle: UUID) -> str:
    """The list as the clinician left it: its sort, filter and page (only the list's own
    parameters are taken from the viewer's query)."""

    kept = {name: request.GET[name] for name in LIST_PARAMETERS if request.GET.get(name)}
    url = reverse("documents:list", args=[handle])
    return f"{url}?{urlencode(kept)}" if kept else url


def _viewer_page(request: HttpRequest, access: PatientAccess, open_url: str) -> opening.Page:
    """The viewer as a pane (htmx: into the list page) or as a page of its own."""

    handle = access.lookup.handle
    pane = bool(request.htmx)  # type: ignore[attr-defined]
    return opening.Page(
        template="documents/_viewer.html" if pane else "documents/viewer_page.html",
        context={
            "handle": handle,
            "open_url": open_url,
            "back_url": _back_to_list(request, handle),
            "banner": None if pane else banner_of(access),
            "attest": access.attest,
        },
    )


@login_required
@clinician_required
@require_GET
def document_view(request: HttpRequest, handle: UUID, document_id: UUID) -> HttpResponseBase:
    """A document of the portal's own store in the viewer, beside the list (the same
    decision as an open; the framed PDF's request is the open)."""

    access = access_patient_by_handle(caller=caller_of(request), handle=handle)
    page = _viewer_page(request, access, reverse("documents:open", args=[handle, document_id]))
    return opening.view_document(request, access, opening.local_opening(access, document_id), page)


@login_required
@clinician_required
@require_GET
def remote_document_view(
    request: HttpRequest, handle: UUID, source_id: int, document_id: str
) -> HttpResponseBase:
    """A document at a remote (MHD) source in the viewer, by the same path as a local one."""

    access = access_patient_by_handle(caller=caller_of(request), handle=handle)
    open_url = reverse("documents:open_remote", args=[handle, source_id, document_id])
    page = _viewer_page(request, access, open_url)
    return opening.view_document(
        request, access, opening.remote_opening(access, source_id, document_id), page
    )
