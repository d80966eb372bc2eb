"""The clinician's document list: the local store's documents and the remote sources'
answers in one list, filtered, sorted and paged together.

Without remote sources the database pages the list. With them, the list is built from the
answers that have arrived (`remote.cached_answer`); a source without one is PENDING and
its rows come through the list's per-source fragment, or, for a browser without
JavaScript, the page is asked again with `wait` and the sources are asked there and
then, together, within the time budget (`remote.answers_for_list`).
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.core.paginator import Page, Paginator

from pjd_portal.access import policy
from pjd_portal.access import selectors as access_selectors
from pjd_portal.access.services import PatientAccess
from pjd_portal.auditlog.events import Detail
from pjd_portal.clinic import remote, selectors
from pjd_portal.clinic.remote import SourceAnswer, SourceListing
from pjd_portal.documents.models import DocumentCategory, DocumentReference
from pjd_portal.documents.sources.base import RemoteDocument


@dataclass
class ListRow:
    """One row of the merged list, from the local store or from a remote source."""

    service_date: datetime.date
    category: str
    category_label: str
    type_name: str
    title: str
    institution_name: str
    department: str
    author: str
    source_id: int
    document_id: str

    def get_category_display(self) -> str:
        return self.category_label


SORT_KEYS = {
    "date": "service_date",
    "category": "category",
    "type": "type_name",
    "title": "title",
    "institution": "institution_name",
    "author": "author",
}


def merged_rows(
    local: list[DocumentReference], remote_documents: list[RemoteDocument], *, category: str, sort: str
) -> list[ListRow]:
    """The local store's listable documents and the remote sources' in one list, filtered
    and sorted as the clinician asked (the list's paging then applies to all of them)."""

    labels = dict(DocumentCategory.choices)

    def row(d: DocumentReference | RemoteDocument) -> ListRow:
        return ListRow(
            service_date=d.service_date,
            category=d.category,
            category_label=str(labels.get(d.category, d.category)),
            type_name=d.type_name,
            title=d.title,
            institution_name=d.institution_name,
            department=d.department,
            author=d.author,
            source_id=d.source_id,
            document_id=str(d.document_id),
        )

    rows = [row(d) for d in local]
    rows += [row(d) for d in remote_documents if not category or d.category == category]
    key = SORT_KEYS[sort.lstrip("-")]
    rows.sort(key=lambda r: (getattr(r, key), r.service_date, r.document_id), reverse=sort.startswith("-"))
    return rows


@dataclass
class ListPage:
    page: Page[Any]
    params: selectors.ListParams
    hidden_count: int
    # The remote sources whose lists this clinician may see, by name, with their answers.
    sources: list[SourceListing]
    remote_source_ids: frozenset[int]
    openable_source_ids: frozenset[int]

    @property
    def pending(self) -> list[SourceListing]:
        return [s for s in self.sources if s.pending]

    def event_details(self) -> dict[str, Detail]:
        """What the list event records: the page as shown, and each source's state."""

        rows = list(self.page.object_list)
        return {
            "page": self.page.number,
            "sort": self.params.sort,
            "category": self.params.category,
            "shown": len(rows),
            "document_ids": [str(d.document_id) for d in rows],
            "remote_document_ids": [
                f"{d.source_id}/{d.document_id}" for d in rows if d.source_id in self.remote_source_ids
            ],
            "sources_not_answering": [s.source_id for s in self.sources if s.failed],
            "sources_pending": [s.source_id for s in self.pending],
            "sources_incomplete": [s.source_id for s in self.sources if s.incomplete or s.ceiling],
        }


def list_page(
    access: PatientAccess,
    params: selectors.ListParams,
    *,
    today: datetime.date,
    wait: bool,
    record: Callable[[list[SourceAnswer]], None],
) -> ListPage:
    """The page of the list the clinician asked for, from the sources' kept answers; a
    source without one is PENDING (its fragment brings it). `wait`: ask those sources now
    (the page for a browser without JavaScript); what is asked goes to `record` (its
    events, then kept)."""

    rules = access_selectors.source_rules()
    listable = policy.listable_source_ids(access.clinician, rules)
    openable = policy.openable_source_ids(access.clinician, rules)
    remote_sources = remote.remote_sources()
    # Remote sources are asked at the source; the local store holds only the others.
    local_ids = listable - frozenset(remote_sources)
    patient_id = access.patient.pk
    hidden = selectors.hidden_document_count(patient_id, today, local_ids)
    page: Page[Any]
    if not remote_sources:
        page = selectors.document_page(patient_id, today, local_ids, params)
        return ListPage(page, params, hidden, [], frozenset(), openable)

    listed = remote.listed_sources(remote_sources, listable)
    # Without a working cache no fragment's answer could reach the list: ask here.
    if wait or (listed and not remote.cache_works()):
        answers = remote.answers_for_list(access, listed, record=record)
    else:
        answers = {s.pk: a for s in listed if (a := remote.cached_answer(access, s.pk)) is not None}
    sources = [remote.source_listing(answers.get(s.pk), s, today, patient_id) for s in listed]
    rows = merged_rows(
        list(selectors.listable_documents(patient_id, today, local_ids, params.category)),
        [d for s in sources for d in s.documents],
        category=params.category,
        sort=params.sort,
    )
    page = Paginator(rows, params.page_size).get_page(params.page)
    hidden += sum(s.blocked for s in sources)
    return ListPage(page, params, hidden, sources, frozenset(remote_sources), openable)
