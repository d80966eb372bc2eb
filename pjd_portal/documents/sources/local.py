"""The portal's own document store behind the source interface (what the demo uses)."""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Sequence

from pjd_portal.documents import rendering
from pjd_portal.documents.models import DocumentContent, DocumentReference, DocumentSource
from pjd_portal.documents.sources.base import (
    NOT_FOUND,
    AccessContext,
    RemoteDocument,
    Retrieved,
    SearchResult,
    SourceError,
)


class LocalSourceClient:
    # Uses the request's database connection (and, in tests, its transaction).
    in_request_thread = True

    def __init__(self, source: DocumentSource) -> None:
        self.source_id = source.pk
        self.name = source.name
        self._source = source

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
        qs = DocumentReference.objects.filter(
            source_id=self.source_id, patient__national_id=patient_national_id
        )
        if document_id:
            try:
                qs = qs.filter(document_id=uuid.UUID(document_id))
            except ValueError:  # not an id of this store
                return SearchResult([])
        if categories:
            qs = qs.filter(category__in=list(categories))
        if date_from is not None:
            qs = qs.filter(service_date__gte=date_from)
        documents = [self._document(d) for d in qs.order_by("-service_date", "-id")]
        return SearchResult(documents, total=len(documents), received=len(documents))

    def _document(self, d: DocumentReference) -> RemoteDocument:
        return RemoteDocument(
            source_id=self.source_id,
            source_name=self.name,
            document_id=str(d.document_id),
            category=d.category,
            type_code=d.type_code,
            type_name=d.type_name,
            title=d.title,
            service_date=d.service_date,
            author=d.author,
            institution_name=d.institution_name,
            institution_orgnr=d.institution_orgnr,
            confidentiality_code=d.confidentiality_code,
            content_type=d.content_type,
            size=d.size,
            url="",
            department=d.department,
        )

    def retrieve(self, document: RemoteDocument, *, access: AccessContext) -> Retrieved:
        content = (
            DocumentContent.objects.filter(
                document__document_id=document.document_id, document__source_id=self.source_id
            )
            .only("data")
            .first()
        )
        if content is None:
            raise SourceError(NOT_FOUND)
        data = bytes(content.data)
        return document.content_type, len(data), rendering.chunked(data)
