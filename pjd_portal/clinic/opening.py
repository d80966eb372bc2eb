"""Opening a document, from the local store or a remote source: one path for both, and
for both callers: the portal's page and the MHD API (epj_api; `admit`, then `content`).

A store only says what there is to open (`local_opening`, `remote_opening`): the policy's
decision on it, what its events name, how its bytes are got and what the page shows of it.
`open_document` does the rest the same way for every store:

1. a refusal (or nothing to open) is an `access_denied` event, committed, and a 404: not
   allowed and not found look the same to the user, the log tells them apart;
2. the `document_open` event is committed before a single byte is returned or asked of a
   remote source (`read_bytes`); an event that cannot be written is the 503 page, and
   nothing is sent (the local store's first megabyte comes with the reference's own
   query, documents/store.py: read, never returned, until the event is committed);
3. the bytes are rendered (`rendering.prepare`); content that cannot be had is a second
   `document_open` event, `not_found`, and the 503 page of a failing source; content
   that cannot be shown (or whose rendering crashed) is a second event, `invalid`, and
   the page that says why; so the log never claims a document was shown when it was not;
4. a streamed answer that does not reach its end (the client gone, the connection broken,
   the answer replaced before it started) is a second event, `interrupted`, with the bytes
   that left (`Delivery`); whatever else the request writes (the session) is written
   before the granted event, so that after it only the bytes can fail.
"""

from __future__ import annotations

import datetime
import logging
import re
import unicodedata
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import quote
from uuid import UUID

from django.http import Http404, HttpRequest, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import render

from pjd_portal.access import policy
from pjd_portal.access.services import PatientAccess
from pjd_portal.accounts.audit_context import actor_of, point_of_care_of
from pjd_portal.accounts.session_store import save_now
from pjd_portal.auditlog import events
from pjd_portal.auditlog.actor import Actor, PointOfCare
from pjd_portal.auditlog.events import Detail, Outcome
from pjd_portal.auditlog.services import AuditWriteFailed, record_event, record_event_committed
from pjd_portal.clinic import remote
from pjd_portal.documents import rendering, store
from pjd_portal.documents.facts import DocumentFacts
from pjd_portal.documents.models import DocumentCategory, DocumentReference
from pjd_portal.documents.sources import client_for, merge
from pjd_portal.documents.sources.base import (
    AccessContext,
    DocumentSourceClient,
    RemoteDocument,
    Retrieved,
    SourceError,
)
from pjd_portal.lib.errors import service_unavailable
from pjd_portal.logreading import logged_documents

logger = logging.getLogger(__name__)


class ContentUnavailable(Exception):
    """The document's bytes cannot be had; `reason_code` is what the second event says."""

    def __init__(self, reason_code: str) -> None:
        super().__init__(reason_code)
        self.reason_code = reason_code[:50]


@dataclass(frozen=True)
class Naming:
    """What an event says of the document: its local row, or its source and its id there."""

    document: DocumentReference | None = None
    source_orgnr: str = ""
    details: Mapping[str, Detail] = field(default_factory=dict)


def _no_bytes() -> Retrieved:
    # Only a refusal is built without bytes, and a refusal never reads any.
    raise ContentUnavailable("unknown_document")


@dataclass(frozen=True)
class Opening:
    """One document to open, whichever store keeps it."""

    decision: policy.Decision
    found: bool  # there was a document to decide on (a refusal is `denied`, else `not_found`)
    refused_as: Naming  # what the access_denied event names
    opened_as: Naming = Naming()  # what every document_open event names
    # Only the granted event: the source's description at the open, the id it was given.
    granted_details: Mapping[str, Detail] = field(default_factory=dict)
    fetch: Callable[[], Retrieved] = _no_bytes  # raises ContentUnavailable
    shown_as: object = None  # the page's `document` (title, institution, date, author)
    label: str = ""  # for log lines
    content_type: str = ""  # as the store describes it ("" when a remote source did not say)
    filename: str = "dokument.pdf"  # the PDF's name when saved (`download_filename`)
    filename_utf8: str = ""  # the same with æøå kept (RFC 6266 filename*)
    size: int | None = None  # as the store describes it (None when a remote source did not say)
    # Refused because the remote source did not answer, not because of what it holds: the
    # page answers it as any refusal (404), the MHD API as a transient fault (503).
    source_unavailable: bool = False


@dataclass(frozen=True)
class Page:
    """Where an open's rendered (XML) document is shown: the document page, or the viewer."""

    template: str = "documents/xml_document.html"
    context: Mapping[str, Any] = field(default_factory=dict)


DOCUMENT_PAGE = Page()


