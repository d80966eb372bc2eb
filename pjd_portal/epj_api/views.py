"""The IHE MHD API (FHIR R4) for EPJ systems: ITI-67 and ITI-68 under `/api/fhir/`, with
the portal's own policy and audit (docs/epj.md, "2. The MHD API").

- ITI-67, `POST DocumentReference/_search` (form or JSON body) or `GET DocumentReference`
  (no patient parameter in a URL): the clinician list's own page (clinic/listing.py
  `list_page`, every remote source asked and waited for), so that the API and the list
  cannot disagree; its `document_list` events committed before the answer; what was not
  shown counted by reason class, and each source that failed, in an OperationOutcome
  entry (`search.mode` outcome).
- ITI-68, `GET Binary/<id>`: the portal's open (clinic/opening.py `admit`, the page's
  one path): not allowed and not found are one 404, both logged; the `document_open`
  event committed before the first byte; the bytes streamed as the store keeps them, or a
  Binary resource for `Accept: application/fhir+json`.
- `GET metadata` and `GET /api/openapi.json` need no token.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.urls import reverse
from django.utils import timezone

from pjd_portal.access import policy
from pjd_portal.auditlog import events
from pjd_portal.auditlog.events import Outcome
from pjd_portal.auditlog.services import record_event_committed
from pjd_portal.clinic import listing, opening
from pjd_portal.clinic.listing import ListRow
from pjd_portal.documents import rendering
from pjd_portal.epj_api import calls, fhir, openapi, search
from pjd_portal.epj_api.calls import Refusal, api_view, fhir_response

MAX_BODY_BYTES = 16 * 1024
JSON_TYPES = frozenset({"application/json", calls.FHIR_JSON})
ITI_67, ITI_68 = "ITI-67", "ITI-68"


def _base(request: HttpRequest) -> str:
    return request.build_absolute_uri(reverse("fhir:metadata")).rsplit("/", 1)[0]


def _not_allowed(allow: str, diagnostics: str) -> Refusal:
    return Refusal(405, "not-supported", diagnostics, {"Allow": allow})


# --- ITI-67 ---------------------------------------------------------------------------


def _body_parameters(request: HttpRequest) -> list[tuple[str, Any]]:
    if len(request.body) > MAX_BODY_BYTES:
        raise search.BadRequest("The request body is too large.", "too-long")
    if request.content_type in JSON_TYPES:
        try:
            data = json.loads(request.body or b"{}")
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            raise search.BadRequest("The body is not valid JSON.", "structure") from exc
        if not isinstance(data, dict):
            raise search.BadRequest("The JSON body must be an object.", "structure")
        return list(data.items())
    if request.content_type not in (
        "application/x-www-form-urlencoded",
        "multipart/form-data",
        "",
        "text/plain",
    ):
        raise search.BadRequest(
            "Send the search as a form (application/x-www-form-urlencoded) or JSON.", "not-supported"
        )
    try:
        return [(name, values) for name, values in request.POST.lists()]
    except Exception as exc:  # a body Django cannot read as a form is the caller's fault
        raise search.BadRequest("The body is not a form.", "structure") from exc


@api_view
def documentreference_search(request: HttpRequest) -> HttpResponseBase:
    """`POST DocumentReference/_search`: the search in the body (the patient may be named)."""

    if request.method != "POST":
        raise _not_allowed("POST", "Search with POST; GET DocumentReference takes the query.")
    call = calls.authenticate(request, ITI_67)
    if request.GET:
        raise calls.refuse(
            request,
            call,
            "bad_request_query",
            Refusal(400, "not-supported", "POST _search takes its parameters in the body, not the URL."),
        )
    return _search(request, call, lambda: _body_parameters(request), in_url=False)


@api_view
def documentreference(request: HttpRequest) -> HttpResponseBase:
    """`GET DocumentReference?...`: a search without a patient parameter (the attest's)."""

    if request.method != "GET":
        raise _not_allowed("GET", "Search with GET here, or POST DocumentReference/_search.")
    if any(
        name.split(":")[0] in search.PATIENT_PARAMETERS or name.startswith("patient") for name in request.GET
    ):
        # Refused before anything else, and nothing of the query is logged: it names a patient.
        raise Refusal(
            400,
            "not-supported",
            "A GET search takes no patient parameter: the national id never goes in a URL. "
            "The patient is the attest's; search with POST _search to name it.",
        )
    call = calls.authenticate(request, ITI_67)
    return _search(request, call, lambda: list(request.GET.lists()), in_url=True)


def _resource_id(row: ListRow, remote_ids: frozenset[int]) -> str:
    """A local document's UUID; a remote one's source and its id there (`3.abc`)."""

    return f"{row.source_id}.{row.document_id}" if row.source_id in remote_ids else row.document_id


def _search(request: HttpRequest, call: calls.Authenticated, read: Any, *, in_url: bool) -> HttpResponse:
    try:
        asked = search.read(read(), in_url=in_url)
    except search.BadRequest as exc:
        refusal = Refusal(400, exc.code, exc.diagnostics)
        raise calls.refuse(request, call, f"bad_request_{exc.code}", refusal) from exc
    attested = call.attest.patient_ids[0] if len(call.attest.patient_ids) == 1 else ""
    if asked.patient_identifier and asked.patient_identifier != attested:
        # Another patient than the attest's: the answer of an unknown patient, logged.
        raise calls.refuse(
            request, call, "patient_not_attested", Refusal(404, "not-found", calls.PATIENT_NOT_FOUND)
        )
    if not search.fits(asked, client_id=call.token.client_id, national_id=attested):
        refusal = Refusal(400, "value", "The cursor is not valid (or has expired): search again.")
        raise calls.refuse(request, call, "bad_request_cursor", refusal)
    visit = calls.visit(request, call)
    access = visit.access
    national_id = access.patient.national_id
    view_id = str(getattr(request, "request_id", "") or uuid.uuid4().hex)
    flagged = policy.flagged_for_review(access.attest.basis if access.attest else "")
    extra = {"nhn_event_id": call.nhn_event_id} if call.nhn_event_id else {}
    base = _base(request)
    self_url = f"{base}/DocumentReference"
    if asked.empty:
        record_event_committed(
            events.DOCUMENT_LIST(
                outcome=Outcome.GRANTED,
                patient=access.patient,
                attest=access.attest,
                flagged_for_review=flagged,
                shown=0,
                filters=asked.log_filters(),
                list_request_id=view_id,
                **extra,
            ),
            actor=visit.caller.actor,
            where=visit.caller.where,
        )
        bundle = fhir.search_bundle([], total=0, self_url=self_url, next_url=None, included=[], issues=[])
        return fhir_response(bundle)
    listed = listing.list_page(
        access,
        asked.list_params(),
        today=timezone.localdate(),
        wait=True,  # an API answer has no fragments to come: every source is asked now
        record=listing.answers_recorder(access, view_id, actor=visit.caller.actor, where=visit.caller.where),
    )
    rows: list[ListRow] = [
        r if isinstance(r, ListRow) else listing.list_row(r) for r in listed.page.object_list
    ]
    remote_ids = listed.remote_source_ids
    if asked.document_id:
        rows = [r for r in rows if _resource_id(r, remote_ids) == asked.document_id]
        total = len(rows)
    else:
        total = listed.page.paginator.count
        if listed.page.number != asked.page:
            rows = []  # past the last page (the list got shorter): nothing, not the last page again
    details = {
        **listed.event_details(),
        "filters": asked.log_filters(),
        "document_ids": [r.document_id for r in rows],
    }
    record_event_committed(
        events.DOCUMENT_LIST(
            outcome=Outcome.GRANTED,
            patient=access.patient,
            attest=access.attest,
            flagged_for_review=flagged,
            details=details,
            list_request_id=view_id,
            **extra,
        ),
        actor=visit.caller.actor,
        where=visit.caller.where,
    )
    matches = []
    for row in rows:
        resource_id = _resource_id(row, remote_ids)
        matches.append(
            fhir.document_reference(
                row,
                resource_id=resource_id,
                national_id=national_id,
                attachment_url=f"{base}/Binary/{resource_id}",
                include_patient=asked.include_patient,
            )
        )
    next_url = None
    if not asked.document_id and rows and listed.page.has_next():
        token = search.cursor(
            asked, page=asked.page + 1, client_id=call.token.client_id, national_id=national_id
        )
        next_url = f"{base}/DocumentReference?_cursor={token}"
    if asked.page > 1 or asked.binding:
        this = search.cursor(asked, page=asked.page, client_id=call.token.client_id, national_id=national_id)
        self_url = f"{base}/DocumentReference?_cursor={this}"
    names = {s.source_id: s.source_name for s in listed.sources}
    issues = fhir.list_issues(listed.not_shown_lines, listed.sources, listed.source_notices, names)
    bundle = fhir.search_bundle(
        matches,
        total=total,
        self_url=self_url,
        next_url=next_url,
        included=[fhir.patient(national_id)] if asked.include_patient and matches else [],
        issues=issues,
    )
    return fhir_response(bundle)


# --- ITI-68 ---------------------------------------------------------------------------


def _opening(visit: calls.Visit, binary_id: str) -> opening.Opening:
    """The local or remote document this id names, as the portal's open decides on it."""

    access = visit.access
    source, dot, remote_id = binary_id.partition(".")
    if dot and source.isascii() and source.isdigit() and remote_id:
        return opening.remote_opening(access, int(source), remote_id)
    try:
        document_id = uuid.UUID(binary_id)
    except ValueError:
        # Names nothing the portal keeps: refused as not found, logged all the same.
        naming = opening.Naming(details={"remote_document_id": binary_id[:100]})
        return opening.Opening(decision=policy.UNKNOWN_DOCUMENT, found=False, refused_as=naming)
    return opening.local_opening(access, document_id)


def _wants_resource(request: HttpRequest, content_type: str) -> bool:
    accepted = [part.split(";")[0].strip().lower() for part in request.headers.get("Accept", "").split(",")]
    return calls.FHIR_JSON in accepted and content_type not in accepted


NOT_FOUND_DOCUMENT = "No such document for this patient."


@api_view
def binary_read(request: HttpRequest, binary_id: str) -> HttpResponseBase:
    """ITI-68: the document's bytes, after the portal's open decision and its event."""

    if request.method not in ("GET", "HEAD"):
        raise _not_allowed("GET", "Retrieve a document with GET.")
    call = calls.authenticate(request, ITI_68)
    visit = calls.visit(request, call)
    found = _opening(visit, binary_id)
    try:
        opening.admit(visit.access, found, visit.who)
    except opening.Refused as exc:
        # Not allowed and not found look the same; the log (access_denied) tells them apart.
        raise Refusal(404, "not-found", NOT_FOUND_DOCUMENT) from exc
    try:
        content_type, size, chunks = opening.content(visit.access, found, visit.who)
    except opening.ContentUnavailable as exc:
        raise Refusal(
            503, "transient", "The document cannot be fetched from where it is kept. Try again later."
        ) from exc
    media_type = rendering.media_type(content_type) or "application/octet-stream"
    if _wants_resource(request, media_type):
        limit = rendering.size_limit_for(media_type)
        data = bytearray()
        for chunk in chunks:
            data += chunk
            if len(data) > limit:
                raise Refusal(
                    422,
                    "too-costly",
                    "The document is too large for a Binary resource: ask for its own type.",
                )
        return fhir_response(fhir.binary(binary_id, media_type, bytes(data)))
    response = StreamingHttpResponse(chunks, content_type=media_type)
    if size is not None:
        response["Content-Length"] = str(size)
    response["Cache-Control"] = "no-store"
    response["Content-Disposition"] = opening.content_disposition(found.filename, found.filename_utf8)
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "sandbox; default-src 'none'"
    return response


# --- without a token ------------------------------------------------------------------


@api_view
def metadata(request: HttpRequest) -> HttpResponseBase:
    if request.method not in ("GET", "HEAD"):
        raise _not_allowed("GET", "The CapabilityStatement is read with GET.")
    return fhir_response(fhir.capability_statement(_base(request)))


@api_view
def openapi_description(request: HttpRequest) -> HttpResponseBase:
    if request.method not in ("GET", "HEAD"):
        raise _not_allowed("GET", "The description is read with GET.")
    response = JsonResponse(openapi.description(request.build_absolute_uri("/").rstrip("/")))
    response["Cache-Control"] = "no-store"
    return response


@api_view
def unknown(request: HttpRequest, rest: str = "") -> HttpResponse:
    """Anything else under /api/fhir/: an OperationOutcome, not the portal's 404 page."""

    raise Refusal(404, "not-supported", "The MHD API has no such interaction (see metadata).")


__all__ = [
    "binary_read",
    "documentreference",
    "documentreference_search",
    "metadata",
    "openapi_description",
    "unknown",
]
