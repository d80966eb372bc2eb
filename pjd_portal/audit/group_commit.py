"""Group commit for access events: many requests' events, one durable commit.

A document's bytes may leave only once its event is committed, so every request waits for
a commit. One transaction per event makes the commit, its round trips and the chain-head
updates the cost of every request: on two cores that capped the log near 1,000 events/s.
Here each process has one writer thread with its own database connection. A request
hands its event over and waits; the writer takes every event that is waiting, links them
into their chains, inserts them with one INSERT, moves the chain heads on with one UPDATE
and commits once; then each waiting request is told its own event is committed (or that it
failed). Nothing is delayed to make a batch: a lone event is written at once, and events
that arrive while a commit is under way form the next batch.

The guarantee is unchanged: `write` returns only after the COMMIT that holds the event has
succeeded. If a batch fails, each of its events is written again on its own, so one bad
event (or a lost connection) fails no one else's; an event that still fails raises
`GroupCommitFailed` in its own request.

Only events written outside any transaction come here (audit/services.py decides): an
event inside a transaction must commit or roll back with the work it describes.
"""

from __future__ import annotations

import datetime
import functools
import json
import logging
import os
import threading
from collections import deque
from dataclasses import dataclass, field

import psycopg
from django.conf import settings
from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper

from pjd_portal.audit import chain
from pjd_portal.audit.models import AccessEvent, AuditChainHead

logger = logging.getLogger(__name__)


class GroupCommitFailed(Exception):
    """The event is not known to be committed. The caller must not show what it was about."""


@dataclass(eq=False)
class _Pending:
    event: AccessEvent
    done: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None
    abandoned: bool = False  # the request stopped waiting (timed out)


