"""The IHE MHD API (FHIR R4) for EPJ systems: ITI-67 and ITI-68 under `/api/fhir/`, with
the portal's own policy and audit (docs/epj.md, "2. The MHD API").

- ITI-67, `POST DocumentReference/_search` (form or JSON body) or `GET DocumentReference`
  (no patient parameter in a URL): the clinician list's own page (clinic/listing.py
  `list_page`, every remote source asked and waited for), so that the API and the list
  cannot disagree; its `document_list` events committed before the answer; what was not
  shown counted by reason class, and each source that failed, in an OperationOutcome
  entry (`search.mode` outcome).
- ITI-68, `GET Binary/<id>`: the portal's open (clinic/opening.py `admit`, the page's
  one path): not allowed and not found are one 404, both logged; a source that did not
  answer a 503; the `document_open` event committed before the first byte; the bytes
  streamed as the store keeps them, or a Binary resource for `Accept:
  application/fhir+json`; bytes that are not sent after all (too large for a resource, a
  source breaking off) a second event.
- `GET metadata` and `GET /api/openapi.json` need no token.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.urls import reverse

from pjd_portal.access import policy
from pjd_portal.clinic import opening
from pjd_portal.documents import rendering
from pjd_portal.documents.sources.base import SourceError
from pjd_portal.epj_api import admission as calls
from pjd_portal.epj_api import answers, fhir, openapi, search
from pjd_portal.epj_api.admission import Refusal, api_view, fhir_response

MAX_BODY_BYTES = 16 * 1024
TOO_LARGE = "The request body is too large."
JSON_TYPES = frozenset({"application/json", calls.FHIR_JSON})
ITI_67, ITI_68 = "ITI-67", "ITI-68"


def _base(request: HttpRequest) -> str:
    return request.build_absolute_uri(reverse("fhir:metadata")).rsplit("/", 1)[0]


def _not_allowed(allow: str, diagnostics: str) -> Refusal:
    return Refusal(405, "not-supported", diagnostics, {"Allow": allow})


# --- ITI-67 ---------------------------------------------------------------------------


def _no_repeats(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # `json.loads` keeps the last of a repeated member: a parameter named twice would be
    # taken silently, one of its values dropped, where a form's repeat is refused (search.py).
    names = [name for name, _ in pairs]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise search.BadRequest(f"Members given more than once: {', '.join(repeated)}.", "structure")
    return dict(pairs)


def _content_length(request: HttpRequest) -> int:
    try:
        return int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError as exc:
        raise search.BadRequest("The Content-Length is not a number.", "structure") from exc


def _body_parameters(request: HttpRequest) -> list[tuple[str, Any]]:
    # The declared length first, so that no large body is read at all; Django's own limit
    # (RequestDataTooBig, DATA_UPLOAD_MAX_MEMORY_SIZE) for a body that did not declare it.
    if _content_length(request) > MAX_BODY_BYTES:
        raise search.BadRequest(TOO_LARGE, "too-long", status=413)
    try:
        body = request.body
    except RequestDataTooBig as exc:
        raise search.BadRequest(TOO_LARGE, "too-long", status=413) from exc
    if len(body) > MAX_BODY_BYTES:
        raise search.BadRequest(TOO_LARGE, "too-long", status=413)
    if request.content_type in JSON_TYPES:
        try:
            data = json.loads(body or b"{}", object_pairs_hook=_no_repeats)
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


def _search(request: HttpRequest, call: calls.Authenticated, read: Any, *, in_url: bool) -> HttpResponse:
    try:
        asked = search.read(read(), in_url=in_url)
    except search.BadRequest as exc:
        refusal = Refusal(exc.status, exc.code, exc.diagnostics)
        raise calls.refuse(request, call, f"bad_request_{exc.code}", refusal) from exc
    # The attest may spell the id another accepted way ("DDMMYY NNNNN"): compared and bound
    # as the register keeps it, as the answer's cursor is made (answers.py).
    attested = search.canonical_id(call.attest.patient_ids[0]) if len(call.attest.patient_ids) == 1 else ""
    if asked.patient_identifier and asked.patient_identifier != attested:
        # Another patient than the attest's: the answer of an unknown patient, logged.
        raise calls.refuse(
            request, call, "patient_not_attested", Refusal(404, "not-found", calls.PATIENT_NOT_FOUND)
        )
    if not search.fits(asked, client_id=call.token.client_id, national_id=attested):
        refusal = Refusal(400, "value", "The cursor is not valid (or has expired): search again.")
        raise calls.refuse(request, call, "bad_request_cursor", refusal)
    visit = calls.visit(request, call)
    view_id = str(getattr(request, "request_id", "") or uuid.uuid4().hex)
    return fhir_response(answers.search_answer(visit, asked, base=_base(request), view_id=view_id))


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
UNAVAILABLE = "The document cannot be fetched from where it is kept. Try again later."
TOO_LARGE_FOR_RESOURCE = "The document is too large for a Binary resource: ask for its own type."


def _unavailable() -> Refusal:
    return Refusal(503, "transient", UNAVAILABLE, {"Retry-After": "30"})


def _too_large() -> Refusal:
    return Refusal(422, "too-costly", TOO_LARGE_FOR_RESOURCE)


@api_view
def binary_read(request: HttpRequest, binary_id: str) -> HttpResponseBase:
    """ITI-68: the document's bytes, after the portal's open decision and its event."""

    if request.method != "GET":
        # Not HEAD either: it would be an open in the log (admit) with no byte sent.
        raise _not_allowed("GET", "Retrieve a document with GET.")
    call = calls.authenticate(request, ITI_68)
    visit = calls.visit(request, call)
    found = _opening(visit, binary_id)
    as_resource = _wants_resource(request, rendering.media_type(found.content_type))
    limit = rendering.size_limit_for(found.content_type)
    if as_resource and found.decision and found.size is not None and found.size > limit:
        # Allowed, but it cannot be answered as asked: refused before the open (no source
        # is asked for its bytes, the log does not say it was opened), and the refusal is
        # in the log all the same: the caller asked for this patient's document.
        opening.not_sent(visit.access, found, visit.who, "content_too_large")
        raise _too_large()
    try:
        opening.admit(visit.access, found, visit.who)
    except opening.Refused as exc:
        if found.source_unavailable:
            # The source did not answer (logged with its source_ reason): a fault to retry,
            # not an answer that there is no such document.
            raise _unavailable() from exc
        # Not allowed and not found look the same; the log (access_denied) tells them apart.
        raise Refusal(404, "not-found", NOT_FOUND_DOCUMENT) from exc
    try:
        content_type, size, chunks = opening.content(visit.access, found, visit.who)
    except opening.ContentUnavailable as exc:
        raise _unavailable() from exc
    media_type = rendering.media_type(content_type) or "application/octet-stream"
    if _wants_resource(request, media_type):
        return fhir_response(
            fhir.binary(binary_id, media_type, _resource_bytes(visit, found, media_type, size, chunks))
        )
    return _streamed(visit, found, media_type, size, chunks)


def _streamed(
    visit: calls.Visit, found: opening.Opening, media_type: str, size: int | None, chunks: Iterator[bytes]
) -> StreamingHttpResponse:
    """The bytes in their own type, as they come (`opening.streamed` logs a break-off)."""

    response = StreamingHttpResponse(
        opening.streamed(visit.access, found, visit.who, chunks), content_type=media_type
    )
    if size is not None:
        response["Content-Length"] = str(size)
    response["Cache-Control"] = "no-store"
    response["Content-Disposition"] = opening.content_disposition(found.filename, found.filename_utf8)
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "sandbox; default-src 'none'"
    return response


def _resource_bytes(
    visit: calls.Visit, found: opening.Opening, media_type: str, size: int | None, chunks: Iterator[bytes]
) -> bytes:
    """The whole document, for a Binary resource. It is opened already (`admit`), so what
    is not sent after all is a second event: `invalid` when too large, `not_found` when
    the source broke off (and a 503)."""

    limit = rendering.size_limit_for(media_type)
    if size is not None and size > limit:
        opening.not_sent(visit.access, found, visit.who, "content_too_large")
        raise _too_large()
    data = bytearray()
    try:
        for chunk in chunks:
            data += chunk
            if len(data) > limit:
                opening.not_sent(visit.access, found, visit.who, "content_too_large")
                raise _too_large()
    except (opening.ContentUnavailable, SourceError) as exc:
        opening.broke_off(visit.access, found, visit.who, exc)
        raise _unavailable() from exc
    return bytes(data)


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
