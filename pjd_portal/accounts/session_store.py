"""The session store: sessions read from the shared cache, written through to the database.

Django's `cached_db` store, with two changes that matter for a clinician's portal:

- A cached copy lives at most `SESSION_CACHE_SECONDS` (a minute), not the session's whole
  life. The database row is the session; the cache only spares the read. If a delete
  (a logout) could not reach the cache, the copy left there ends within that minute.
- The cache failing is never the request failing: a read that the cache cannot answer
  goes to the database, and a write the cache cannot take is logged and left.

Only a cache every process shares may hold sessions (a per-process copy would keep a
logged-out session alive in the other processes): settings choose this store only then.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from django.conf import settings
from django.contrib.sessions.backends import cached_db

logger = logging.getLogger(__name__)


# After a cache failure the cache is left alone a while: a cache that hangs then costs
# one timeout, not two on every request (a read and a write).
CACHE_REST_SECONDS = 10.0
_cache_down_until = 0.0  # time.monotonic(); one flag per process, as the cache client is


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

    def load(self) -> dict[str, Any]:
        data = None
        if not _cache_resting():
            try:
                data = self._cache.get(self.cache_key)
            except Exception:  # noqa: BLE001 - the cache is down or refused the key: the database answers
                _cache_failed("read")
        if data is not None:
            return data  # type: ignore[no-any-return]
        row = self._get_session_from_db()  # type: ignore[attr-defined]
        if not row:
            return {}
        data = self.decode(row.session_data)
        self._cache_set(data, self.get_expiry_age(expiry=row.expire_date))
        return data

    def save(self, must_create: bool = False) -> None:
        # The database first (DBStore.save): it is the session; then the copy.
        super(cached_db.SessionStore, self).save(must_create)
        self._cache_set(self._session, self.get_expiry_age())

    def delete(self, session_key: str | None = None) -> None:
        super(cached_db.SessionStore, self).delete(session_key)
        if session_key is None:
            if self.session_key is None:
                return
            session_key = self.session_key
        try:
            # Tried even while the cache rests: a logout should reach it if it can.
            self._cache.delete(self.cache_key_prefix + session_key)
        except Exception:  # noqa: BLE001 - whatever the cache backend raises
            # The row is gone; the copy ends within SESSION_CACHE_SECONDS.
            _cache_failed("delete")

    def exists(self, session_key: str) -> bool:
        if not _cache_resting():
            try:
                if session_key and (self.cache_key_prefix + session_key) in self._cache:
                    return True
            except Exception:  # noqa: BLE001 - whatever the cache backend raises
                _cache_failed("read")
        return super(cached_db.SessionStore, self).exists(session_key)

    def _cache_set(self, data: dict[str, Any], expire_age: int) -> None:
        if _cache_resting():
            return
        try:
            self._cache.set(self.cache_key, data, self._cache_seconds(expire_age))
        except Exception:  # noqa: BLE001 - whatever the cache backend raises
            _cache_failed("write")
