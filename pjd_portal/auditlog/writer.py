"""Writing a built access event to the database: the one write path.

`services.record_event` builds an event and hands it here. Inside a transaction the event
is part of it; outside one it is committed before `write` returns.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import DatabaseError, connection, transaction

from pjd_portal.auditlog import chain, group_commit
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

    if not connection.in_atomic_block and group_commit_enabled():
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
