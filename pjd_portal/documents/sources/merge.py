"""One document list from several sources: searched concurrently within an overall time
budget. A source that fails, times out or is known to be down becomes a failure entry
(source name and reason code; the UI words it, e.g. "Helse Vest svarer ikke akkurat nå")
while the other sources' documents are returned."""

from __future__ import annotations

import concurrent.futures
import datetime
import functools
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from django.conf import settings
from django.db import connections

from pjd_portal.documents.sources.base import (
    BUDGET_EXCEEDED,
    INTERNAL_ERROR,
    AccessContext,
    DocumentSourceClient,
    RemoteDocument,
    SearchResult,
    SourceError,
)

logger = logging.getLogger(__name__)
PAGING_SHARE = 0.85  # of the budget, for pages; the rest for the last page in flight


@dataclass(frozen=True)
class SourceFailure:
    source_id: int
    source_name: str
    reason_code: str


@dataclass(frozen=True)
class MergedSearch:
    documents: list[RemoteDocument]  # newest service date first
    failures: list[SourceFailure]
    elapsed_seconds: float
    # Each answering source's own result, by source id: what it said is missing.
    results: dict[int, SearchResult] = field(default_factory=dict)


def _search_one(
    client: DocumentSourceClient,
    patient_national_id: str,
    *,
    access: AccessContext,
    categories: Sequence[str],
    date_from: datetime.date | None,
    document_id: str = "",
    deadline: float | None = None,
) -> SearchResult | SourceFailure:
    try:
        return client.search(
            patient_national_id,
            access=access,
            categories=categories,
            date_from=date_from,
            document_id=document_id,
            deadline=deadline,
        )
    except SourceError as exc:
        logger.warning("document source %s failed: %s", client.name, exc.reason_code)
        return SourceFailure(client.source_id, client.name, exc.reason_code)
    except Exception:  # a bug must cost one source, not the page
        logger.exception("document source %s: unexpected error", client.name)
        return SourceFailure(client.source_id, client.name, INTERNAL_ERROR)


def _in_pool(
    search: functools.partial[SearchResult | SourceFailure], client: DocumentSourceClient, deadline: float
) -> SearchResult | SourceFailure:
    """One source's search in a pool thread. The thread's own database connections (the
    breaker and DPoP state on the database cache, where there is no Redis) are closed when
    it is done, not left for a thread that ends."""

    try:
        return search(client, deadline=deadline)
    finally:
        connections.close_all()


def search_sources(
    clients: Sequence[DocumentSourceClient],
    patient_national_id: str,
    *,
    access: AccessContext,
    categories: Sequence[str] = (),
    date_from: datetime.date | None = None,
    document_id: str = "",
    budget_seconds: float | None = None,
) -> MergedSearch:
    """Ask every source; wait at most `budget_seconds` (setting by default) for remote ones.

    Remote sources run in a thread pool; one still running when the budget is spent is a
    failure (`budget_exceeded`) and its thread ends on its own timeouts. Sources marked
    `in_request_thread` (the local store) run in the caller's thread, meanwhile.
    """

    budget = settings.DOCUMENT_SOURCE_SEARCH_BUDGET if budget_seconds is None else budget_seconds
    started = time.monotonic()
    # A source that pages stops asking for pages a little before the budget is spent, so
    # that what it has read is collected here rather than thrown away as a failure.
    deadline = started + budget * PAGING_SHARE
    results: dict[int, SearchResult | SourceFailure] = {}
    remote = [(i, c) for i, c in enumerate(clients) if not c.in_request_thread]
    pool = concurrent.futures.ThreadPoolExecutor(
        max_workers=max(1, len(remote)), thread_name_prefix="document-source"
    )
    try:
        search = functools.partial(
            _search_one,
            patient_national_id=patient_national_id,
            access=access,
            categories=categories,
            date_from=date_from,
            document_id=document_id,
        )
        futures = {pool.submit(_in_pool, search, c, deadline): i for i, c in remote}
        for i, client in enumerate(clients):
            if client.in_request_thread:
                results[i] = search(client)
        remaining = max(0.0, budget - (time.monotonic() - started))
        done, _pending = concurrent.futures.wait(futures, timeout=remaining)
        for future, i in futures.items():
            if future in done:
                results[i] = future.result()
            else:
                client = clients[i]
                logger.warning("document source %s did not answer within %.1f s", client.name, budget)
                results[i] = SourceFailure(client.source_id, client.name, BUDGET_EXCEEDED)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)

    documents: list[RemoteDocument] = []
    failures: list[SourceFailure] = []
    answered: dict[int, SearchResult] = {}
    for i, client in enumerate(clients):
        result = results[i]
        if isinstance(result, SourceFailure):
            failures.append(result)
        else:
            documents.extend(result.documents)
            answered[client.source_id] = result
    documents.sort(key=lambda d: (d.service_date, d.source_id, d.document_id), reverse=True)
    return MergedSearch(documents, failures, time.monotonic() - started, answered)