def read_bytes(opening: Opening) -> Retrieved:
    """The one place a document's bytes are asked for (after the event is committed)."""

    return opening.fetch()


@dataclass(frozen=True)
class Who:
    """Whom an open's events name: the logged-in clinician (`who_of`), or the practitioner
    of an EPJ's attest (the MHD API); `details` go on the granted event (the EPJ's
    nhn-event-id) where the store's own do not say otherwise."""

    actor: Actor
    where: PointOfCare | None
    details: Mapping[str, Detail] = field(default_factory=dict)


def who_of(request: HttpRequest) -> Who:
    return Who(actor_of(request), point_of_care_of(request))


class Refused(Exception):
    """Not allowed, or nothing to open: logged (committed) already; answered as not found."""


def admit(access: PatientAccess, opening: Opening, who: Who) -> None:
    """Steps 1 and 2 for every store and every caller (the page, the MHD API): a refusal
    is its event, committed, and `Refused`; else the `document_open` event is committed
    before a single byte is returned or asked of a remote source. AuditWriteFailed: the
    event could not be written, and nothing may be sent."""

    if not opening.decision:
        _record(who, _refusal(access, opening), committed=True)
        raise Refused()
    _record(
        who,
        _event(
            events.DOCUMENT_OPEN,
            access,
            opening.opened_as,
            outcome=Outcome.GRANTED,
            flagged_for_review=policy.flagged_for_review(access.attest.basis if access.attest else ""),
            extra={**who.details, **opening.granted_details},
        ),
        committed=True,
    )


def content(access: PatientAccess, opening: Opening, who: Who) -> Retrieved:
    """The document's bytes as the store keeps them, after `admit` (the MHD API's ITI-68,
    which hands them on unrendered). ContentUnavailable: they cannot be had, and the
    second event (`not_found`) says so."""

    try:
        return read_bytes(opening)
    except (ContentUnavailable, SourceError) as exc:
        raise broke_off(access, opening, who, exc) from exc


def broke_off(
    access: PatientAccess, opening: Opening, who: Who, exc: ContentUnavailable | SourceError
) -> ContentUnavailable:
    """The bytes could not be had (before the first or while they were read, after
    `admit`): the second event (`not_found`), committed, and the ContentUnavailable to raise."""

    reason = exc.reason_code if isinstance(exc, ContentUnavailable) else f"source_{exc.reason_code}"
    logger.warning("document %s not sent: %s", opening.label, reason)
    _record(who, _not_shown(access, opening, Outcome.NOT_FOUND, reason), committed=True)
    return ContentUnavailable(reason)


def not_sent(access: PatientAccess, opening: Opening, who: Who, reason_code: str) -> None:
    """The bytes are not sent (the MHD API: too large for a Binary resource): an `invalid`
    event, committed, so the log says so: the second event after `admit`, or the only one
    when the size alone refused it before."""

    logger.warning("document %s not sent: %s", opening.label, reason_code)
    _record(who, _not_shown(access, opening, Outcome.INVALID, reason_code), committed=True)


def streamed(access: PatientAccess, opening: Opening, who: Who, chunks: Iterator[bytes]) -> Delivery:
    """The bytes as they are sent once the answer has started (`Delivery`)."""

    return Delivery(access, opening, who, chunks)


class Delivery:
    """An open's bytes as the server sends them, and the log told when they did not all leave.

    The granted event is committed before the first byte (the rule comes first); whether
    the answer then reached its end is only known here. The server takes one chunk after
    the other and calls `close()` when it is done or gives up (the client went away, the
    connection broke, a middleware replaced the answer before it started). Closed before
    the last chunk was taken, the open gets a second event, outcome `interrupted` with the
    bytes that left, so the log never says a document was delivered when it was not. A
    source that breaks off mid-document ends the answer early, with its own second event
    (`not_found`, as before). When the second event cannot be written either (the database
    went away with the connection), the error line says which open it was.
    """

    def __init__(self, access: PatientAccess, opening: Opening, who: Who, chunks: Iterator[bytes]) -> None:
        self._access = access
        self._opening = opening
        self._who = who
        self._chunks = iter(chunks)
        self._sent = 0
        self._finished = False  # the last chunk was taken, or the second event is written

    def __iter__(self) -> Delivery:
        return self

    def __next__(self) -> bytes:
        try:
            chunk = next(self._chunks)
        except StopIteration:
            self._finished = True
            raise
        except (ContentUnavailable, SourceError) as exc:
            self._finished = True
            try:
                broke_off(self._access, self._opening, self._who, exc)
            except AuditWriteFailed:
                logger.exception(
                    "document %s broke off and its event could not be written", self._opening.label
                )
            raise StopIteration from None
        self._sent += len(chunk)
        return chunk

    def close(self) -> None:
        close = getattr(self._chunks, "close", None)
        if close is not None:
            close()
        if self._finished:
            return
        self._finished = True
        logger.warning("document %s interrupted after %d bytes", self._opening.label, self._sent)
        event = _event(
            events.DOCUMENT_OPEN,
            self._access,
            self._opening.opened_as,
            outcome=Outcome.INTERRUPTED,
            reason_code="not_delivered",
            extra={"delivered_bytes": self._sent},
        )
        try:
            _record(self._who, event, committed=True)
        except AuditWriteFailed:
            logger.error(
                "document %s was logged as opened, not delivered, and that could not be logged",
                self._opening.label,
            )


