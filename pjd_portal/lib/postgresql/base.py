"""Django's PostgreSQL backend, with the connection's health check made only when needed.

With persistent connections and `CONN_HEALTH_CHECKS`, Django sends `SELECT 1` before the
first query of every request: a round trip each time. A connection used a moment ago is
alive as far as a check could tell, so here the check is made only after the connection
has rested `DB_HEALTH_CHECK_AFTER_IDLE_SECONDS` (a restarted database is then found before
a request uses it). A connection that breaks in between fails its query, the request gets
the 503 page (lib/middleware.py), and Django closes the connection after an error, so
the next request connects afresh.
"""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django.db.backends.postgresql import base


class DatabaseWrapper(base.DatabaseWrapper):
    _pjd_used_at = float("-inf")

    def close_if_health_check_failed(self) -> None:
        rested = time.monotonic() - self._pjd_used_at
        if self.connection is not None and rested < settings.DB_HEALTH_CHECK_AFTER_IDLE_SECONDS:
            self.health_check_done = True
            return
        super().close_if_health_check_failed()

    def _cursor(self, name: Any = None) -> Any:
        cursor = super()._cursor(name)  # type: ignore[misc]
        self._pjd_used_at = time.monotonic()
        return cursor
