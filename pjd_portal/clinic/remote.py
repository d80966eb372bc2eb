"""Documents from remote IHE MHD sources in the clinician's list and document view.

A `DocumentSource` whose organisation number is configured in `PJD_MHD_SOURCES` is
remote: its documents are asked for at the source (never stored in the database), and an
open fetches the source's current description of the document before the policy decides,
then the bytes after the access event is committed. The same policy functions decide as
for the local store.

The list never waits on the slowest source: each source is asked on its own request (the
list's per-source fragment, `answers_for_list`), and its answer is kept for a short while,
once its access event is committed (`keep`), for this clinician's list of this patient
under this attest (`cached_answer`), so that sorting, filtering and paging merge the answers
that have arrived without asking the sources again. One request at a time asks a source
for a list (`_claim`); the others wait for its answer. The cache is shared by every
instance when `PJD_CACHE_URL` names a Redis. A source that fails, refuses the search or
sends fewer documents than it has is said so on the list, by source (`SourceListing`).
"""

from __future__ import annotations

import datetime
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from django.conf import settings
from django.core.cache import cache

from pjd_portal.access import policy
from pjd_portal.access.services import PatientAccess
from pjd_portal.auditlog.events import Detail
from pjd_portal.documents.models import DocumentSource
from pjd_portal.documents.sources import client_for, merge
from pjd_portal.documents.sources.base import (
    BUDGET_EXCEEDED,
    INTERNAL_ERROR,
    NEXT_OUTSIDE,
    PAGING_TIMED_OUT,
    SEARCH_REFUSED,
    SHORT_ANSWER,
    AccessContext,
    RemoteDocument,
    SearchResult,
)

__all__ = [
    "SourceAnswer",
    "SourceListing",
    "access_context",
    "answers_for_list",
    "ask_sources",
    "cache_works",
    "cached_answer",
    "keep",
    "listed_sources",
    "listing_of",
    "nested_counts",
    "release",
    "remote_sources",
    "source_listing",
]

logger = logging.getLogger(__name__)
T = TypeVar("T")


def remote_sources() -> dict[int, DocumentSource]:
    """The sources configured as remote (one query; none when nothing is configured)."""

    if not settings.MHD_SOURCES:
        return {}
    return {
        s.pk: s
        for s in DocumentSource.objects.select_related("organisation").filter(
            organisation__orgnr__in=list(settings.MHD_SOURCES)
        )
    }


def access_context(access: PatientAccess, event_id: str | None = None) -> AccessContext:
    """What the source is told about this access (NHN: nhn-access-basis, nhn-event-id)."""

    basis = access.attest.basis if access.attest is not None else ""
    return AccessContext(
        basis=basis, event_id=event_id or str(uuid.uuid4()), source_system=settings.DOCUMENT_SOURCE_SYSTEM
    )


@dataclass(frozen=True)
class SourceAnswer:
    """What one source answered to one search for the list: its result, or why none."""

    source_id: int
    source_name: str
    result: SearchResult | None
    failure: str = ""  # a sources.base reason code when there is no result
    nhn_event_id: str = ""  # the id the source was given (nhn-event-id), for its log
    source_orgnr: str = ""  # the source's organisation, for the access event


def listed_sources(remote: dict[int, DocumentSource], listable: frozenset[int]) -> list[DocumentSource]:
    """The remote sources whose lists this clinician may see (`policy.listable_source_ids`),
    by name: the ones the list asks."""

    return sorted((s for pk, s in remote.items() if pk in listable), key=lambda s: s.name)


def _key(access: PatientAccess, source_id: int, kind: str) -> str:
    # Bound to the lookup (one clinician, one patient) and to the attest: a new basis asks
    # the sources again, and nobody else's list can ever read this answer.
    attest = access.attest.pk if access.attest is not None else 0
    return f"pjd:source-{kind}:{access.lookup.handle}:{attest}:{source_id}"


_cache_down_until = 0.0  # time.monotonic(): after a failure the cache is left alone a while
CACHE_REST_SECONDS = 10.0


def _cached(call: Callable[[], T], fallback: T) -> T:
    """A cache call that cannot break the list: a cache that does not answer is a cache
    without the entry (and `cache_works` makes the list ask its sources itself). After a
    failure the cache is not tried for a few seconds, so that a cache that hangs costs one
    timeout, not one per call."""

    global _cache_down_until  # noqa: PLW0603 - one flag per process, as the cache client is
    if time.monotonic() < _cache_down_until:
        return fallback
    try:
        return call()
    except Exception as exc:  # noqa: BLE001 - whatever the backend raises; logged, never a 500
        logger.warning("cache unavailable: %s", type(exc).__name__)
        _cache_down_until = time.monotonic() + CACHE_REST_SECONDS
        return fallback