def open_document(
    request: HttpRequest, access: PatientAccess, opening: Opening, page: Page = DOCUMENT_PAGE
) -> HttpResponseBase:
    """The answer to an open, the same for every store (the module's steps 1 to 3). `page`:
    where a rendered document is shown (the document page, or the viewer pane)."""

    who = who_of(request)
    # What the request would write after the view (the session's activity stamp) is
    # written before the event: after it, only the bytes are left to fail (`Delivery`).
    save_now(request)
    try:
        admit(access, opening, who)
    except Refused:
        raise Http404() from None
    except AuditWriteFailed:
        return service_unavailable(request, reason="audit")
    try:
        rendered = _render(opening)
    except ContentUnavailable as exc:
        logger.warning("document %s not shown: %s", opening.label, exc.reason_code)
        _record(who, _not_shown(access, opening, Outcome.NOT_FOUND, exc.reason_code))
        return service_unavailable(request, reason="source")
    if isinstance(rendered, rendering.PdfStream):
        # An answer that does not reach its end (a source breaking off, the client gone)
        # gets its second event (`Delivery`).
        rendered = replace(rendered, chunks=streamed(access, opening, who, rendered.chunks))
        return pdf_response(rendered, opening.filename, opening.filename_utf8)
    context = {**page.context, "document": opening.shown_as, "view": rendered, "handle": access.lookup.handle}
    if isinstance(rendered, rendering.UnsupportedDocument):
        logger.warning("document %s not shown: %s (%s)", opening.label, rendered.reason, rendered.detail)
        _record(who, _not_shown(access, opening, Outcome.INVALID, f"content_{rendered.reason}"))
        context.update(view=None, unsupported=rendered)
    return render(request, page.template, context)


# What the viewer shows in a frame pointing at the open URL (which streams it and writes
# the open event); anything else it renders itself, as the open.
EMBEDDED_TYPES = frozenset({rendering.PDF_TYPE, policy.UNKNOWN_CONTENT_TYPE})


def view_document(
    request: HttpRequest, access: PatientAccess, opening: Opening, page: Page
) -> HttpResponseBase:
    """The viewer: the document's description beside the list, and the document in it.

    The same decision as an open, and a refusal answered as an open's is (a 404, the same
    for not allowed and not found, logged). A PDF (or a remote document of a type its
    source did not name) is framed from the open URL: that request is the open and writes
    its one `document_open` event; the viewer writes `document_viewed` for the description it
    shows (committed first). An XML document is rendered
    here, and then this request is the open (`open_document`)."""

    if not opening.decision:
        _record(who_of(request), _refusal(access, opening), committed=True)
        raise Http404()
    if rendering.media_type(opening.content_type) in EMBEDDED_TYPES:
        flagged = policy.flagged_for_review(access.attest.basis if access.attest else "")
        try:
            _record(
                who_of(request),
                _event(
                    events.DOCUMENT_VIEWED,
                    access,
                    opening.opened_as,
                    outcome=Outcome.GRANTED,
                    flagged_for_review=flagged,
                ),
                committed=True,
            )
        except AuditWriteFailed:
            return service_unavailable(request, reason="audit")
        return render(
            request, page.template, {**page.context, "document": opening.shown_as, "embedded": True}
        )
    return open_document(request, access, opening, page)


def _render(opening: Opening) -> rendering.Rendered:
    """The bytes, read and rendered; ContentUnavailable when they cannot be had."""

    try:
        content_type, size, chunks = read_bytes(opening)
        return rendering.prepare(content_type, chunks, declared_size=size)
    except ContentUnavailable:
        raise
    except SourceError as exc:  # the source broke off while the document was read
        raise ContentUnavailable(f"source_{exc.reason_code}") from exc
    except Exception:  # a document must never turn into a 500
        logger.exception("document %s could not be rendered", opening.label)
        return rendering.UnsupportedDocument("malformed", "rendering failed")


