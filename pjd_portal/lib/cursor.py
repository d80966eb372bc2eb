"""Signed keyset-paging cursors: "after this (time, id)" for the log's pages and the review queue.

One implementation for every paged list of the log (the patient's log, the log review's
search, the review queue): the cursor is signed, so a page link cannot be edited to read
past a filter, and each list has its own salt, so one list's cursor is no other's.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from django.core import signing
from django.db.models import Q


class InvalidCursor(ValueError):
    """The cursor is malformed or was not made by this portal for this list."""


@dataclass(frozen=True)
class Cursor:
    occurred_at: datetime.datetime
    event_pk: int  # the row's primary key (an event's, or a review item's)


@dataclass(frozen=True)
class SignedCursor:
    salt: str

    def encode(self, occurred_at: datetime.datetime, pk: int) -> str:
        return signing.dumps([occurred_at.isoformat(), pk], salt=self.salt, compress=False)

    def decode(self, raw: str) -> Cursor:
        try:
            value = signing.loads(raw, salt=self.salt)
            occurred_at = datetime.datetime.fromisoformat(value[0])
            pk = value[1]
        except (signing.BadSignature, ValueError, TypeError, IndexError, KeyError) as exc:
            raise InvalidCursor("bad cursor") from exc
        if occurred_at.tzinfo is None or not isinstance(pk, int) or isinstance(pk, bool):
            raise InvalidCursor("bad cursor")
        return Cursor(occurred_at, pk)


def after(cursor: Cursor, time_field: str = "occurred_at") -> Q:
    """Rows after the cursor in newest-first order: older, or as old with a smaller id."""

    return Q(**{f"{time_field}__lt": cursor.occurred_at}) | Q(
        **{time_field: cursor.occurred_at, "pk__lt": cursor.event_pk}
    )