def cache_works() -> bool:
    """Can the cache keep an answer now? Written and read back: a cache that reads but
    cannot write (a replica after a failover, a full one) keeps nothing, and the list must
    then ask its sources itself rather than wait for answers that are never kept."""

    probe = f"source-probe:{uuid.uuid4().hex}"

    def round_trip() -> bool:
        cache.set(probe, True, 5)
        kept = bool(cache.get(probe))
        cache.delete(probe)
        return kept

    return _cached(round_trip, False)


def cached_answer(access: PatientAccess, source_id: int) -> SourceAnswer | None:
    answer = _cached(lambda: cache.get(_key(access, source_id, "answer")), None)
    return answer if isinstance(answer, SourceAnswer) else None


def keep(access: PatientAccess, answer: SourceAnswer, *, own_claim: bool = True) -> None:
    """Keep an answer for the list, once its access event is committed (never before: an
    answer whose contact is not in the log must not be shown). `own_claim`: this request
    asked the source, and lets its claim go."""

    seconds = (
        settings.DOCUMENT_SOURCE_ANSWER_SECONDS
        if answer.result is not None
        else settings.DOCUMENT_SOURCE_FAILURE_SECONDS
    )
    _cached(lambda: cache.set(_key(access, answer.source_id, "answer"), answer, seconds), None)
    if own_claim:
        release(access, answer.source_id)


def release(access: PatientAccess, source_id: int) -> None:
    """This request no longer asks the source (its answer is kept, or was not logged)."""

    _cached(lambda: cache.delete(_key(access, source_id, "asking")), None)


def _claim(access: PatientAccess, source_id: int) -> bool:
    """Become the one request asking this source for this list (atomic), so that a reload,
    a second tab or a list shown again while the source answers never asks it twice. The
    claim lapses after the time a source may take, should its request die."""

    seconds = int(settings.DOCUMENT_SOURCE_SEARCH_BUDGET) + 5
    return bool(_cached(lambda: cache.add(_key(access, source_id, "asking"), True, seconds), True))


def ask_sources(access: PatientAccess, sources: Sequence[DocumentSource]) -> list[SourceAnswer]:
    """Ask these sources now, together, within the time budget (nothing is kept: see
    `keep`). The policy has let this clinician see the patient's documents and these
    sources' lists; the sources decide nothing."""

    if not sources:
        return []
    context = access_context(access)
    found = merge.search_sources([client_for(s) for s in sources], access.patient.national_id, access=context)
    failures = {f.source_id: f.reason_code for f in found.failures}
    answers = []
    for source in sources:
        result = found.results.get(source.pk)
        answers.append(
            SourceAnswer(
                source_id=source.pk,
                source_name=source.name,
                result=result,
                failure="" if result is not None else failures.get(source.pk, INTERNAL_ERROR),
                nhn_event_id=context.event_id,
                source_orgnr=source.organisation.orgnr,
            )
        )
    return answers


def answers_for_list(
    access: PatientAccess,
    sources: Sequence[DocumentSource],
    *,
    record: Callable[[list[SourceAnswer]], None],
) -> dict[int, SourceAnswer]:
    """Every source's answer for this list: the one kept; or, while another request is
    asking that source, the one it gets (waited for); else asked now. What this request
    asks goes to `record` (which writes its events, then keeps it) at once, before any
    waiting. One deadline, the time budget, bounds the whole: a source whose answer has not
    come by then is a failure on this page (`budget_exceeded`), asked by nobody twice."""

    deadline = time.monotonic() + settings.DOCUMENT_SOURCE_SEARCH_BUDGET
    answers: dict[int, SourceAnswer] = {}
    waiting: list[DocumentSource] = []
    to_ask: list[DocumentSource] = []
    for source in sources:
        kept = cached_answer(access, source.pk)
        if kept is not None:
            answers[source.pk] = kept
        elif _claim(access, source.pk):
            to_ask.append(source)
        else:
            waiting.append(source)
    while True:
        if to_ask:
            asked = ask_sources(access, to_ask)
            record(asked)
            answers.update((a.source_id, a) for a in asked)
            to_ask = []
        if not waiting or time.monotonic() >= deadline:
            break
        time.sleep(WAIT_STEP_SECONDS)
        for source in list(waiting):
            kept = cached_answer(access, source.pk)
            if kept is not None:
                answers[source.pk] = kept
                waiting.remove(source)
            elif _claim(access, source.pk):  # the one asking gave up (or died): ask now
                waiting.remove(source)
                to_ask.append(source)
    for source in waiting:
        # The request asking it never kept an answer within the budget (and nothing was
        # asked here): a failure on this page, kept briefly so that the list says so rather
        # than show the source as on its way again. Its claim is left to lapse.
        failure = SourceAnswer(source.pk, source.name, None, BUDGET_EXCEEDED)
        answers[source.pk] = failure
        keep(access, failure, own_claim=False)
    return answers


