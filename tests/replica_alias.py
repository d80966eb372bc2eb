"""A connection named `replica` made during a test (tests/test_replica*.py), as settings.py
makes it for DATABASE_REPLICA_URL.

Django's test case refuses connections to aliases the test did not declare; this one did
not exist when the test was declared, so its connection gets back the real
`ensure_connection` (the one pytest-django's blocker keeps while it blocks).
"""

from __future__ import annotations

import types
from typing import Any

from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper

from pjd_portal.lib import replica

ALIAS = "replica"


def open_replica(settings_dict: dict[str, Any], django_db_blocker: Any) -> BaseDatabaseWrapper:
    real = django_db_blocker._real_ensure_connection or BaseDatabaseWrapper.ensure_connection
    connections.settings[ALIAS] = settings_dict
    connection = connections[ALIAS]
    connection.ensure_connection = types.MethodType(real, connection)  # type: ignore[method-assign]
    replica.reset()
    return connection


def close_replica() -> None:
    connections[ALIAS].close()
    del connections[ALIAS]
    del connections.settings[ALIAS]
    replica.reset()
