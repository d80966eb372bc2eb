"""Writing a built access event to the database: the one write path.

`services.record_event` builds an event and hands it here. Inside a transaction the event
is part of it; outside one it is committed before `write` returns.
"""

from __future__ import annotations

import logging
import time

from django.conf import settings
from django.db import DatabaseError, connection, transaction

from pjd_portal.auditlog import chain, group_commit
from pjd_portal.auditlog.metrics import AUDIT_WRITE_SECONDS
from pjd_portal.auditlog.models import AccessEvent

logger = logging.getLogger(__name__)


class AuditWriteFailed(Exception):
    """The event could not be written. Callers must not show what it was about."""


def group_commit_enabled() -> bool:
    # The group writer runs PostgreSQL functions (audit 0013/0014); SQLite (the demo) never uses it.
    return bool(settings.AUDIT_GROUP_COMMIT) and connection.vendor == "postgresql"


def write(event: AccessEvent) -> None:
    """Write a built event. Inside a transaction it is part of that transaction (it commits
    or rolls back with the work it describes); outside one it goes to the group writer and
    this returns once it is committed. Raises AuditWriteFailed."""

    started = time.perf_counter()
    if not connection.in_atomic_block and group_commit_enabled():
        path = "group"
    else:
        path = "outer_transaction" if connection.in_atomic_block else "own_transaction"
    outcome = "failed"
    try:
        _write(event, path)
        outcome = "committed"
    finally:
        AUDIT_WRITE_SECONDS.labels(path=path, outcome=outcome).observe(time.perf_counter() - started)


def _write(event: AccessEvent, path: str) -> None:
    if path == "group":
        try:
            group_commit.committer().write(event)
        except group_commit.GroupCommitFailed as exc:
            raise AuditWriteFailed(str(exc)) from exc
        return
    try:
        with transaction.atomic():  # the chain link and the row, together or not at all
            chain.link(event)
            event.save(force_insert=True)
    except DatabaseError as exc:
        # Log the fact, never the content (the row may carry a national id).
        logger.error("audit write failed: %s (request %s)", type(exc).__name__, event.request_id)
        raise AuditWriteFailed(str(type(exc).__name__)) from exc


def not_ready() -> str:
    """Why this process could not write an access event now ("" when it could): the
    readiness probe's question (/readyz, lib/health.py). The log's table must answer a
    read, and the group writer (where it runs) must not hold an event past the time a
    request waits for it."""

    try:
        with connection.temporary_connection() as cursor:
            cursor.execute(f"SELECT 1 FROM {AccessEvent._meta.db_table} LIMIT 0")  # noqa: S608 - our own table name
    except DatabaseError:
        return "the access log's table does not answer"
    if group_commit_enabled() and group_commit.committer().backlog_seconds() >= settings.AUDIT_WRITE_TIMEOUT:
        return "the group writer holds an event past the write timeout"
    return ""