WAIT_STEP_SECONDS = 0.1


@dataclass
class SourceListing:
    """One remote source's part of the clinician's list, after the policy: the documents
    it may show, the blocked ones counted, and what the list must say about the rest."""

    source_id: int
    source_name: str
    state: str  # ANSWERED, FAILED, PENDING
    documents: list[RemoteDocument] = field(default_factory=list)
    blocked: int = 0
    failure: str = ""
    ceiling: int | None = None
    total: int | None = None
    received: int = 0
    incomplete: str = ""
    missing: int | None = 0
    unverified: int = 0
    # The documents of the answer not shown, by `policy.not_shown_q` key (counts only).
    not_shown: dict[str, int] = field(default_factory=dict)

    def event_details(self) -> dict[str, Detail]:
        """What the fragment's list event records of this source's answer (counts, never
        the documents' content)."""

        return {
            "source_id": self.source_id,
            "source_answer": self.failure or self.state,
            "listed": len(self.documents),
            "blocked": self.blocked,
            "received": self.received,
            "total": self.total,
            "ceiling": self.ceiling,
            "incomplete": self.incomplete,
            "missing": self.missing,
            "unverified": self.unverified,
            "not_shown": nested_counts(self.not_shown),
        }

    # What the template asks, so that it never compares codes itself.
    @property
    def pending(self) -> bool:
        return self.state == PENDING

    @property
    def failed(self) -> bool:
        return self.state == FAILED

    @property
    def refused(self) -> bool:
        """The source answered and refused the search ("kunne ikke svare på søket")."""

        return self.failure == SEARCH_REFUSED

    @property
    def timed_out(self) -> bool:
        """A later page did not come, or not within the time budget."""

        return self.incomplete == PAGING_TIMED_OUT

    @property
    def short_answer(self) -> bool:
        """It reported more than it sent, with no next page."""

        return self.incomplete == SHORT_ANSWER

    @property
    def left_source(self) -> bool:
        """Its next page was at an address outside itself (not followed)."""

        return self.incomplete == NEXT_OUTSIDE


ANSWERED, FAILED, PENDING = "answered", "failed", "pending"


def nested_counts(counts: dict[str, int]) -> dict[str, Detail]:
    """Counts keyed as `policy.not_shown_q` keys them ("outside_window:<category>") as the
    event records them: {"outside_window": {category: n}, "blocked": n, ...}, nonzero only."""

    nested: dict[str, Detail] = {}
    window: dict[str, Detail] = {}
    for key, count in counts.items():
        if not count:
            continue
        reason, _, category = key.partition(":")
        if reason == policy.NOT_SHOWN_WINDOW:
            window[category] = count
        else:
            nested[reason] = count
    if window:
        nested[policy.NOT_SHOWN_WINDOW] = window
    return nested


def source_listing(
    answer: SourceAnswer | None, source: DocumentSource, today: datetime.date, patient_id: int
) -> SourceListing:
    """The source's part of the list: PENDING without an answer, else `listing_of`."""

    if answer is None:
        return SourceListing(source.pk, source.name, PENDING)
    return listing_of(answer, today, patient_id)


def listing_of(answer: SourceAnswer, today: datetime.date, patient_id: int) -> SourceListing:
    """The answer as the list shows it: per document the same rules as the local list
    (window, blocked, format), decided by the policy."""

    if answer.result is None:
        return SourceListing(answer.source_id, answer.source_name, FAILED, failure=answer.failure)
    result = answer.result
    listing = SourceListing(
        answer.source_id,
        answer.source_name,
        ANSWERED,
        ceiling=result.ceiling,
        total=result.total,
        received=result.received,
        incomplete=result.incomplete,
        missing=result.missing,
        unverified=result.unverified,
    )
    for document in result.documents:
        facts = document.facts(patient_id)
        reason = policy.not_shown_reason(facts, today)
        if not reason:
            listing.documents.append(document)
            continue
        if reason == policy.NOT_SHOWN_BLOCKED:
            listing.blocked += 1
        key = f"{reason}:{facts.category}" if reason == policy.NOT_SHOWN_WINDOW else reason
        listing.not_shown[key] = listing.not_shown.get(key, 0) + 1
    return listing