class GroupCommitter:
    """One writer thread and connection per process (re-created after a fork)."""

    def __init__(self, alias: str = "default") -> None:
        self.alias = alias
        self._cond = threading.Condition()
        self._queue: deque[_Pending] = deque()
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._stopping = False
        self._session_set_for: object = None
        # Figures for the benchmark and the tests: commits made and events they held.
        self.commits = 0
        self.events = 0

    # --- the requests' side ---------------------------------------------------------

    def write(self, event: AccessEvent) -> None:
        """Return once `event` is committed; raise GroupCommitFailed otherwise."""

        pending = _Pending(event)
        with self._cond:
            self._ensure_thread()
            self._queue.append(pending)
            self._cond.notify()
        if not pending.done.wait(settings.AUDIT_WRITE_TIMEOUT):
            pending.abandoned = True
            # The event may still commit later (as after any lost COMMIT answer); the
            # request shows nothing, and the log errs on the side of saying too much.
            raise GroupCommitFailed("timed out waiting for the audit commit")
        if pending.error is not None:
            raise GroupCommitFailed(type(pending.error).__name__) from pending.error

    def _ensure_thread(self) -> None:
        if self._pid != os.getpid():  # a forked worker: the parent's thread is not here
            self._queue.clear()
            self._thread = None
            self._pid = os.getpid()
        if self._thread is None or not self._thread.is_alive():
            self._stopping = False
            self._thread = threading.Thread(target=self._run, name="audit-group-commit", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Finish what is queued, end the thread and close its connection (tests, shutdown)."""

        with self._cond:
            thread = self._thread
            self._stopping = True
            self._cond.notify()
        if thread is not None and thread.is_alive() and thread is not threading.current_thread():
            thread.join(timeout=10)
        self._thread = None

    # --- the writer thread ------------------------------------------------------------

    def _run(self) -> None:
        idle_close = settings.AUDIT_WRITER_IDLE_CLOSE_SECONDS
        try:
            while True:
                with self._cond:
                    while not self._queue and not self._stopping:
                        if not self._cond.wait(timeout=idle_close) and not self._queue:
                            # Idle: give the connection back (the database may restart,
                            # a test database be dropped); the next batch reconnects.
                            connections[self.alias].close()
                    if not self._queue and self._stopping:
                        return
                    batch = [
                        self._queue.popleft() for _ in range(min(len(self._queue), settings.AUDIT_BATCH_MAX))
                    ]
                self._write_batch(batch)
        finally:
            connections[self.alias].close()

    def _write_batch(self, batch: list[_Pending]) -> None:
        try:
            self._commit([p.event for p in batch])
        except Exception as exc:  # noqa: BLE001 - every waiting request must be answered
            # One bad event, or a connection that died while idle, must fail no one else:
            # each event is tried once more, alone, on a fresh connection.
            logger.warning(
                "audit batch of %d failed (%s); writing each alone", len(batch), type(exc).__name__
            )
            self._reset_connection()
            for pending in batch:
                if pending.abandoned:  # nobody waits for it: no retry to hold the others up
                    self._answer([pending], exc)
                    continue
                try:
                    self._commit([pending.event])
                except Exception as single_exc:  # noqa: BLE001
                    self._reset_connection()
                    self._answer([pending], single_exc)
                else:
                    self._answer([pending], None)
        else:
            self._answer(batch, None)

    def _commit(self, events: list[AccessEvent]) -> None:
        self._prepare_session()
        conn = connections[self.alias]
        with conn.wrap_database_errors:
            _append(conn, events)
        self.commits += 1
        self.events += len(events)

    def _prepare_session(self) -> None:
        # A head locked by a long transaction must not hold every request in this process
        # for long: the batch fails after lock_timeout and is retried event by event.
        conn = connections[self.alias]
        conn.ensure_connection()
        if conn.vendor == "postgresql" and self._session_set_for is not conn.connection:
            with conn.cursor() as cursor:
                cursor.execute(
                    "SELECT set_config('lock_timeout', %s, false), set_config('statement_timeout', %s, false)",
                    [f"{settings.AUDIT_LOCK_TIMEOUT_MS}ms", f"{settings.AUDIT_STATEMENT_TIMEOUT_MS}ms"],
                )
            self._session_set_for = conn.connection

    def _reset_connection(self) -> None:
        # After a failure the connection may be broken or mid-transaction: start afresh.
        try:
            connections[self.alias].close()
        except Exception:  # noqa: BLE001 - closing a dead connection may itself fail
            logger.warning("audit writer: closing the failed connection failed")
        self._session_set_for = None

    @staticmethod
    def _answer(batch: list[_Pending], error: BaseException | None) -> None:
        if error is not None:
            # The fact, never the content (an event may carry a national id).
            logger.error("audit write failed: %s", type(error).__name__)
        for pending in batch:
            if error is not None:
                pending.event.pk = None
            pending.error = error
            pending.done.set()


# Prepared once per connection, so the database plans nothing per batch.
_HEADS = AuditChainHead._meta.db_table
_EVENTS = AccessEvent._meta.db_table
_LOCK_HEADS = f"SELECT chain, seq, last_hash FROM {_HEADS} WHERE chain = ANY(%s) ORDER BY chain FOR UPDATE"  # noqa: S608
_MAKE_HEADS = (
    f"INSERT INTO {_HEADS} (chain, seq, last_hash) SELECT c, 0, %s FROM unnest(%s::smallint[]) AS c "  # noqa: S608
    "ON CONFLICT (chain) DO NOTHING"
)
_MOVE_HEADS = (
    f"UPDATE {_HEADS} AS h SET seq = v.seq, last_hash = v.last_hash "  # noqa: S608
    "FROM unnest(%s::smallint[], %s::bigint[], %s::varchar[]) AS v (chain, seq, last_hash) WHERE h.chain = v.chain"
)
# The rows go in as one JSON document (json.dumps is C; the database parses it as fast),
# one INSERT whatever the batch size; the record's column types are the table's.
_FIELDS = [f for f in AccessEvent._meta.concrete_fields if not f.primary_key]
_COLUMNS = [f.column for f in _FIELDS]
_ATTNAMES = [f.attname for f in _FIELDS]


@functools.cache
def _insert_sql() -> str:
    conn = connections["default"]
    record = ", ".join(f"{f.column} {f.db_type(conn)}" for f in _FIELDS)
    columns = ", ".join(_COLUMNS)
    return (
        f"INSERT INTO {_EVENTS} ({columns}) SELECT {columns} "  # noqa: S608
        f"FROM jsonb_to_recordset(%s::jsonb) AS r ({record}) RETURNING id, event_id"
    )


def _json_value(value: object) -> object:
    # UUIDs, times and addresses as the database reads them back; exact to the microsecond.
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    return str(value)


def _append(conn: BaseDatabaseWrapper, events: list[AccessEvent]) -> None:
    """Link the batch into its chains, insert it and commit: one transaction.

    Two round trips whatever the batch size: BEGIN with the head locks; then the INSERT,
    the heads' UPDATE and the COMMIT together. The heads are locked in chain order, so
    batch writers in different processes cannot deadlock each other, and they are held
    only for those two round trips. The connection is this thread's alone; on any error
    the caller closes it, which rolls back.
    """

    for event in events:
        event.chain = chain.chain_for(event.patient_national_id, event.actor_pid)
    chains = sorted({event.chain for event in events})
    raw = conn.connection
    assert raw is not None and raw.autocommit  # Django's default: BEGIN/COMMIT are ours
    with psycopg.Cursor(raw) as cursor, psycopg.Cursor(raw) as insert:
        with raw.pipeline():
            cursor.execute("BEGIN")
            cursor.execute(_LOCK_HEADS, [chains], prepare=True)
        heads = {c: (seq, last) for c, seq, last in cursor.fetchall()}
        if len(heads) < len(chains):  # a chain's first event ever: make its head, lock it
            cursor.execute(_MAKE_HEADS, [chain.GENESIS, [c for c in chains if c not in heads]])
            cursor.execute(_LOCK_HEADS, [chains])
            heads = {c: (seq, last) for c, seq, last in cursor.fetchall()}
        for event in events:
            seq, last = heads[event.chain]
            event.chain_seq, event.prev_hash = seq + 1, last
            event.entry_hash = chain.entry_hash(event)
            heads[event.chain] = (event.chain_seq, event.entry_hash)
        rows = json.dumps(
            [dict(zip(_COLUMNS, (getattr(e, a) for a in _ATTNAMES), strict=True)) for e in events],
            default=_json_value,
            ensure_ascii=False,
        )
        with raw.pipeline():
            insert.execute(_insert_sql(), [rows], prepare=True)
            cursor.execute(
                _MOVE_HEADS,
                [chains, [heads[c][0] for c in chains], [heads[c][1] for c in chains]],
                prepare=True,
            )
            cursor.execute("COMMIT")  # the pipeline's end waits for it, and raises if it failed
        ids = dict((event_id, pk) for pk, event_id in insert.fetchall())
    for event in events:
        event.pk = ids[event.event_id]
        event._state.adding = False
        event._state.db = conn.alias


_committer = GroupCommitter()


def committer() -> GroupCommitter:
    return _committer