def _event(
    kind: events.EventKind,
    access: PatientAccess,
    naming: Naming,
    *,
    outcome: str,
    reason_code: str = "",
    flagged_for_review: bool = False,
    extra: Mapping[str, Detail] | None = None,
) -> events.Event:
    return kind(
        outcome=outcome,
        reason_code=reason_code,
        flagged_for_review=flagged_for_review,
        patient=access.patient,
        attest=access.attest,
        document=naming.document,
        source_orgnr=naming.source_orgnr,
        details={**naming.details, **(extra or {})},
    )


def _refusal(access: PatientAccess, opening: Opening) -> events.Event:
    """Not allowed and not found look the same to the user; the log tells them apart."""

    outcome = Outcome.DENIED if opening.found else Outcome.NOT_FOUND
    return _event(
        events.ACCESS_DENIED,
        access,
        opening.refused_as,
        outcome=outcome,
        reason_code=opening.decision.reason_code,
    )


def _not_shown(access: PatientAccess, opening: Opening, outcome: str, reason_code: str) -> events.Event:
    """The second event: the content could not be had (not_found) or shown (invalid)."""

    return _event(events.DOCUMENT_OPEN, access, opening.opened_as, outcome=outcome, reason_code=reason_code)


def _record(who: Who, event: events.Event, *, committed: bool = False) -> None:
    record = record_event_committed if committed else record_event
    record(event, actor=who.actor, where=who.where)


def pdf_response(
    pdf: rendering.PdfStream, filename: str = "dokument.pdf", filename_utf8: str = ""
) -> StreamingHttpResponse:
    """A PDF streamed inline, never joined: the same headers for every source."""

    response = StreamingHttpResponse(pdf.chunks, content_type=pdf.content_type)
    if pdf.size is not None:
        response["Content-Length"] = str(pdf.size)
    response["Content-Disposition"] = content_disposition(filename, filename_utf8)
    # A PDF from another organisation is untrusted content: no script, no same-origin
    # access to the portal, framed only by the portal's own viewer. Chromium's viewer
    # still shows it.
    response["Content-Security-Policy"] = "sandbox; default-src 'none'; frame-ancestors 'self'"
    response["X-Frame-Options"] = "SAMEORIGIN"
    response["X-Content-Type-Options"] = "nosniff"
    return response


def content_disposition(filename: str, filename_utf8: str = "") -> str:
    """`inline` with the ASCII name, and the UTF-8 one as RFC 6266 `filename*`."""

    safe = re.sub(r"[^A-Za-z0-9._-]", "-", filename) or "dokument.pdf"
    return f"inline; filename=\"{safe}\"; filename*=UTF-8''{quote(filename_utf8 or safe, safe='')}"


# The category as a word in a file name (bokmål); other categories are "dokument".
CATEGORY_SLUGS: dict[str, str] = {
    DocumentCategory.EPIKRISE: "epikrise",
    DocumentCategory.PROVESVAR: "prøvesvar",
    DocumentCategory.ORGANFUNKSJON: "organfunksjon",
    DocumentCategory.BILDEDIAGNOSTIKK: "bildediagnostikk",
    DocumentCategory.KORRESPONDANSE: "korrespondanse",
}
# A legal form at the end of an institution's name says nothing in a file name.
_LEGAL_FORMS = frozenset({"hf", "as", "asa", "sf", "iks", "kf", "ba", "sa"})
_ASCII_LETTERS = str.maketrans({"æ": "ae", "ø": "o", "å": "a"})


def _slug(text: str, *, ascii_only: bool) -> str:
    text = unicodedata.normalize("NFC", text.lower())
    if ascii_only:
        text = text.translate(_ASCII_LETTERS)
        text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
        words = re.findall(r"[a-z0-9]+", text)
    else:
        words = re.findall(r"[^\W_]+", text)
    if len(words) > 1 and words[-1] in _LEGAL_FORMS:
        words.pop()
    return "-".join(words)[:60].strip("-")


def download_filename(service_date: datetime.date, category: str, institution_name: str) -> tuple[str, str]:
    """The PDF's name when saved: `2026-03-20-epikrise-universitetssykehuset-nord-norge.pdf`
    (service date, category, institution; never the patient), in ASCII (æ ø å as ae o a),
    and the same with the Norwegian letters kept, for `filename*`."""

    names = []
    for ascii_only in (True, False):
        category_word = _slug(CATEGORY_SLUGS.get(category, "dokument"), ascii_only=ascii_only)
        parts = [service_date.isoformat(), category_word, _slug(institution_name, ascii_only=ascii_only)]
        names.append("-".join(p for p in parts if p) + ".pdf")
    return names[0], names[1]


