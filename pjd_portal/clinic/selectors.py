"""Reads for the document list: one query for the page, one for the count, one for hidden."""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from django.core.paginator import Page, Paginator
from django.db.models import QuerySet

from pjd_portal.access import policy
from pjd_portal.documents.models import DocumentCategory, DocumentReference

SORT_FIELDS = {
    "date": "service_date",
    "title": "title",
    "category": "category",
    "type": "type_name",
    "institution": "institution_name",
    "author": "author",
}
DEFAULT_SORT = "-date"

LIST_COLUMNS = (
    "document_id",
    "source_id",
    "category",
    "type_name",
    "title",
    "service_date",
    "author",
    "institution_name",
    "department",
    "content_type",
    "size",
)


@dataclass(frozen=True)
class ListParams:
    sort: str
    category: str
    page: int
    page_size: int


def parse_list_params(query: dict[str, str], *, page_sizes: list[int], default_size: int) -> ListParams:
    """Unknown or malformed parameters fall back to defaults rather than erroring."""

    sort = query.get("sort", DEFAULT_SORT)
    if sort.lstrip("-") not in SORT_FIELDS:
        sort = DEFAULT_SORT
    category = query.get("category", "")
    if category not in DocumentCategory.values:
        category = ""
    try:
        page = max(1, int(query.get("page", "1")))
    except ValueError:
        page = 1
    try:
        size = int(query.get("size", str(default_size)))
    except ValueError:
        size = default_size
    if size not in page_sizes:
        size = default_size
    return ListParams(sort=sort, category=category, page=page, page_size=size)


def listable_documents(
    patient_id: int, today: datetime.date, source_ids: frozenset[int], category: str = ""
) -> QuerySet[DocumentReference]:
    qs = DocumentReference.objects.filter(
        policy.listable_documents_q(today, source_ids), patient_id=patient_id
    )
    if category:
        qs = qs.filter(category=category)
    return qs


def document_page(
    patient_id: int, today: datetime.date, source_ids: frozenset[int], params: ListParams
) -> Page[DocumentReference]:
    field = SORT_FIELDS[params.sort.lstrip("-")]
    desc = params.sort.startswith("-")
    order = [f"-{field}" if desc else field, "-id" if desc else "id"]
    qs = (
        listable_documents(patient_id, today, source_ids, params.category)
        .only(*LIST_COLUMNS)
        .order_by(*order)
    )
    paginator = Paginator(qs, params.page_size)
    return paginator.get_page(params.page)


def hidden_document_count(patient_id: int, today: datetime.date, source_ids: frozenset[int]) -> int:
    return DocumentReference.objects.filter(
        policy.hidden_documents_q(today, source_ids), patient_id=patient_id
    ).count()
