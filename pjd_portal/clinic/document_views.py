"""Clinician path, steps 3 to 5: the patient banner, the document list, opening a document."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator
from uuid import UUID

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core import signing
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_GET
from django_htmx.http import HttpResponseClientRedirect, HttpResponseClientRefresh

from pjd_portal.access import policy
from pjd_portal.access import selectors as access_selectors
from pjd_portal.access.services import PatientAccess, access_patient_by_handle
from pjd_portal.accounts.audit_context import actor_of, point_of_care_of
from pjd_portal.auditlog import events
from pjd_portal.auditlog.events import Detail, Outcome
from pjd_portal.auditlog.services import AuditWriteFailed, record_event, record_event_committed
from pjd_portal.clinic import listing, remote, selectors
from pjd_portal.clinic.decorators import clinician_required
from pjd_portal.documents import rendering
from pjd_portal.documents.facts import DocumentFacts
from pjd_portal.documents.models import DocumentCategory, DocumentContent, DocumentReference
from pjd_portal.documents.sources import client_for, merge
from pjd_portal.lib.errors import service_unavailable
from pjd_portal.logreading import logged_documents

logger = logging.getLogger(__name__)

SORT_COLUMNS = [
    ("date", _("Date")),
    ("category", _("Category")),
    ("type", _("Type")),
    ("title", _("Title")),
    ("institution", _("Institution")),
    ("author", _("Author")),
]


def _banner(access: PatientAccess) -> dict[str, object] | None:
    if not policy.may_see_patient_identity(access.clinician, access.patient_facts):
        return None
    patient = access.patient
    return {
        "name": patient.name,
        "age": patient.age_on(timezone.localdate()),
        "birth_date": patient.birth_date,
        "gender": patient.get_gender_display(),
        "protected_address": patient.has_protected_address,
        "address": patient.address
        if policy.may_see_patient_address(access.clinician, access.patient_facts)
        else "",
    }


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
    """What to do with the answers of the sources a request asks: one list event each,
    committed, and only then is the answer kept for the list (an answer whose contact is
    not in the log is never shown)."""

    def record(answers: list[remote.SourceAnswer]) -> None:
        today = timezone.localdate()
        try:
            for answer in answers:
                record_event_committed(
                    events.DOCUMENT_LIST(
                        outcome=Outcome.GRANTED if answer.result is not None else Outcome.NOT_FOUND,
                        reason_code=f"source_{answer.failure}"[:50] if answer.failure else "",
                        patient=access.patient,
                        attest=access.attest,
                        source_orgnr=answer.source_orgnr,
                        flagged_for_review=_flagged(access),
                        details=remote.listing_of(answer, today, access.patient.pk).event_details(),
                        list_request_id=view_id,
                        nhn_event_id=answer.nhn_event_id,
                    ),
                    actor=actor_of(request),
                    where=point_of_care_of(request),
                )
        except AuditWriteFailed:
            for answer in answers:
                remote.release(access, answer.source_id)
            raise
        for answer in answers:
            remote.keep(access, answer)

    return record


@login_required
@clinician_required
@require_GET
def document_list(request: HttpRequest, handle: UUID) -> HttpResponse:
    access = access_patient_by_handle(request=request, handle=handle)
    decision = policy.may_see_patient_documents(
        access.clinician, access.patient_facts, access.attest_facts, access.now
    )
    if decision.reason_code == "no_valid_attest":
        if request.htmx:  # type: ignore[attr-defined]
            return HttpResponseClientRedirect(reverse("patients:basis", args=[handle]))
        return redirect("patients:basis", handle=handle)
    context: dict[str, object] = {
        "handle": handle,
        "banner": _banner(access),
        "attest": access.attest,
        "decision": decision,
        "offer_elevated": policy.offers_elevated_access(decision),
    }
    if not decision:
        record_event(
            events.ACCESS_DENIED(
                outcome=Outcome.DENIED,
                reason_code=decision.reason_code,
                patient=access.patient,
                attest=access.attest,
            ),
            actor=actor_of(request),
            where=point_of_care_of(request),
        )
        # A refresh of the list: the whole page says why, not a list inside the list.
        if request.htmx:  # type: ignore[attr-defined]
            return HttpResponseClientRefresh()
        return render(request, "documents/list_page.html", context)

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
    record_event(
        events.DOCUMENT_LIST(
            outcome=Outcome.GRANTED,
            patient=access.patient,
            attest=access.attest,
            flagged_for_review=_flagged(access),
            details=listed.event_details(),
            list_request_id=view_id,
        ),
        actor=actor_of(request),
        where=point_of_care_of(request),
    )
    query = request.GET.copy()
    query.pop("v", None)
    query.pop("wait", None)
    context.update(
        {
            "listing": listed,
            "page": listed.page,
            "params": params,
            "view_token": _list_view_token(view_id, handle),
            "list_query": query.urlencode(),
            "categories": DocumentCategory.choices,
            "page_sizes": settings.DOCUMENT_PAGE_SIZES,
            "sort_columns": SORT_COLUMNS,
        }
    )
    template = "documents/_list.html" if request.htmx else "documents/list_page.html"  # type: ignore[attr-defined]
    return render(request, template, context)


@login_required
@clinician_required
@require_GET
def document_list_source(request: HttpRequest, handle: UUID, source_id: int) -> HttpResponse:
    """One remote source's part of the list, asked on its own request so that the list
    never waits on the slowest source. It answers no content: the list refreshes itself on
    `source-arrived` and merges the answer kept for it. One list event per source asked,
    with the page's request id (`list_request_id`); an answer already kept (or being got
    by another request, waited for) asks nobody and logs nothing new."""

    access = access_patient_by_handle(request=request, handle=handle)
    if not request.htmx:  # type: ignore[attr-defined]
        return redirect("documents:list", handle=handle)  # a fragment is no page of its own
    status = policy.may_see_patient_documents(
        access.clinician, access.patient_facts, access.attest_facts, access.now
    )
    if not status:
        # The patient-level rules now refuse (the attest lapsed, a block came in): the
        # list itself says why, so the page is loaded again rather than left "Henter…".
        record_event_committed(
            events.ACCESS_DENIED(
                outcome=Outcome.DENIED,
                reason_code=status.reason_code,
                patient=access.patient,
                attest=access.attest,
                source_id=source_id,
            ),
            actor=actor_of(request),
            where=point_of_care_of(request),
        )
        return HttpResponseClientRefresh()
    source = remote.remote_sources().get(source_id)
    listable = policy.listable_source_ids(access.clinician, access_selectors.source_rules())
    if source is None or source_id not in listable:
        # Not allowed and not found look the same; the log tells them apart.
        record_event_committed(
            events.ACCESS_DENIED(
                outcome=Outcome.NOT_FOUND if source is None else Outcome.DENIED,
                reason_code="unknown_source" if source is None else "source_rule_list",
                patient=access.patient,
                attest=access.attest,
                source_id=source_id,
            ),
            actor=actor_of(request),
            where=point_of_care_of(request),
        )
        raise Http404()
    remote.answers_for_list(
        access, [source], record=_answers_recorder(request, access, _list_view_id(request, handle))
    )
    response = HttpResponse("")
    response["HX-Trigger"] = "source-arrived"
    return response


@login_required
@clinician_required
@require_GET
def document_open(request: HttpRequest, handle: UUID, document_id: UUID) -> HttpResponseBase:
    access = access_patient_by_handle(request=request, handle=handle)
    document = (
        DocumentReference.objects.select_related("source__organisation")
        .filter(document_id=document_id)
        .first()
    )
    if document is None:
        decision = policy.UNKNOWN_DOCUMENT
    else:
        decision = policy.may_open_document(
            access.clinician,
            access.patient_facts,
            access.attest_facts,
            DocumentFacts(
                category=document.category,
                service_date=document.service_date,
                confidentiality_code=document.confidentiality_code,
                patient_id=document.patient_id,
                source_id=document.source_id,
                content_type=document.content_type,
            ),
            source=next(
                (s for s in access_selectors.source_rules() if s.source_id == document.source_id), None
            ),
            now=access.now,
        )
    if not decision:
        # Not allowed and not found look the same to the user; the log tells them apart.
        record_event_committed(
            events.ACCESS_DENIED(
                outcome=Outcome.DENIED if document is not None else Outcome.NOT_FOUND,
                reason_code=decision.reason_code,
                patient=access.patient,
                document=document
                if document is not None and document.patient_id == access.patient.pk
                else None,
                attest=access.attest,
                document_id=str(document_id),
            ),
            actor=actor_of(request),
            where=point_of_care_of(request),
        )
        raise Http404()
    assert document is not None

    # The event is committed before a single byte of the document is read or returned.
    try:
        record_event_committed(
            events.DOCUMENT_OPEN(
                outcome=Outcome.GRANTED,
                patient=access.patient,
                document=document,
                attest=access.attest,
                flagged_for_review=_flagged(access),
            ),
            actor=actor_of(request),
            where=point_of_care_of(request),
        )
    except AuditWriteFailed:
        return service_unavailable(request, reason="audit")

    try:
        data = DocumentContent.objects.values_list("data", flat=True).get(document=document)
    except DocumentContent.DoesNotExist:
        # The reference exists but its content cannot be had: say so, and make the log
        # say it too, so it does not claim the document was shown.
        record_event(
            events.DOCUMENT_OPEN(
                outcome=Outcome.NOT_FOUND,
                reason_code="content_unavailable",
                patient=access.patient,
                document=document,
                attest=access.attest,
            ),
            actor=actor_of(request),
            where=point_of_care_of(request),
        )
        return service_unavailable(request, reason="source")
    # The local store has the bytes in memory already; a remote source streams them.
    rendered: rendering.Rendered
    try:
        rendered = rendering.prepare(document.content_type, local_chunks(data), declared_size=len(data))
    except Exception:  # a document must never turn into a 500
        logger.exception("document %s could not be rendered", document.document_id)
        rendered = rendering.UnsupportedDocument("malformed", "rendering failed")
    if isinstance(rendered, rendering.PdfStream):
        return pdf_response(rendered)
    if isinstance(rendered, rendering.UnsupportedDocument):
        logger.warning(
            "document %s not shown: %s (%s)", document.document_id, rendered.reason, rendered.detail
        )
        record_event(
            events.DOCUMENT_OPEN(
                outcome=Outcome.INVALID,
                reason_code=f"content_{rendered.reason}",
                patient=access.patient,
                document=document,
                attest=access.attest,
            ),
            actor=actor_of(request),
            where=point_of_care_of(request),
        )
        return render(
            request,
            "documents/xml_document.html",
            {"document": document, "view": None, "unsupported": rendered, "handle": handle},
        )
    return render(
        request,
        "documents/xml_document.html",
        {"document": document, "view": rendered, "handle": handle},
    )


@login_required
@clinician_required
@require_GET
def remote_document_open(
    request: HttpRequest, handle: UUID, source_id: int, document_id: str
) -> HttpResponseBase:
    """Open a document kept at a remote (MHD) source: the source's current description is
    fetched and the policy decides on it; the event is committed; then the bytes stream."""

    access = access_patient_by_handle(request=request, handle=handle)
    # The patient-level rules first: a source is never asked (and never told of an access)
    # for a clinician without a valid attest, a blocked clinician or a reserved patient.
    status = policy.may_see_patient_documents(
        access.clinician, access.patient_facts, access.attest_facts, access.now
    )
    source = remote.remote_sources().get(source_id) if status else None
    document = None
    decision = status if not status else policy.UNKNOWN_DOCUMENT
    if source is not None:
        client = client_for(source)
        # The source's current description, asked under the same time budget as the list.
        found = merge.search_sources(
            [client],
            access.patient.national_id,
            access=remote.access_context(access),
            document_id=document_id,
        )
        if found.failures:
            decision = policy.source_did_not_answer(found.failures[0].reason_code)
        document = next((d for d in found.documents if d.document_id == document_id), None)
        if document is not None:
            decision = policy.may_open_document(
                access.clinician,
                access.patient_facts,
                access.attest_facts,
                document.facts(access.patient.pk),
                source=next((s for s in access_selectors.source_rules() if s.source_id == source_id), None),
                now=access.now,
            )
    orgnr = source.organisation.orgnr if source is not None else ""
    details: dict[str, Detail] = {"source_id": source_id, "remote_document_id": document_id[:100]}
    if not decision or document is None or source is None:
        record_event_committed(
            events.ACCESS_DENIED(
                outcome=Outcome.DENIED if document is not None else Outcome.NOT_FOUND,
                reason_code=decision.reason_code,
                patient=access.patient,
                attest=access.attest,
                source_orgnr=orgnr,
                details=details,
            ),
            actor=actor_of(request),
            where=point_of_care_of(request),
        )
        raise Http404()
    event_id = str(uuid.uuid4())
    try:
        record_event_committed(
            events.DOCUMENT_OPEN(
                outcome=Outcome.GRANTED,
                patient=access.patient,
                attest=access.attest,
                source_orgnr=orgnr,
                flagged_for_review=_flagged(access),
                details={**details, **logged_documents.remote_details(document)},
                nhn_event_id=event_id,
            ),
            actor=actor_of(request),
            where=point_of_care_of(request),
        )
    except AuditWriteFailed:
        return service_unavailable(request, reason="audit")
    try:
        content_type, size, chunks = client.retrieve(document, access=remote.access_context(access, event_id))
        rendered = rendering.prepare(content_type, chunks, declared_size=size)
    except Exception as exc:  # noqa: BLE001 - a source failure is a page, never a 500
        reason = getattr(exc, "reason_code", "rendering_failed")
        logger.warning("remote document %s from source %s not shown: %s", document_id, source_id, reason)
        record_event(
            events.DOCUMENT_OPEN(
                outcome=Outcome.NOT_FOUND,
                reason_code=f"source_{reason}"[:50],
                patient=access.patient,
                attest=access.attest,
                source_orgnr=orgnr,
                details=details,
            ),
            actor=actor_of(request),
            where=point_of_care_of(request),
        )
        return service_unavailable(request, reason="source")
    if isinstance(rendered, rendering.PdfStream):
        return pdf_response(rendered)
    page_document = {
        "title": document.title,
        "institution_name": document.institution_name,
        "service_date": document.service_date,
        "author": document.author,
    }
    if isinstance(rendered, rendering.UnsupportedDocument):
        record_event(
            events.DOCUMENT_OPEN(
                outcome=Outcome.INVALID,
                reason_code=f"content_{rendered.reason}",
                patient=access.patient,
                attest=access.attest,
                source_orgnr=orgnr,
                details=details,
            ),
            actor=actor_of(request),
            where=point_of_care_of(request),
        )
        return render(
            request,
            "documents/xml_document.html",
            {"document": page_document, "view": None, "unsupported": rendered, "handle": handle},
        )
    return render(
        request,
        "documents/xml_document.html",
        {"document": page_document, "view": rendered, "handle": handle},
    )


def local_chunks(data: bytes | memoryview) -> Iterator[bytes]:
    """The local store's bytes in slices, as `rendering.prepare` takes any source's."""

    return rendering.chunked(data)


def pdf_response(pdf: rendering.PdfStream) -> StreamingHttpResponse:
    """A PDF streamed inline, never joined: the same headers for every source."""

    response = StreamingHttpResponse(pdf.chunks, content_type=pdf.content_type)
    if pdf.size is not None:
        response["Content-Length"] = str(pdf.size)
    response["Content-Disposition"] = 'inline; filename="dokument.pdf"'
    # A PDF from another organisation is untrusted content: no script, no same-origin
    # access to the portal, never framed. Chromium's viewer still shows it.
    response["Content-Security-Policy"] = "sandbox; default-src 'none'; frame-ancestors 'none'"
    response["X-Content-Type-Options"] = "nosniff"
    return response