def _shown(d: DocumentReference | RemoteDocument) -> dict[str, object]:
    """What the page says of the document: its description, never its content."""

    return {
        "title": d.title,
        "category": d.category,
        "category_label": str(dict(DocumentCategory.choices).get(d.category, d.category)),
        "type_name": d.type_name,
        "institution_name": d.institution_name,
        "department": d.department,
        "service_date": d.service_date,
        "author": d.author,
    }


# --- The stores ------------------------------------------------------------------------------


def _source_rules(access: PatientAccess, source_id: int) -> policy.SourceRules | None:
    return next((s for s in access.source_rules if s.source_id == source_id), None)


def local_opening(access: PatientAccess, document_id: UUID) -> Opening:
    """A document in the portal's own store, by its id."""

    document = store.reference_with_head(document_id)
    refused_as = Naming(
        # Another patient's document is not named in this patient's log.
        document=document if document is not None and document.patient_id == access.patient.pk else None,
        details={"document_id": str(document_id)},
    )
    if document is None:
        return Opening(decision=policy.UNKNOWN_DOCUMENT, found=False, refused_as=refused_as)
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
        source=_source_rules(access, document.source_id),
        now=access.now,
    )

    filename, filename_utf8 = download_filename(
        document.service_date, document.category, document.institution_name
    )
    return Opening(
        decision=decision,
        found=True,
        refused_as=refused_as,
        opened_as=Naming(document=document),
        fetch=lambda: _local_bytes(document),
        shown_as=_shown(document),
        label=str(document.document_id),
        content_type=document.content_type,
        filename=filename,
        filename_utf8=filename_utf8,
        size=document.size,
    )


def _local_bytes(document: DocumentReference) -> Retrieved:
    # Read with the reference (documents/store.py); streamed only now, after the event.
    size = store.content_size(document)
    if size is None:  # the reference exists but its content cannot be had
        raise ContentUnavailable("content_unavailable")
    return document.content_type, size, store.content_chunks(document, size)


def remote_opening(access: PatientAccess, source_id: int, document_id: str) -> Opening:
    """A document kept at a remote (MHD) source: the source's current description is
    asked for, under the list's time budget, and the policy decides on that."""

    naming = Naming(details={"source_id": source_id, "remote_document_id": document_id[:100]})
    # The patient-level rules first: a source is never asked (and never told of an access)
    # for a clinician without a valid attest, a blocked clinician or a reserved patient.
    status = policy.may_see_patient_documents(
        access.clinician, access.patient_facts, access.attest_facts, access.now
    )
    source = remote.remote_sources().get(source_id) if status else None
    if source is None:
        decision = status if not status else policy.UNKNOWN_DOCUMENT
        return Opening(decision=decision, found=False, refused_as=naming)
    naming = Naming(source_orgnr=source.organisation.orgnr, details=naming.details)
    client = client_for(source)
    found = merge.search_sources(
        [client], access.patient.national_id, access=remote.access_context(access), document_id=document_id
    )
    document = next((d for d in found.documents if d.document_id == document_id), None)
    if document is None:
        decision = (
            policy.source_did_not_answer(found.failures[0].reason_code)
            if found.failures
            else policy.UNKNOWN_DOCUMENT
        )
        return Opening(
            decision=decision, found=False, refused_as=naming, source_unavailable=bool(found.failures)
        )
    decision = policy.may_open_document(
        access.clinician,
        access.patient_facts,
        access.attest_facts,
        document.facts(access.patient.pk),
        source=_source_rules(access, source_id),
        now=access.now,
    )
    # The id the source is told with the retrieval (nhn-event-id) is the granted event's.
    event_id = str(uuid.uuid4())
    filename, filename_utf8 = download_filename(
        document.service_date, document.category, document.institution_name
    )
    return Opening(
        decision=decision,
        found=True,
        refused_as=naming,
        opened_as=naming,
        granted_details={**logged_documents.remote_details(document), "nhn_event_id": event_id},
        fetch=lambda: _retrieve(client, document, remote.access_context(access, event_id)),
        shown_as=_shown(document),
        label=f"{document_id} from source {source_id}",
        content_type=document.content_type,
        filename=filename,
        filename_utf8=filename_utf8,
        size=document.size,
    )


def _retrieve(client: DocumentSourceClient, document: RemoteDocument, access: AccessContext) -> Retrieved:
    try:
        return client.retrieve(document, access=access)
    except SourceError as exc:
        raise ContentUnavailable(f"source_{exc.reason_code}") from exc
