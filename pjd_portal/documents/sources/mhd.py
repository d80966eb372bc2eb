"""An IHE MHD document source (FHIR R4), as NHN's MHD facade offers the national XCA
sources: ITI-67 (find document references) and ITI-68 (retrieve a document).

- ITI-67: `POST {base}/DocumentReference/_search`, form-encoded: the patient by national id
  (`patient.identifier=urn:oid:2.16.578.1.12.4.1.4.1|<id>`), `status=current`, categories
  (Volven 9602), `date=ge<from>`, `_sort=-date`, `_count`, `_include` of the subject. Each
  page is validated as an R4B `Bundle` (fhir.resources); a page that is not one is a
  failure of that source, never a partial list. `date` is when the reference was made,
  never before the service date, so `date=ge<from>` cannot drop a document whose service
  date is inside the window; the policy applies the windows to the service date afterwards.
- Paging: `Bundle.link[next]` is followed when it stays on the source: the base itself
  (HAPI FHIR's `{base}?_getpages=...`), under it, or relative to it; until every current
  document has arrived or `max_documents` (PJD_SOURCE_MAX_DOCUMENTS) of the newest have.
  What did not arrive is said in the `SearchResult` (a `Bundle.total` larger than what
  came, a link that leaves the source, a page with nothing new), never dropped silently.
- A document is kept only when its subject is verifiably the patient asked for: the
  national id as identifier, or a reference (relative, absolute on this base, versioned)
  to an included Patient with it. Unverifiable ones are counted, never shown.
- A 4xx answer to a search (usually an OperationOutcome: a parameter it does not support)
  is `search_refused`: the source is up, so it is no breaker failure; its diagnostics go
  to the application log with national ids taken out.
- ITI-68: `GET` of the attachment URL, streamed (`stream=True`, `iter_content`), only on
  the source's own base URL (the bearer token goes nowhere else), and only when the answer
  has the content type the reference announced (the policy decided on that type); with
  none announced, the showable types are asked for and only they are taken. A Binary
  resource in its FHIR JSON form (base64 `data`) is decoded, within the size limits.

Every request carries `nhn-access-basis`, `nhn-event-id`, `nhn-source-system` and
`Authorization: Bearer` (or `DPoP` once the source asks for it, whatever the case of the
scheme) from the token provider; connect and read timeouts and one retry of these
idempotent reads; a circuit breaker per source answers at once while the source is known
to be down.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import json
import logging
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar
from urllib.parse import SplitResult, parse_qsl, unquote_plus, urljoin, urlsplit, urlunsplit

import requests
from django.conf import settings
from django.utils import timezone
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.documentreference import DocumentReference as FhirDocumentReference
from urllib3.exceptions import ReadTimeoutError

from pjd_portal.documents import rendering
from pjd_portal.documents.sources import base, dpop
from pjd_portal.documents.sources.base import (
    AccessContext,
    RemoteDocument,
    Retrieved,
    SearchResult,
    SourceError,
)
from pjd_portal.documents.sources.breaker import CircuitBreaker, breaker_for
from pjd_portal.documents.sources.metrics import SOURCE_REQUEST_SECONDS
from pjd_portal.documents.sources.tokens import TokenProvider
from pjd_portal.lib.redact import redact_national_ids

logger = logging.getLogger(__name__)
T = TypeVar("T")

NATIONAL_ID_SYSTEM = "urn:oid:2.16.578.1.12.4.1.4.1"
CATEGORY_SYSTEM = "urn:oid:2.16.578.1.12.4.1.1.9602"  # Volven 9602
CONFIDENTIALITY_SYSTEMS = frozenset(
    {
        "urn:oid:2.16.578.1.12.4.1.1.9603",  # Volven 9603 (NORS, NORN_DUE, ...)
        "http://terminology.hl7.org/CodeSystem/v3-Confidentiality",  # N, R, V
    }
)
BLOCKED_CONFIDENTIALITY = "NORS"
ORGNR_SYSTEM = "urn:oid:2.16.578.1.12.4.1.4.101"
FHIR_JSON_TYPES = frozenset({"application/fhir+json", "application/json"})
RETRY_STATUSES = frozenset({502, 503, 504})
# One page of a search, read whole to parse it: a hundred references are some 100 KB.
MAX_BUNDLE_BYTES = 16 * 1024 * 1024
MAX_OUTCOME_BYTES = 64 * 1024  # an OperationOutcome with a refusal, read for the log
BINARY_JSON_OVERHEAD = 64 * 1024  # the JSON around a Binary's base64 data, at most
FOREIGN_URL = "foreign_url"  # an attachment URL outside the source's base URL
DEFAULT_PORTS = {"http": 80, "https": 443}
# What a document reference's subject turns out to be (MhdSourceClient._about).
PATIENT, OTHER_PATIENT, UNVERIFIED = "patient", "other_patient", "unverified"
_RESOURCE_TYPE = re.compile(r"[A-Z][A-Za-z]{1,63}")
# A path segment below the base: RFC 3986's pchar without ";" (servlet containers read it as
# path parameters, Tomcat's "..;/" climbs), and percent-escapes except of ".", "/", "\\",
# ";" and "%" itself (double encoding), which a server may decode into a climb.
_PLAIN_SEGMENT = re.compile(
    r"(?:[A-Za-z0-9\-._~!$&'()*+,=:@]|%(?![2][eEfF5]|[5][cC]|[3][bB])[0-9A-Fa-f]{2})+"
)
_LOGICAL_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")


def _media_type(response: requests.Response) -> str:
    return response.headers.get("content-type", "").split(";")[0].strip().lower()


def _timed_out(exc: BaseException) -> bool:
    """requests reports a read timeout while reading the body as a ConnectionError."""

    return isinstance(exc, requests.Timeout) or any(isinstance(a, ReadTimeoutError) for a in exc.args)


def _to_date(value: Any) -> datetime.date | None:
    if isinstance(value, datetime.datetime):
        return timezone.localtime(value).date() if timezone.is_aware(value) else value.date()
    if isinstance(value, datetime.date):
        return value
    return None


class MhdSourceClient:
    in_request_thread = False

    def __init__(
        self,
        *,
        source_id: int,
        name: str,
        base_url: str,
        token_provider: TokenProvider,
        connect_timeout: float,
        read_timeout: float,
        retries: int = 1,
        count: int = 100,
        max_documents: int = 2000,
        breaker: CircuitBreaker | None = None,
        session: requests.Session | None = None,
        orgnr: str = "",
    ) -> None:
        self.source_id = source_id
        self.orgnr = orgnr  # the source's organisation number: its label in the metrics
        self.name = name
        self.base_url = base_url.rstrip("/")
        self.token_provider = token_provider
        self.timeout = (connect_timeout, read_timeout)
        self.retries = max(0, retries)
        self.count = count
        self.max_documents = max(1, max_documents)
        self.breaker = breaker
        self.session = session or requests.Session()

    @classmethod
    def from_settings(
        cls, *, source_id: int, name: str, base_url: str, token_provider: TokenProvider, orgnr: str = ""
    ) -> MhdSourceClient:
        return cls(
            source_id=source_id,
            orgnr=orgnr,
            name=name,
            base_url=base_url,
            token_provider=token_provider,
            connect_timeout=settings.DOCUMENT_SOURCE_CONNECT_TIMEOUT,
            read_timeout=settings.DOCUMENT_SOURCE_READ_TIMEOUT,
            retries=settings.DOCUMENT_SOURCE_RETRIES,
            count=settings.DOCUMENT_SOURCE_SEARCH_COUNT,
            max_documents=settings.DOCUMENT_SOURCE_MAX_DOCUMENTS,
            breaker=breaker_for(base_url.rstrip("/")),
        )

    # --- ITI-67 -----------------------------------------------------------------------

    def search(
        self,
        patient_national_id: str,
        *,
        access: AccessContext,
        categories: Sequence[str] = (),
        date_from: datetime.date | None = None,
        date_to: datetime.date | None = None,
        document_id: str = "",
        deadline: float | None = None,
    ) -> SearchResult:
        """`deadline` (time.monotonic()): no further page is asked for after it; what has
        arrived is the answer, and the rest is said to be missing."""

        params: list[tuple[str, str]] = [
            ("patient.identifier", f"{NATIONAL_ID_SYSTEM}|{patient_national_id}"),
            ("status", "current"),
            ("_sort", "-date"),
            ("_count", str(self.count)),
            # The patients come along, so every document's subject can be checked: a source
            # that ignored the patient parameter must not hand over someone else's documents.
            ("_include", "DocumentReference:subject"),
        ]
        if document_id:
            params.append(("_id", document_id))
        if categories:
            params.append(("category", ",".join(f"{CATEGORY_SYSTEM}|{c}" for c in categories)))
        if date_from is not None:
            params.append(("date", f"ge{date_from.isoformat()}"))
        if date_to is not None:
            params.append(("date", f"le{date_to.isoformat()}"))
        reading = _Reading(patient_national_id, deadline)
        result = self._guarded(lambda: self._search(params, access, reading))
        if document_id:  # a source that ignores `_id` still answers only for that one
            kept = [d for d in result.documents if d.document_id == document_id]
            return replace(result, documents=kept)
        return result

    def _search(
        self, params: list[tuple[str, str]], access: AccessContext, reading: _Reading
    ) -> SearchResult:
        """Read the search's pages until every current document has arrived, the ceiling
        is reached or the deadline has passed. A next link is followed only while it stays
        on the source (the token goes nowhere else); what could not be read is said in the
        result, never dropped."""

        response = self._send(
            "POST",
            f"{self.base_url}/DocumentReference/_search",
            access,
            "application/fhir+json",
            data=params,
            searching=True,
        )
        bundle = self._bundle(response)
        while True:
            try:
                brought_new = self._page(bundle, reading)
            except SourceError:
                raise
            except Exception as exc:
                raise SourceError(base.MALFORMED_RESPONSE, type(exc).__name__) from exc
            next_link = next((str(link.url) for link in bundle.link or [] if link.relation == "next"), "")
            count = len(reading.documents)
            if count > self.max_documents or (count == self.max_documents and next_link):
                reading.ceiling = self.max_documents
                break
            if not next_link:
                if reading.total is not None and reading.total > len(reading.received):
                    reading.incomplete = base.SHORT_ANSWER
                break
            asked = time.monotonic()
            following = self._follow(next_link, brought_new, reading, access)
            if following is None:
                break
            try:
                bundle = self._bundle(following)
            except SourceError as exc:
                if exc.reason_code not in (base.TIMEOUT, base.UNREACHABLE):
                    raise
                reading.incomplete = base.PAGING_TIMED_OUT  # the pages before it are kept
                break
            # The search itself may take long (a source fanning out); its pages do not.
            reading.page_seconds = max(reading.page_seconds, time.monotonic() - asked)
        return reading.result(self.max_documents)

    def _follow(
        self, link: str, brought_new: bool, reading: _Reading, access: AccessContext
    ) -> requests.Response | None:
        """The next page, or None (and why, in `reading.incomplete`) where the reading stops."""

        url = self._next_url(link)
        if url is None:
            # Never followed: the token and the patient's id would leave the source.
            logger.warning("source %s: a next link outside its base URL was not followed", self.name)
            reading.incomplete = base.NEXT_OUTSIDE
            return None
        if not brought_new or url in reading.followed:
            logger.warning("source %s: paging stopped on a page that brought nothing new", self.name)
            reading.incomplete = base.PAGING_STALLED
            return None
        if reading.deadline is not None and time.monotonic() + 1.5 * reading.page_seconds >= reading.deadline:
            # Another page would likely not arrive in time: show what has, and say the rest
            # is missing (rather than lose every page to the budget).
            logger.warning("source %s: paging stopped at the time budget", self.name)
            reading.incomplete = base.PAGING_TIMED_OUT
            return None
        reading.followed.add(url)
        parts = urlsplit(url)
        try:
            if reading.national_id in unquote_plus(parts.query):
                # A link that repeats the search in its query (not HAPI's way, some others')
                # would put the patient's national id into a URL: ask for the same page by
                # POST, as the search itself was (FHIR: GET and POST _search are one search).
                target = self._search_path(parts.path)
                if target is None:
                    logger.warning(
                        "source %s: a next link that names the patient was not followed", self.name
                    )
                    reading.incomplete = base.PAGING_STALLED
                    return None
                return self._send(
                    "POST",
                    urlunsplit((parts.scheme, parts.netloc, target, "", "")),
                    access,
                    "application/fhir+json",
                    data=parse_qsl(parts.query, keep_blank_values=True),
                    searching=True,
                    deadline=reading.deadline,
                )
            return self._send(
                "GET", url, access, "application/fhir+json", searching=True, deadline=reading.deadline
            )
        except SourceError as exc:
            # What arrived is shown, and the rest is said to be missing: the source no
            # longer has it (HAPI: 410 once its search has expired), or a later page failed.
            if exc.reason_code in (base.SEARCH_REFUSED, base.NOT_FOUND):
                reading.incomplete = base.PAGING_STALLED
            elif exc.reason_code in (base.TIMEOUT, base.UNREACHABLE, base.HTTP_ERROR):
                reading.incomplete = base.PAGING_TIMED_OUT
            else:
                raise
            return None

    def _search_path(self, path: str) -> str | None:
        """Where a next link's query is POSTed instead: its own `…/_search`, the document
        search for a link on the base itself, `{base}/{Type}/_search` for one on a type."""

        own = urlsplit(self.base_url).path.rstrip("/")
        path = path.rstrip("/")
        if path.endswith("/_search"):
            return path
        if path == own:
            return f"{own}/DocumentReference/_search"
        rest = path[len(own) + 1 :] if path.startswith(f"{own}/") else ""
        return f"{path}/_search" if _RESOURCE_TYPE.fullmatch(rest) else None

    def _bundle(self, response: requests.Response) -> Bundle:
        with response:
            media_type = _media_type(response)
            if media_type not in FHIR_JSON_TYPES:
                raise SourceError(base.WRONG_CONTENT_TYPE, media_type or "none")
            try:
                body = json.loads(_read_capped(response, MAX_BUNDLE_BYTES))
            except requests.RequestException as exc:
                raise SourceError(base.TIMEOUT if _timed_out(exc) else base.UNREACHABLE) from exc
            except (ValueError, RecursionError) as exc:  # deep nesting is refused, not a 500
                raise SourceError(base.MALFORMED_RESPONSE, "not JSON") from exc
        if not isinstance(body, dict) or body.get("resourceType") != "Bundle":
            raise SourceError(base.MALFORMED_RESPONSE, "not a Bundle")
        try:
            bundle = Bundle.model_validate(body)
        except (ValueError, RecursionError) as exc:  # pydantic's ValidationError
            raise SourceError(base.MALFORMED_RESPONSE, "invalid FHIR Bundle") from exc
        if bundle.type != "searchset":
            raise SourceError(base.MALFORMED_RESPONSE, f"Bundle.type {bundle.type}")
        return bundle

    def _page(self, bundle: Bundle, reading: _Reading) -> bool:
        """Take one page into the reading: its current documents about the patient asked
        for, the ids of every matching reference, the unverifiable ones counted. True when
        it brought a matching reference not seen before."""

        if bundle.total is not None:
            # The latest page's: some servers estimate it until the last page.
            reading.total = int(bundle.total)
        # The included patients by (type, id): those with the national id asked for, and
        # those with another. One id in both (a source contradicting itself) is neither.
        ours: set[tuple[str, str]] = set()
        theirs: set[tuple[str, str]] = set()
        for entry in bundle.entry or []:
            resource = entry.resource
            if resource is not None and type(resource).__name__ == "Patient" and resource.id:
                ids = {(i.system, i.value) for i in (getattr(resource, "identifier", None) or [])}
                key = ("Patient", str(resource.id))
                (ours if (NATIONAL_ID_SYSTEM, reading.national_id) in ids else theirs).add(key)
        contradicted = ours & theirs
        ours -= contradicted
        theirs -= contradicted
        before = len(reading.received)
        for entry in bundle.entry or []:
            if entry.search is not None and entry.search.mode not in (None, "match"):
                continue  # included resources, OperationOutcome
            resource = entry.resource
            if not isinstance(resource, FhirDocumentReference):
                continue
            document_id = str(resource.id or "")
            # Every match counts against Bundle.total, current or not: a source that ignores
            # `status` counts its superseded ones there too.
            reading.received.add(document_id)
            if resource.status != "current" or document_id in reading.documents:
                continue
            about = self._about(resource, reading.national_id, ours, theirs)
            if about == OTHER_PATIENT:
                logger.warning("source %s: a document about another patient was dropped", self.name)
            elif about == UNVERIFIED:
                logger.warning(
                    "source %s: a document whose subject cannot be checked was left out", self.name
                )
                reading.unverified.add(document_id)
            else:
                reading.documents[document_id] = self._document(resource)
        return len(reading.received) > before

    def _about(
        self,
        resource: FhirDocumentReference,
        patient_national_id: str,
        ours: set[tuple[str, str]],
        theirs: set[tuple[str, str]],
    ) -> str:
        """Is this document about the patient asked for? By the subject's national id, or
        by a reference (relative, absolute on this source, or versioned) to an included
        Patient with it. Another national id is another patient; anything that cannot be
        checked (another identifier system, an unknown reference) is UNVERIFIED."""

        subject = resource.subject
        if subject is None:
            return UNVERIFIED
        identifier = getattr(subject, "identifier", None)
        if identifier is not None and identifier.value and identifier.system == NATIONAL_ID_SYSTEM:
            return PATIENT if identifier.value == patient_national_id else OTHER_PATIENT
        key = self._reference_key(str(subject.reference or ""))
        if key in ours:
            return PATIENT
        if key in theirs:
            return OTHER_PATIENT
        return UNVERIFIED

    def _reference_key(self, reference: str) -> tuple[str, str] | None:
        """A FHIR reference as (resource type, logical id): `Patient/1`, `Patient/1/_history/2`,
        or either absolute on this source's base. An absolute reference elsewhere names a
        resource on another server: no key."""

        if "://" in reference:
            try:
                parts = urlsplit(reference)
            except ValueError:  # e.g. an unclosed IPv6 bracket: names nothing checkable
                return None
            own = urlsplit(self.base_url)
            if _origin(parts) != _origin(own) or parts.query or parts.fragment:
                return None
            prefix = f"{own.path.rstrip('/')}/"
            if not parts.path.startswith(prefix):
                return None
            reference = parts.path[len(prefix) :]
        segments = reference.split("/")
        if len(segments) == 4 and segments[2] == "_history":
            segments = segments[:2]
        if (
            len(segments) != 2
            or not _RESOURCE_TYPE.fullmatch(segments[0])
            or not _LOGICAL_ID.fullmatch(segments[1])
        ):
            return None
        return segments[0], segments[1]

    def _document(self, resource: FhirDocumentReference) -> RemoteDocument:
        attachment = resource.content[0].attachment
        if not resource.id or attachment is None or not attachment.url:
            raise SourceError(base.MALFORMED_RESPONSE, "DocumentReference without id or attachment URL")
        period = resource.context.period if resource.context is not None else None
        service_date = _to_date(period.start if period is not None else None) or _to_date(resource.date)
        if service_date is None:
            raise SourceError(base.MALFORMED_RESPONSE, f"DocumentReference {resource.id} without a date")

        category = ""
        for concept in resource.category or []:
            for coding in concept.coding or []:
                if coding.system == CATEGORY_SYSTEM and coding.code:
                    category = str(coding.code)
                    break
            if category:
                break

        type_code = type_name = ""
        if resource.type is not None:
            for first in (resource.type.coding or [])[:1]:
                type_code, type_name = str(first.code or ""), str(first.display or "")
            type_name = type_name or str(resource.type.text or "")

        codes = [
            str(coding.code)
            for label in resource.securityLabel or []
            for coding in label.coding or []
            if coding.system in CONFIDENTIALITY_SYSTEMS and coding.code
        ]
        # The most restrictive wins: a document blocked in any coding is blocked.
        confidentiality = BLOCKED_CONFIDENTIALITY if BLOCKED_CONFIDENTIALITY in codes else (codes or ["N"])[0]

        author = next((str(a.display) for a in resource.author or [] if a.display), "")
        institution_name = institution_orgnr = ""
        if resource.custodian is not None:
            institution_name = str(resource.custodian.display or "")
            identifier = resource.custodian.identifier
            if identifier is not None and identifier.system == ORGNR_SYSTEM:
                institution_orgnr = str(identifier.value or "")

        return RemoteDocument(
            source_id=self.source_id,
            source_name=self.name,
            document_id=str(resource.id),
            category=category,
            type_code=type_code,
            type_name=type_name,
            title=str(resource.description or attachment.title or type_name),
            service_date=service_date,
            author=author,
            institution_name=institution_name,
            institution_orgnr=institution_orgnr,
            confidentiality_code=confidentiality,
            # The media type alone: "application/pdf; charset=..." is a PDF.
            content_type=str(attachment.contentType or "").split(";")[0].strip().lower(),
            size=int(attachment.size) if attachment.size is not None else None,
            url=urljoin(f"{self.base_url}/", str(attachment.url)),
            department=_department(resource),
        )

    # --- ITI-68 -----------------------------------------------------------------------

    def retrieve(self, document: RemoteDocument, *, access: AccessContext) -> Retrieved:
        if not self._own_url(document.url):
            raise SourceError(FOREIGN_URL, "attachment URL outside the source's base URL")
        # A reference without a content type: ask for what the portal can show, and take
        # only that (the policy let it into the list on that condition).
        acceptable = (
            frozenset({document.content_type}) if document.content_type else rendering.ALLOWED_CONTENT_TYPES
        )

        def start() -> Retrieved:
            response = self._send("GET", document.url, access, ", ".join(sorted(acceptable)))
            media_type = _media_type(response)
            if media_type in FHIR_JSON_TYPES and media_type not in acceptable:
                # The Binary resource's FHIR form (its bytes in base64 `data`), which some
                # servers answer whatever the Accept header says.
                return self._binary_resource(response, acceptable)
            if media_type not in acceptable:
                response.close()
                raise SourceError(
                    base.WRONG_CONTENT_TYPE, f"{media_type} for {document.content_type or 'any'}"
                )
            length = response.headers.get("content-length", "")
            size = int(length) if length.isdigit() else None
            return media_type, size, self._stream(response)

        return self._guarded(start)

    def _binary_resource(self, response: requests.Response, acceptable: frozenset[str]) -> Retrieved:
        # Read whole (JSON cannot be streamed into base64 decoding safely), so bounded: the
        # largest document the portal shows, in base64, and a little for the JSON around it.
        largest = max(rendering.size_limit_for(t) for t in acceptable)  # of the types asked for
        limit = largest * 4 // 3 + BINARY_JSON_OVERHEAD
        with response:
            try:
                body = json.loads(_read_capped(response, limit))
            except requests.RequestException as exc:
                raise SourceError(base.TIMEOUT if _timed_out(exc) else base.UNREACHABLE) from exc
            except (ValueError, RecursionError) as exc:
                raise SourceError(base.MALFORMED_RESPONSE, "Binary: not JSON") from exc
        if not isinstance(body, dict) or body.get("resourceType") != "Binary":
            raise SourceError(base.MALFORMED_RESPONSE, "not a Binary resource")
        content_type = body.get("contentType")
        data = body.get("data")
        if not isinstance(content_type, str) or not isinstance(data, str):
            raise SourceError(base.MALFORMED_RESPONSE, "Binary without contentType or data")
        media_type = content_type.split(";")[0].strip().lower()
        if media_type not in acceptable:
            raise SourceError(base.WRONG_CONTENT_TYPE, f"Binary {media_type}")
        try:
            # FHIR's base64Binary may carry whitespace between the groups.
            content = base64.b64decode("".join(data.split()), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise SourceError(base.MALFORMED_RESPONSE, "Binary data is not base64") from exc
        return media_type, len(content), rendering.chunked(content)

    def _stream(self, response: requests.Response) -> Iterator[bytes]:
        try:
            yield from _body_chunks(response)
        except requests.RequestException as exc:
            if self.breaker is not None:
                self.breaker.record_failure()
            raise SourceError(base.TIMEOUT if _timed_out(exc) else base.UNREACHABLE) from exc
        finally:
            response.close()

    # --- HTTP -------------------------------------------------------------------------

    def _within(self, url: str, *, base_itself: bool) -> bool:
        """On the source's own origin and under its base path (or the base path itself when
        `base_itself`). Below the base, segments of RFC 3986 path characters without `;`
        and without escapes of dots, slashes, backslashes, semicolons or percent signs (which
        servlet containers and proxies read as climbs or path parameters); no dot segments,
        no empty ones but a trailing slash; so that what the server resolves is what was
        checked. No user info."""

        try:
            own, other = urlsplit(self.base_url), urlsplit(url)
        except ValueError:
            return False
        if "@" in other.netloc or _origin(other) != _origin(own) or not other.scheme:
            return False
        own_path = own.path.rstrip("/")
        path = other.path
        if base_itself and path in (own_path, f"{own_path}/"):
            return True
        if not path.startswith(f"{own_path}/"):
            return False
        segments = path[len(own_path) + 1 :].split("/")
        if len(segments) > 1 and segments[-1] == "":
            segments.pop()  # one trailing slash: `Binary/1/`, `DocumentReference/?page=2`
        return all(_PLAIN_SEGMENT.fullmatch(s) and s not in (".", "..") for s in segments)

    def _own_url(self, url: str) -> bool:
        """An attachment URL the token may go to: under the source's base URL."""

        return self._within(url, base_itself=False)

    def _next_url(self, link: str) -> str | None:
        """A next link resolved against the base (FHIR's relative references are relative
        to the service base URL), if it stays on the source: the base itself (HAPI FHIR's
        `{base}?_getpages=...`) or under it. None when it leaves the source."""

        try:
            url = urljoin(f"{self.base_url}/", link.strip())
        except ValueError:
            return None
        return url if self._within(url, base_itself=True) else None

    def _guarded(self, call: Callable[[], T]) -> T:
        """Run one exchange under the breaker: answer at once while it is open."""

        breaker = self.breaker
        if breaker is not None and not breaker.allow():
            raise SourceError(base.BREAKER_OPEN)
        try:
            result = call()
        except SourceError as exc:
            if breaker is not None:
                # The source answered (it has no such document, or it refused this
                # search): it is up, whatever this answer means for the list.
                if exc.reason_code in (base.NOT_FOUND, base.SEARCH_REFUSED):
                    breaker.record_success()
                else:
                    breaker.record_failure()
            raise
        except BaseException:
            if breaker is not None:
                breaker.record_failure()
            raise
        if breaker is not None:
            breaker.record_success()
        return result

    def _headers(self, access: AccessContext, accept: str, method: str, url: str) -> dict[str, str]:
        headers = {
            "Accept": accept,
            "nhn-access-basis": access.basis,
            "nhn-event-id": access.event_id,
            "nhn-source-system": access.source_system,
        }
        token = self.token_provider.access_token()
        state = dpop.state_for(self.base_url)
        if token and state.required:
            # The source asked for proof of possession: a fresh proof for every request.
            headers["Authorization"] = f"DPoP {token}"
            headers["DPoP"] = dpop.proof(method, url, token, state.nonce)
        elif token:
            headers["Authorization"] = f"Bearer {token}"
        return headers

    def _asks_for_dpop(self, response: requests.Response) -> bool:
        """A 401 that asks for DPoP (or for a new DPoP nonce): remember it, retry once."""

        nonce = response.headers.get("DPoP-Nonce") or None
        asks = response.status_code == 401 and "dpop" in _auth_schemes(
            response.headers.get("WWW-Authenticate", "")
        )
        dpop.remember(self.base_url, nonce=nonce, required=asks)
        return asks

    def _refused(self, response: requests.Response) -> SourceError:
        """A 4xx answer to a search: the source is up and refused this request. What it
        said goes to the application log, with anything like a national id taken out."""

        status = response.status_code
        diagnostics = ""
        try:
            if _media_type(response) in FHIR_JSON_TYPES:
                body = json.loads(_read_capped(response, MAX_OUTCOME_BYTES))
                if isinstance(body, dict) and body.get("resourceType") == "OperationOutcome":
                    diagnostics = "; ".join(_outcome_texts(body))
        except (requests.RequestException, SourceError, ValueError, RecursionError):
            diagnostics = ""
        finally:
            response.close()
        logger.warning(
            "source %s refused the search (%s): %s",
            self.name,
            status,
            redact_national_ids(diagnostics)[:1000] or "no OperationOutcome",
        )
        return SourceError(base.SEARCH_REFUSED, str(status))

    def _send(
        self,
        method: str,
        url: str,
        access: AccessContext,
        accept: str,
        *,
        data: list[tuple[str, str]] | None = None,
        searching: bool = False,
        deadline: float | None = None,
    ) -> requests.Response:
        """One read, retried once (or `retries` times) on a timeout, a refused or broken
        connection, or a 502/503/504: these reads change nothing at the source. The body is
        left unread (streamed), so that every caller reads at most what it can take. With a
        `deadline` (a next page) no wait goes past it, retries included."""

        failure = SourceError(base.INTERNAL_ERROR)
        dpop_retry_left = True
        attempt = 0
        while attempt <= self.retries:
            last = attempt == self.retries
            attempt += 1
            timeout = self.timeout
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise SourceError(base.TIMEOUT, "deadline")
                timeout = (min(timeout[0], remaining), min(timeout[1], remaining))
            headers = self._headers(access, accept, method, url)
            started = time.perf_counter()
            outcome = "error"
            try:
                response = self.session.request(
                    method,
                    url,
                    headers=headers,
                    data=data,
                    timeout=timeout,
                    stream=True,
                    allow_redirects=False,
                )
                outcome = f"{response.status_code // 100}xx"
            except requests.RequestException as exc:
                code = base.TIMEOUT if _timed_out(exc) else base.UNREACHABLE
                if not isinstance(exc, requests.Timeout | requests.ConnectionError):
                    code = base.HTTP_ERROR
                failure = SourceError(code, type(exc).__name__)
                # The path only: a query may carry the patient's national id.
                logger.info("source %s: %s %s failed (%s)", self.name, method, urlsplit(url).path, code)
                continue
            finally:
                SOURCE_REQUEST_SECONDS.labels(source=self.orgnr or self.name, outcome=outcome).observe(
                    time.perf_counter() - started
                )
            status = response.status_code
            if self._asks_for_dpop(response) and dpop_retry_left:
                # Not a failure: the source wants proof of possession (or a fresh nonce).
                response.close()
                dpop_retry_left = False
                attempt -= 1
                continue
            if status in RETRY_STATUSES and not last:
                response.close()
                continue
            if status < 300:
                return response
            if status in (401, 403):
                response.close()
                raise SourceError(base.UNAUTHORIZED, str(status))
            if searching and 400 <= status < 500 and status not in (408, 429):
                raise self._refused(response)
            response.close()
            if status in (404, 410):
                raise SourceError(base.NOT_FOUND, str(status))
            raise SourceError(base.HTTP_ERROR, str(status))
        raise failure


