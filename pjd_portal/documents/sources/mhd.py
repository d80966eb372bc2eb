"""An IHE MHD document source (FHIR R4), as NHN's MHD facade offers the national XCA
sources: ITI-67 (find document references) and ITI-68 (retrieve a document).

- ITI-67: `POST {base}/DocumentReference/_search`, form-encoded: the patient by national id
  (`patient.identifier=urn:oid:2.16.578.1.12.4.1.4.1|<id>`), `status=current`, categories
  (Volven 9602), `date=ge<from>`, `_sort=-date`, `_count`. The answer is validated as an
  R4B `Bundle` (fhir.resources); anything else is a failure of that source, never a
  partial list. `date` is when the reference was made, never before the service date, so
  `date=ge<from>` cannot drop a document whose service date is inside the window; the
  policy applies the windows to the service date afterwards.
- ITI-68: `GET` of the attachment URL, streamed (`stream=True`, `iter_content`), only on
  the source's own base URL (the bearer token goes nowhere else), and only when the answer
  has the content type the reference announced (the policy decided on that type).

Every request carries `nhn-access-basis`, `nhn-event-id`, `nhn-source-system` and
`Authorization: Bearer` from the token provider; connect and read timeouts and one retry
of these idempotent reads; a circuit breaker per source answers at once while the source
is known to be down.
"""

from __future__ import annotations

import datetime
import json
import logging
import posixpath
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar
from urllib.parse import urljoin, urlsplit

import requests
from django.conf import settings
from django.utils import timezone
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.documentreference import DocumentReference as FhirDocumentReference
from urllib3.exceptions import ReadTimeoutError

