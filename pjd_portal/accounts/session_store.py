"""The session store: sessions read from the shared cache, written through to the database.

Django's `cached_db` store, made to fail closed, which matters in a clinician's portal:

- The database row is the session; the cache only spares the read. A cached copy lives
  at most `SESSION_CACHE_SECONDS` (a minute).
- A logout (any delete) leaves a tombstone in the cache for that minute, not a missing key:
  a request that read the row just before the logout cannot put the session back, since a
  copy is added only where there is none (`cache.add`), and a tombstone reads as "no
  session" in every process.
- A write the cache cannot take must not leave an older copy there for other processes
  (or this one) to read: the copy is then deleted, and if that fails too, the request
  fails with the 503 page (`SessionStoreUnavailable`), never carries on as if written.
  The same for a logout whose tombstone cannot be written.
- A read the cache cannot answer goes to the database; after such a failure the cache is
  not read for a few seconds (a hanging cache costs one timeout, not one per request).

Only a cache every process shares may hold sessions (a per-process copy would keep a
logged-out session alive in the other processes): settings choose this store only then.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from django.conf import settings
from django.contrib.sessions.backends import cached_db
from django.contrib.sessions.backends.base import UpdateError
from django.contrib.sessions.exceptions import SessionInterrupted
from django.contrib.sessions.middleware import SessionMiddleware as DjangoSessionMiddleware
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse

from pjd_portal.lib.errors import service_unavailable

logger = logging.getLogger(__name__)

# After a failed read the cache is not read a while; writes are always tried (a write
# that does not reach the cache must be known, see above).
CACHE_REST_SECONDS = 10.0
_cache_down_until = 0.0  # time.monotonic(); one flag per process, as the cache client is
TOMBSTONE = "pjd-session-ended"


class SessionStoreUnavailable(OperationalError):
    """The session could not be written or ended where every process reads it. An
    OperationalError, so that it is the 503 page like a database outage."""


def _cache_resting() -> bool:
    return time.monotonic() < _cache_down_until


def _cache_failed(doing: str) -> None:
    global _cache_down_until  # noqa: PLW0603 - see above
    _cache_down_until = time.monotonic() + CACHE_REST_SECONDS
    logger.warning("session cache unavailable on %s", doing)


class SessionStore(cached_db.SessionStore):
    _cache: Any  # set by cached_db.SessionStore.__init__
    _session: dict[str, Any]

    def _cache_seconds(self, expire_age: int) -> int:
        return max(1, min(expire_age, settings.SESSION_CACHE_SECONDS))

    def _cached(self) -> Any:
        if _cache_resting():
            return None
        try:
            return self._cache.get(self.cache_key)
        except Exception:  # noqa: BLE001 - the cache is down or refused the key: the database answers
            _cache_failed("read")
            return None

    def load(self) -> dict[str, Any]:
        data = self._cached()
        if data == TOMBSTONE:
            return {}  # ended a moment ago; the row is gone too
        if data is not None:
            return data  # type: ignore[no-any-return]
        row = self._get_session_from_db()  # type: ignore[attr-defined]
        if not row:
            return {}
        data = self.decode(row.session_data)
        if not _cache_resting():
            try:
                # add, never set: a logout's tombstone written meanwhile must stay.
                self._cache.add(
                    self.cache_key, data, self._cache_seconds(self.get_expiry_age(expiry=row.expire_date))
                )
            except Exception:  # noqa: BLE001 - whatever the cache backend raises
                _cache_failed("read")
        return data

    def save(self, must_create: bool = False) -> None:
        # The database first (DBStore.save): it is the session; then the copy.
        super(cached_db.SessionStore, self).save(must_create)
        try:
            self._cache.set(self.cache_key, self._session, self._cache_seconds(self.get_expiry_age()))
            return
        except Exception:  # noqa: BLE001 - whatever the cache backend raises
            _cache_failed("write")
        try:
            self._cache.delete(self.cache_key)  # no copy is better than an old one
        except Exception as exc:
            raise SessionStoreUnavailable(
                "session written, its cached copy neither replaced nor removed"
            ) from exc

    def delete(self, session_key: str | None = None) -> None:
        super(cached_db.SessionStore, self).delete(session_key)
        if session_key is None:
            if self.session_key is None:
                return
            session_key = self.session_key
        try:
            self._cache.set(self.cache_key_prefix + session_key, TOMBSTONE, settings.SESSION_CACHE_SECONDS)
        except Exception as exc:
            _cache_failed("delete")
            raise SessionStoreUnavailable("session ended in the database, not in the cache") from exc

    def exists(self, session_key: str) -> bool:
        # Only asked when a new key is made: the database alone decides (a tombstone in
        # the cache must not make a fresh key look taken, nor a missing copy free).
        return super(cached_db.SessionStore, self).exists(session_key)


class SessionMiddleware(DjangoSessionMiddleware):
    """Django's, with a session that cannot be saved answered by the 503 page.

    The save runs after the view, where no view's handler sees it. Django turns any
    database error of that save into `UpdateError` and then `SessionInterrupted`, a
    SuspiciousOperation, so a database restart would answer "400 Invalid request" to
    whoever's session happened to be written (issue 17). An outage is told apart from the
    case Django means (the row deleted meanwhile, by a logout in another tab) by the error
    the save met; the original answer is closed, so a streamed document that never left
    says so in the log (clinic/opening.py `Delivery`).
    """

    def process_response(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        try:
            return super().process_response(request, response)
        except SessionStoreUnavailable:
            logger.error("session not saved: the shared cache did not answer")
            replaced = service_unavailable(request, reason="database")
        except SessionInterrupted as exc:
            if not _database_fault(exc):
                raise  # the session ended in another request: Django's own answer
            logger.error("session not saved: the database did not answer")
            replaced = service_unavailable(request, reason="database")
        _discard(response)
        return replaced


def _discard(response: HttpResponse) -> None:
    """Close an answer that will never be sent: what `close()` does for its resources (a
    streamed document's `Delivery` logs that it was not delivered), without announcing
    the end of the request (`request_finished`), which comes with the answer sent instead."""

    closers: list[Any] = getattr(response, "_resource_closers", [])
    for closer in closers:
        closer()
    closers.clear()


def save_now(request: HttpRequest) -> None:
    """Write the session now if this request changed it (the activity stamp), instead of
    after the view. For an open: once its event is committed, nothing but the bytes may
    fail, so nothing that can fail (a session save during a database restart) may come
    after it. A database error is the 503 page as anywhere in a view; a session ended
    meanwhile in another request is Django's own answer (SessionInterrupted)."""

    session = getattr(request, "session", None)
    if session is None or not session.modified or session.is_empty():
        return
    try:
        session.save()
    except UpdateError as exc:
        if _database_fault(exc):
            raise OperationalError("session not saved") from exc
        raise SessionInterrupted("The request's session was deleted before the request completed.") from exc
    session.modified = False


def _database_fault(exc: BaseException) -> bool:
    """Whether an OperationalError or InterfaceError is among the causes of `exc`."""

    seen: BaseException | None = exc
    for _ in range(10):
        if seen is None:
            return False
        if isinstance(seen, (OperationalError, InterfaceError)):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