@dataclass
class _Reading:
    """One search's pages as they are read: what has arrived and what is known of the rest."""

    national_id: str
    deadline: float | None
    documents: dict[str, RemoteDocument] = field(default_factory=dict)  # in the source's order
    received: set[str] = field(default_factory=set)  # every matching reference's id
    unverified: set[str] = field(default_factory=set)
    followed: set[str] = field(default_factory=set)
    total: int | None = None
    ceiling: int | None = None
    incomplete: str = ""
    page_seconds: float = 0.0  # the longest a next page has taken

    def result(self, max_documents: int) -> SearchResult:
        return SearchResult(
            list(self.documents.values())[:max_documents],
            total=self.total,
            received=len(self.received),
            ceiling=self.ceiling,
            incomplete=self.incomplete,
            unverified=len(self.unverified),
        )


def _department(resource: FhirDocumentReference) -> str:
    """The clinical unit (MHD: `context.practiceSetting`), as text."""

    setting = resource.context.practiceSetting if resource.context is not None else None
    if setting is None:
        return ""
    display = next((str(c.display) for c in setting.coding or [] if c.display), "")
    return str(setting.text or display)


def _origin(parts: SplitResult) -> tuple[str, str, int | None]:
    """(scheme, host, port) as a client connects: case-insensitive, default ports filled in."""

    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        return ("", "", None)
    return scheme, (parts.hostname or "").lower(), port or DEFAULT_PORTS.get(scheme)


