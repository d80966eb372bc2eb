"""Reading a document's bytes from the portal's own store without holding them whole.

The open reads the reference and the first `STORE_READ_BYTES` of its content in the one
query that finds it (`with_content_head`); a larger document's rest is read a slice at a
time while the answer streams (`content_chunks`), so a 25 MB PDF never sits in memory and a
200 KB one costs no query of its own. Nothing read here leaves before the open's event is
committed: the caller streams only after that (clinic/opening.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, cast

from django.db.models import BinaryField, F, Func, IntegerField, QuerySet, Value

from pjd_portal.documents.models import DocumentContent, DocumentReference
from pjd_portal.documents.rendering import chunked

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