from pjd_portal.documents.sources import base, dpop
from pjd_portal.documents.sources.base import AccessContext, RemoteDocument, Retrieved, SourceError
from pjd_portal.documents.sources.breaker import CircuitBreaker, breaker_for
from pjd_portal.documents.sources.tokens import TokenProvider

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
MAX_PAGES = 10
CHUNK_SIZE = 64 * 1024
FOREIGN_URL = "foreign_url"  # an attachment URL outside the source's base URL


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
        breaker: CircuitBreaker | None = None,
        session: requests.Session | None = None,
    ) -> None:
        self.source_id = source_id
        self.name = name
        self.base_url = base_url.rstrip("/")
        self.token_provider = token_provider
        self.timeout = (connect_timeout, read_timeout)
        self.retries = max(0, retries)
        self.count = count
        self.breaker = breaker
        self.session = session or requests.Session()

    @classmethod
    def from_settings(
        cls, *, source_id: int, name: str, base_url: str, token_provider: TokenProvider
    ) -> MhdSourceClient:
        return cls(
            source_id=source_id,
            name=name,
            base_url=base_url,
            token_provider=token_provider,
            connect_timeout=settings.DOCUMENT_SOURCE_CONNECT_TIMEOUT,
            read_timeout=settings.DOCUMENT_SOURCE_READ_TIMEOUT,
            retries=settings.DOCUMENT_SOURCE_RETRIES,
            count=settings.DOCUMENT_SOURCE_SEARCH_COUNT,
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
    ) -> list[RemoteDocument]:
        params: list[tuple[str, str]] = [
            ("patient.identifier", f"{NATIONAL_ID_SYSTEM}|{patient_national_id}"),
            ("status", "current"),
            ("_sort", "-date"),
            ("_count", str(self.count)),
            # The patients come along, so every document's subject can be checked: a source
            # that ignored the patient parameter must not hand over someone else's documents.
            ("_include", "DocumentReference:subject"),
        ]
        if categories:
            params.append(("category", ",".join(f"{CATEGORY_SYSTEM}|{c}" for c in categories)))
        if date_from is not None:
            params.append(("date", f"ge{date_from.isoformat()}"))
        if date_to is not None:
            params.append(("date", f"le{date_to.isoformat()}"))
        return self._guarded(lambda: self._search(params, access, patient_national_id))

    def _search(
        self, params: list[tuple[str, str]], access: AccessContext, patient_national_id: str
    ) -> list[RemoteDocument]:
        documents: list[RemoteDocument] = []
        response = self._send(
            "POST", f"{self.base_url}/DocumentReference/_search", access, "application/fhir+json", data=params
        )
        for _page in range(MAX_PAGES):
            bundle = self._bundle(response)
            try:
                documents.extend(self._documents(bundle, patient_national_id))
            except SourceError:
                raise
            except Exception as exc:
                raise SourceError(base.MALFORMED_RESPONSE, type(exc).__name__) from exc
            next_url = next((link.url for link in bundle.link or [] if link.relation == "next"), None)
            if not next_url:
                return documents
            if not self._own_url(str(next_url)):
                raise SourceError(base.INCOMPLETE_RESULT, "next link outside the base URL")
            response = self._send("GET", str(next_url), access, "application/fhir+json")
        raise SourceError(base.INCOMPLETE_RESULT, f"more than {MAX_PAGES} pages")

    def _bundle(self, response: requests.Response) -> Bundle:
        with response:
            media_type = _media_type(response)
            if media_type not in FHIR_JSON_TYPES:
                raise SourceError(base.WRONG_CONTENT_TYPE, media_type or "none")
            try:
                body = json.loads(response.content)
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

    def _documents(self, bundle: Bundle, patient_national_id: str) -> list[RemoteDocument]:
        # The included patients (by reference) whose national id is the one asked for.
        ours: set[str] = set()
        for entry in bundle.entry or []:
            resource = entry.resource
            if resource is not None and type(resource).__name__ == "Patient" and resource.id:
                ids = {(i.system, i.value) for i in (getattr(resource, "identifier", None) or [])}
                if (NATIONAL_ID_SYSTEM, patient_national_id) in ids:
                    ours.add(f"Patient/{resource.id}")
        documents = []
        for entry in bundle.entry or []:
            if entry.search is not None and entry.search.mode not in (None, "match"):
                continue  # included resources, OperationOutcome
            resource = entry.resource
            if not isinstance(resource, FhirDocumentReference):
                continue
            if resource.status != "current":
                continue
            if not _is_about(resource, patient_national_id, ours):
                logger.warning(
                    "source %s: a document whose subject is not the patient asked for was dropped", self.name
                )
                continue
            documents.append(self._document(resource))
        return documents

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
            content_type=str(attachment.contentType or "").lower(),
            size=int(attachment.size) if attachment.size is not None else None,
            url=urljoin(f"{self.base_url}/", str(attachment.url)),
        )

    # --- ITI-68 -----------------------------------------------------------------------

    def retrieve(self, document: RemoteDocument, *, access: AccessContext) -> Retrieved:
        if not self._own_url(document.url):
            raise SourceError(FOREIGN_URL, "attachment URL outside the source's base URL")

        def start() -> requests.Response:
            response = self._send("GET", document.url, access, document.content_type or "*/*", stream=True)
            media_type = _media_type(response)
            if media_type != document.content_type:
                response.close()
                raise SourceError(base.WRONG_CONTENT_TYPE, f"{media_type} for {document.content_type}")
            return response

        response = self._guarded(start)
        length = response.headers.get("content-length", "")
        size = int(length) if length.isdigit() else None
        return _media_type(response), size, self._stream(response)

    def _stream(self, response: requests.Response) -> Iterator[bytes]:
        try:
            for chunk in response.iter_content(CHUNK_SIZE):
                if chunk:
                    yield chunk
        except requests.RequestException as exc:
            if self.breaker is not None:
                self.breaker.record_failure()
            raise SourceError(base.TIMEOUT if _timed_out(exc) else base.UNREACHABLE) from exc
        finally:
            response.close()

    # --- HTTP -------------------------------------------------------------------------

    def _own_url(self, url: str) -> bool:
        """Under the source's own base URL, after the client would resolve it: no dot
        segments, no encoded dots or slashes, no doubled slashes."""

        own, other = urlsplit(self.base_url), urlsplit(url)
        path = other.path
        if "%2e" in path.lower() or "%2f" in path.lower() or "//" in path:
            return False
        if posixpath.normpath(path) != path.rstrip("/") and posixpath.normpath(path) + "/" != path:
            return False
        return (other.scheme, other.netloc) == (own.scheme, own.netloc) and path.startswith(f"{own.path}/")

    def _guarded(self, call: Callable[[], T]) -> T:
        """Run one exchange under the breaker: answer at once while it is open."""

        breaker = self.breaker
        if breaker is not None and not breaker.allow():
            raise SourceError(base.BREAKER_OPEN)
        try:
            result = call()
        except SourceError as exc:
            if breaker is not None:
                if exc.reason_code == base.NOT_FOUND:
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

        state = dpop.state_for(self.base_url)
        nonce = response.headers.get("DPoP-Nonce")
        if nonce:
            state.nonce = nonce
        asks = response.status_code == 401 and response.headers.get("WWW-Authenticate", "").startswith("DPoP")
        if asks:
            state.required = True
        return asks

    def _send(
        self,
        method: str,
        url: str,
        access: AccessContext,
        accept: str,
        *,
        data: list[tuple[str, str]] | None = None,
        stream: bool = False,
    ) -> requests.Response:
        """One read, retried once (or `retries` times) on a timeout, a refused or broken
        connection, or a 502/503/504: these reads change nothing at the source."""

        failure = SourceError(base.INTERNAL_ERROR)
        dpop_retry_left = True
        attempt = 0
        while attempt <= self.retries:
            last = attempt == self.retries
            attempt += 1
            headers = self._headers(access, accept, method, url)
            try:
                response = self.session.request(
                    method,
                    url,
                    headers=headers,
                    data=data,
                    timeout=self.timeout,
                    stream=stream,
                    allow_redirects=False,
                )
            except requests.RequestException as exc:
                code = base.TIMEOUT if _timed_out(exc) else base.UNREACHABLE
                if not isinstance(exc, requests.Timeout | requests.ConnectionError):
                    code = base.HTTP_ERROR
                failure = SourceError(code, type(exc).__name__)
                # The path only: a query may carry the patient's national id.
                logger.info("source %s: %s %s failed (%s)", self.name, method, urlsplit(url).path, code)
                continue
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
            response.close()
            if status in (401, 403):
                raise SourceError(base.UNAUTHORIZED, str(status))
            if status in (404, 410):
                raise SourceError(base.NOT_FOUND, str(status))
            raise SourceError(base.HTTP_ERROR, str(status))
        raise failure


def _is_about(resource: FhirDocumentReference, patient_national_id: str, ours: set[str]) -> bool:
    """Is this document about the patient asked for? By the subject's identifier, or by a
    reference to an included Patient with that national id; unverifiable means no."""

    subject = resource.subject
    if subject is None:
        return False
    identifier = getattr(subject, "identifier", None)
    if identifier is not None and identifier.value:
        return bool(identifier.system == NATIONAL_ID_SYSTEM and identifier.value == patient_national_id)
    return bool(subject.reference) and str(subject.reference) in ours