def _body_chunks(response: requests.Response) -> Iterator[bytes]:
    """An answer's body as it arrives, in the chunk size every document's bytes go in
    (`rendering.CHUNK_SIZE`, as `rendering.chunked` slices bytes already in memory)."""

    for chunk in response.iter_content(rendering.CHUNK_SIZE):
        if chunk:
            yield chunk


def _read_capped(response: requests.Response, limit: int) -> bytes:
    """The body, at most `limit` bytes: a bigger answer is refused, not read on."""

    received = bytearray()
    for chunk in _body_chunks(response):
        received += chunk
        if len(received) > limit:
            raise SourceError(base.TOO_LARGE, f"more than {limit} bytes")
    return bytes(received)


def _outcome_texts(outcome: dict[str, Any]) -> Iterator[str]:
    issues = outcome.get("issue")
    for issue in issues if isinstance(issues, list) else []:
        if not isinstance(issue, dict):
            continue
        details = issue.get("details")
        text = details.get("text") if isinstance(details, dict) else None
        for value in (issue.get("diagnostics"), text):
            if isinstance(value, str) and value:
                yield value


_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"')
_SCHEME = re.compile(r"(?:^|,)\s*([!#$%&'*+.^_`|~0-9A-Za-z-]+)(?=\s|,|$)")


def _auth_schemes(challenges: str) -> set[str]:
    """The auth schemes in a WWW-Authenticate value, lower case (scheme names are
    case-insensitive, RFC 9110 11.1); quoted parameter values cannot pose as one."""

    return {m.group(1).lower() for m in _SCHEME.finditer(_QUOTED.sub('""', challenges))}
