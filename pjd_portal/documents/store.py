"""Reading a document's bytes from the portal's own store without holding them whole.

The open reads the reference and the first `STORE_READ_BYTES` of its content in the one
query that finds it (`with_content_head`); a larger document's rest is read a slice at a
time while the answer streams (`content_chunks`), so a 25 MB PDF never sits in memory and a
200 KB one costs no query of its own. Nothing read here leaves before the open's event is
committed: the caller streams only after that (clinic/opening.py).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any, cast
from uuid import UUID

from django.db import connection
from django.db.models import BinaryField, F, Func, IntegerField, QuerySet, Value

from pjd_portal.documents.models import DocumentContent, DocumentReference
from pjd_portal.documents.rendering import chunked
from pjd_portal.lib.compiled import compiled, prepared, with_values

STORE_READ_BYTES = 1024 * 1024


class _Length(Func):
    # length() counts bytes of a bytea (PostgreSQL) and of a blob (SQLite).
    function = "LENGTH"
    output_field = IntegerField()


class _Slice(Func):
    # substr/substring on bytes, 1-based, on both databases.
    function = "SUBSTR"
    output_field = BinaryField()

    def as_postgresql(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        return super().as_sql(compiler, connection, function="SUBSTRING", **extra)


def with_content_head(documents: QuerySet[DocumentReference]) -> QuerySet[DocumentReference]:
    """These references with their content's size and first STORE_READ_BYTES (both None
    when the content is missing)."""

    return documents.annotate(
        pjd_size=_Length(F("content__data")),
        pjd_head=_Slice(F("content__data"), Value(1), Value(STORE_READ_BYTES)),
    )


# The open's query is compiled once (lib/compiled.py): building it cost more than running it.
_STAND_IN_DOCUMENT = UUID("00000000-0000-4000-8000-0000000d0c1d")


@functools.lru_cache(maxsize=2)
def _reference_query(vendor: str) -> tuple[str, tuple[Any, ...]]:
    documents = with_content_head(DocumentReference.objects.filter(document_id=_STAND_IN_DOCUMENT)).annotate(
        pjd_source_orgnr=F("source__organisation__orgnr")
    )
    return compiled(documents[:1])


def reference_with_head(document_id: UUID) -> DocumentReference | None:
    """The reference with this id, the organisation number of its source and its content's
    size and first STORE_READ_BYTES, in one query; None if there is none."""

    sql, params = _reference_query(connection.vendor)
    stand_in = prepared(DocumentReference, "document_id", _STAND_IN_DOCUMENT)
    values = with_values(
        params, {stand_in: prepared(DocumentReference, "document_id", document_id)}, expected=1
    )
    return next(iter(DocumentReference.objects.raw(sql, values)), None)


def content_size(document: DocumentReference) -> int | None:
    size = cast(Any, document).pjd_size
    return None if size is None else int(size)


def content_chunks(document: DocumentReference, size: int) -> Iterator[bytes]:
    """The content read with the reference, then the rest a slice at a time."""

    yield from chunked(bytes(cast(Any, document).pjd_head or b""))
    start = STORE_READ_BYTES
    while start < size:
        part = (
            DocumentContent.objects.filter(pk=document.pk)
            .annotate(part=_Slice(F("data"), Value(start + 1), Value(STORE_READ_BYTES)))
            .values_list("part", flat=True)
            .first()
        )
        if not part:  # the content changed under the stream: stop rather than guess
            return
        yield from chunked(bytes(part))
        start += STORE_READ_BYTES
