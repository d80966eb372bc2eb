"""Documents from remote IHE MHD sources in the clinician's list and document view.

A `DocumentSource` whose organisation number is configured in `PJD_MHD_SOURCES` is
remote: its documents are asked for at the source on every list (never stored here), and
an open fetches the source's current description of the document before the policy
decides, then the bytes after the access event is committed. The same policy functions
decide as for the local store; a source that fails or is slow shows as "… svarer ikke
akkurat nå" while the other sources' documents show.
"""

from __future__ import annotations

import datetime
import logging
import uuid
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from pjd_portal.access import policy
from pjd_portal.access.services import PatientAccess
from pjd_portal.documents.models import DocumentSource
from pjd_portal.documents.sources import client_for, merge
from pjd_portal.documents.sources.base import (
    AccessContext,
    DocumentSourceClient,
    RemoteDocument,
)

__all__ = [
    "access_context",
    "client_for",
    "listing",
    "merge",
    "remote_sources",
]

logger = logging.getLogger(__name__)


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


@dataclass
class RemoteListing:
    documents: list[RemoteDocument] = field(default_factory=list)
    hidden_count: int = 0
    failures: list[merge.SourceFailure] = field(default_factory=list)
    elapsed_seconds: float = 0.0


def listing(
    access: PatientAccess,
    listable_source_ids: frozenset[int],
    remote: dict[int, DocumentSource],
    today: datetime.date,
) -> RemoteListing:
    """The remote sources' documents this clinician may see in the list: the sources that
    list to them, then per document the same rules as the local list (window, blocked,
    format), decided by the policy."""

    clients: list[DocumentSourceClient] = [
        client_for(s) for pk, s in remote.items() if pk in listable_source_ids
    ]
    if not clients:
        return RemoteListing()
    found = merge.search_sources(clients, access.patient.national_id, access=access_context(access))
    result = RemoteListing(failures=list(found.failures), elapsed_seconds=found.elapsed_seconds)
    for document in found.documents:
        facts = document.facts(access.patient.pk)
        if policy.document_listable(facts, today):
            result.documents.append(document)
        elif policy.document_counted_as_blocked(facts, today):
            result.hidden_count += 1
    return result


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
    open_url: str = ""

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
    local: list[Any], remote_documents: list[RemoteDocument], *, category: str, sort: str
) -> list[ListRow]:
    """The local store's listable documents and the remote sources' in one list, filtered
    and sorted as the clinician asked (the list's paging then applies to all of them)."""

    from pjd_portal.documents.models import DocumentCategory  # noqa: PLC0415 - model import

    labels = dict(DocumentCategory.choices)
    rows = [
        ListRow(
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
        for d in local
    ]
    rows += [
        ListRow(
            service_date=d.service_date,
            category=d.category,
            category_label=str(labels.get(d.category, d.category)),
            type_name=d.type_name,
            title=d.title,
            institution_name=d.institution_name,
            department=d.source_name,
            author=d.author,
            source_id=d.source_id,
            document_id=d.document_id,
        )
        for d in remote_documents
        if not category or d.category == category
    ]
    key = SORT_KEYS[sort.lstrip("-")]
    rows.sort(key=lambda r: (getattr(r, key), r.service_date, r.document_id), reverse=sort.startswith("-"))
    return rows
