"""The document source interface: the local store and remote (IHE MHD) sources alike.

A source client searches one source for a patient's document references and retrieves
one document's bytes. It decides nothing about access: `RemoteDocument.facts()` gives the
policy module what it needs (`policy.may_open_document`), and the views act on the answer.
A source that fails raises `SourceError` with a reason code; `merge.search_sources` turns
that into a failure entry so the other sources' documents still show.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from pjd_portal.documents.facts import DocumentFacts


class SourceError(Exception):
    """A source did not answer usably. `reason_code` is for logs and the failure list."""

    def __init__(self, reason_code: str, detail: str = "") -> None:
        super().__init__(f"{reason_code}: {detail}" if detail else reason_code)
        self.reason_code = reason_code
        self.detail = detail


# Reason codes a source failure carries (SourceError.reason_code, SourceFailure.reason_code).
TIMEOUT = "timeout"  # connect or read timeout, after the retry
UNREACHABLE = "unreachable"  # connection refused, DNS, reset
BREAKER_OPEN = "breaker_open"  # known to be down: not asked
HTTP_ERROR = "http_error"  # 4xx/5xx
UNAUTHORIZED = "unauthorized"  # 401/403 from the source
# No access token from the identity provider (a reason code, no secret).
TOKEN_UNAVAILABLE = "token_unavailable"  # noqa: S105
WRONG_CONTENT_TYPE = "wrong_content_type"  # not FHIR JSON, or not the document's type
MALFORMED_RESPONSE = "malformed_response"  # not JSON, or not a valid FHIR Bundle
INCOMPLETE_RESULT = "incomplete_result"  # more pages than the portal follows
# The source answered, and refused this search (a 4xx, usually with an OperationOutcome:
# a parameter it does not support). Not a sign that it is down: no breaker failure.
SEARCH_REFUSED = "search_refused"
TOO_LARGE = "too_large"  # an answer bigger than the portal reads
BUDGET_EXCEEDED = "budget_exceeded"  # did not answer within the overall search budget
NOT_FOUND = "not_found"
INTERNAL_ERROR = "internal_error"  # a bug on our side; logged with its traceback


@dataclass(frozen=True)
class AccessContext:
    """Why and as part of what this request is made; sent to remote sources as NHN's API
    expects (`nhn-access-basis`, `nhn-event-id`, `nhn-source-system`)."""

    basis: str  # access.models.Basis value stated in the attest
    event_id: str  # one id per user action; the audit event's id for an open
    source_system: str = "pjd-portal"


@dataclass(frozen=True)
class RemoteDocument:
    """One document reference as a source describes it: what the list shows and what the
    policy decides on. `document_id` is the source's own id (the FHIR logical id for MHD,
    the local `document_id` for the local store)."""

    source_id: int
    source_name: str
    document_id: str
    category: str  # Volven 9602, "A00-1" ...
    type_code: str
    type_name: str
    title: str
    service_date: datetime.date
    author: str
    institution_name: str
    institution_orgnr: str
    confidentiality_code: str  # Volven 9603 / HL7: "N", "R", "V", "NORS" ...
    content_type: str
    size: int | None
    url: str  # the attachment URL (ITI-68); empty for the local store
    department: str = ""  # the clinical unit, where the source names one

    def facts(self, patient_id: int) -> DocumentFacts:
        """What `policy.may_open_document` decides on. `patient_id` is the portal's own
        patient the search was made for (the source was asked by that patient's id)."""

        return DocumentFacts(
            category=self.category,
            service_date=self.service_date,
            confidentiality_code=self.confidentiality_code,
            patient_id=patient_id,
            source_id=self.source_id,
            content_type=self.content_type,
        )


# Why a source's answer holds fewer documents than the source has (SearchResult.incomplete).
SHORT_ANSWER = "short_answer"  # Bundle.total says more, and there is no next page
NEXT_OUTSIDE = "next_outside"  # the next page's link leaves the source: not followed
PAGING_STALLED = "paging_stalled"  # a next page with nothing on it, or a link seen before
PAGING_TIMED_OUT = "paging_timed_out"  # a later page did not come, or not within the budget


@dataclass(frozen=True)
class SearchResult:
    """One source's answer to a search: its documents (newest first, no duplicates) and
    what the list must say about the ones that are not there."""

    documents: list[RemoteDocument]
    # Bundle.total as the source reported it (None when it did not say).
    total: int | None = None
    # Distinct matching document references received (before any was left out).
    received: int = 0
    # The reading stopped at this many documents, the newest, though the source has more.
    ceiling: int | None = None
    # Why fewer arrived than the source has ("" when nothing is known to be missing).
    incomplete: str = ""
    # Documents whose subject could not be tied to the patient asked for: never shown,
    # counted so the list can say so.
    unverified: int = 0

    @property
    def missing(self) -> int | None:
        """How many documents the source has that did not arrive: 0 when none are known
        to be missing, None when some are but the source did not say how many."""

        if not self.incomplete:
            return 0
        if self.total is None or self.total <= self.received:
            return None
        return self.total - self.received


Retrieved = tuple[str, int | None, Iterator[bytes]]


@runtime_checkable
class DocumentSourceClient(Protocol):
    source_id: int
    name: str
    # True for clients that must run in the request's own thread (the local store uses
    # the request's database connection); remote clients run in a thread pool.
    in_request_thread: bool

    def search(
        self,
        patient_national_id: str,
        *,
        access: AccessContext,
        categories: Sequence[str] = (),
        date_from: datetime.date | None = None,
        document_id: str = "",
        deadline: float | None = None,
    ) -> SearchResult:
        """The patient's current documents at this source, newest first (only the one
        with `document_id` when given; no page asked for after `deadline`, a
        time.monotonic() value). Raises SourceError."""
        ...

    def retrieve(self, document: RemoteDocument, *, access: AccessContext) -> Retrieved:
        """(content type, size or None, the bytes in chunks). Raises SourceError before the
        first chunk; the iterator may raise SourceError mid-stream. Close it when done."""
        ...
