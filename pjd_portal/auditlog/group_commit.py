"""Group commit for access events: many requests' events, one durable commit.

A document's bytes may leave only once its event is committed, so every request waits for
a commit. One transaction per event makes the commit, its round trips and the chain-head
updates the cost of every request: on two cores that capped the log near 1,000 events/s.
Here each process has one writer thread with its own database connection and its own
hash chain (claimed with an advisory lock, so no writer waits on another's chain head). A
request hands its event over and waits; the writer takes every event that is waiting,
links them onto its chain, and writes them, moves the head on and commits in one
statement, one round trip (migrations 0013, 0014); then each waiting request is told its own
event is committed (or that it failed). Nothing is delayed to make a batch: a lone event
is written at once, and events that arrive while a commit is under way form the next.

The guarantee is unchanged: `write` returns only after the COMMIT that holds the event has
succeeded. A batch that fails on its connection (lost, or its head moved) is tried once
more whole on a fresh one; one that fails on its content is tried event by event, so one
bad event fails no one else's. An event that still fails raises `GroupCommitFailed` in
its own request, and so does one not committed within AUDIT_WRITE_TIMEOUT.

Only events written outside any transaction come here (audit/services.py decides): an
event inside a transaction must commit or roll back with the work it describes.

A COMMIT whose answer is lost (the database killed just after it, as in a crash restart)
leaves its events in doubt: maybe written. So the retry on a fresh connection first asks
which of the batch's events are in the log already (by `event_id`), answers those as
committed and writes only the rest; nothing is written twice, and no request is told
"failed" about an event the log holds. Events still in doubt when the retry fails too
(the database not back yet) are kept, and asked about again before the next batch; any
that turn out committed while their request answered the 503 page, and any committed
after their request stopped waiting, were never acted on: a granted `document_open` among
them gets its second event, `interrupted` (`not_delivered`, `answer_not_sent`), so the
log does not say a document was delivered when it was not (docs/operations.md#faults).
"""

from __future__ import annotations

import copy
import datetime
import logging
import os
import select
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
from django.conf import settings
from django.db import InterfaceError, OperationalError, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models.base import ModelState
from django.utils import timezone
from psycopg.pq import ConnStatus, ExecStatus, TransactionStatus
from psycopg.pq.abc import PGconn, PGresult

from pjd_portal.auditlog import chain, events
from pjd_portal.auditlog.models import AccessEvent

logger = logging.getLogger(__name__)


class GroupCommitFailed(Exception):
    """The event is not known to be committed. The caller must not show what it was about."""


class _Pending:
    """One request's event and its answer. The request waits on a plain lock that the
    writer releases: far cheaper per event than a threading.Event (a Python Condition)."""

    __slots__ = ("_answered", "abandoned", "content", "error", "event", "queued_at")

    def __init__(self, event: AccessEvent) -> None:
        self.event = event
        # Made here, in the request's thread: the writer's serial part stays short.
        self.content = chain.content_digest(event)
        self.error: BaseException | None = None
        self.abandoned = False  # the request stopped waiting (timed out)
        self.queued_at = time.monotonic()
        self._answered = threading.Lock()
        self._answered.acquire()

    def answer(self, error: BaseException | None) -> None:
        self.error = error
        self._answered.release()

    def wait(self, timeout: float) -> bool:
        return self._answered.acquire(timeout=timeout)

    def is_answered(self) -> bool:
        if self._answered.acquire(blocking=False):
            self._answered.release()
            return True
        return False


@dataclass
class _Head:
    """Where this writer's own chain ends, as committed."""

    chain: int
    seq: int
    last_hash: str


class GroupCommitter:
    """One writer thread and connection per process (re-created after a fork)."""

    def __init__(self, alias: str = "default") -> None:
        self.alias = alias
        self._cond = threading.Condition()
        self._queue: deque[_Pending] = deque()
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._stopping = False
        # Each writer thread's own chain head and the connection it was claimed on.
        self._local = threading.local()
        os.register_at_fork(after_in_child=self._after_fork)
        # Figures for the benchmark and the tests: commits made and events they held.
        self.commits = 0
        self.events = 0
        self._committing_since: float | None = None  # the batch being written, if any
        # The writer thread's alone: events whose commit may or may not have happened
        # while their request was told it failed (see the module's docstring).
        self._in_doubt: list[AccessEvent] = []
        # Second events to write with the next batch (nobody waits for them).
        self._follow_ups: list[_Pending] = []

    def backlog_seconds(self) -> float:
        """How long the oldest event not yet answered has waited (0 when none waits): the
        readiness probe's measure of a writer that is stuck, whatever the database says."""

        now = time.monotonic()
        with self._cond:
            oldest = self._queue[0].queued_at if self._queue else None
        since = [t for t in (oldest, self._committing_since) if t is not None]
        return now - min(since) if since else 0.0

    # --- the requests' side ---------------------------------------------------------

    def write(self, event: AccessEvent) -> None:
        """Return once `event` is committed; raise GroupCommitFailed otherwise."""

        try:
            pending = _Pending(event)
        except (TypeError, ValueError) as exc:  # content that cannot be hashed: never a 500
            raise GroupCommitFailed(type(exc).__name__) from exc
        with self._cond:
            self._ensure_thread()
            self._queue.append(pending)
            self._cond.notify()
        if not pending.wait(settings.AUDIT_WRITE_TIMEOUT):
            pending.abandoned = True
            # The event may still commit later (as after any lost COMMIT answer); the
            # request shows nothing, and the log errs on the side of saying too much.
            raise GroupCommitFailed("timed out waiting for the audit commit")
        if pending.error is not None:
            raise GroupCommitFailed(type(pending.error).__name__) from pending.error

    def _after_fork(self) -> None:
        # The child has none of the parent's threads, and the parent's lock may have been
        # held at the fork: start from nothing (the child's first write starts its writer).
        self._cond = threading.Condition()
        self._queue = deque()
        self._thread = None
        self._pid = os.getpid()
        self._local = threading.local()
        self._in_doubt = []
        self._follow_ups = []

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
                    while not self._queue and not self._follow_ups and not self._stopping:
                        if not self._cond.wait(timeout=idle_close) and not self._queue:
                            # Idle: give the connection back (the database may restart,
                            # a test database be dropped); the next batch reconnects.
                            self._reset_connection()
                    if not self._queue and not self._follow_ups and self._stopping:
                        return
                    batch = [
                        self._queue.popleft() for _ in range(min(len(self._queue), settings.AUDIT_BATCH_MAX))
                    ]
                self._resolve_in_doubt()
                if self._follow_ups:
                    batch, self._follow_ups = [*self._follow_ups, *batch], []
                self._committing_since = min(p.queued_at for p in batch)
                try:
                    self._write_batch(batch)
                finally:
                    self._committing_since = None
        finally:
            self._reset_connection()

    def _write_batch(self, batch: list[_Pending]) -> None:
        try:
            self._commit(batch)
        except Exception as exc:  # noqa: BLE001 - every waiting request must be answered
            self._reset_connection()
            if isinstance(exc, (OperationalError, InterfaceError)):
                # A connection that died while idle, or a head someone else moved: once
                # more, whole, on a fresh connection (which reloads the head).
                try:
                    self._commit(batch, maybe_written=True)
                except Exception as again:  # noqa: BLE001
                    self._reset_connection()
                    if isinstance(again, (OperationalError, InterfaceError)):
                        # The database is not there: fail fast, one by one would only wait
                        # out the connect timeout for each. The first COMMIT may have
                        # happened: in doubt until asked.
                        self._doubt(batch)
                        self._answer(batch, again)
                        return
                    exc = again
                else:
                    self._answer(batch, None)
                    return
            # One bad event must fail no one else's: each is tried once more, alone.
            logger.warning(
                "audit batch of %d failed (%s); writing each alone", len(batch), type(exc).__name__
            )
            for pending in batch:
                if pending.abandoned:  # nobody waits for it: no retry to hold the others up
                    self._answer([pending], exc)
                    continue
                try:
                    self._commit([pending])
                except Exception as single_exc:  # noqa: BLE001
                    self._reset_connection()
                    self._answer([pending], single_exc)
                else:
                    self._answer([pending], None)
        else:
            self._answer(batch, None)

    def _commit(self, batch: list[_Pending], *, maybe_written: bool = False) -> None:
        """Write the batch and commit. `maybe_written`: an earlier COMMIT of it may have
        happened (its answer lost); the events in the log already are not written again."""

        conn = connections[self.alias]
        with conn.wrap_database_errors:
            head = self._head_for(conn)
            if maybe_written:
                found = _committed(conn, [p.event for p in batch])
                for pending in batch:
                    pk = found.get(str(pending.event.event_id))
                    if pk is not None:
                        _mark_saved(pending.event, pk, conn.alias)
                batch = [p for p in batch if str(p.event.event_id) not in found]
            if batch:
                _append(conn, head, [p.event for p in batch], [p.content for p in batch])
        self.commits += 1
        self.events += len(batch)

    def _doubt(self, batch: list[_Pending]) -> None:
        self._in_doubt.extend(p.event for p in batch if p.event.event_type == events.DOCUMENT_OPEN.name)
        del self._in_doubt[:-IN_DOUBT_MAX]

    def _resolve_in_doubt(self) -> None:
        """Ask which events in doubt are in the log; those were never acted on (their
        request answered 503): a second event says so. Kept while the database cannot say."""

        if not self._in_doubt:
            return
        conn = connections[self.alias]
        try:
            with conn.wrap_database_errors:
                conn.ensure_connection()
                found = _committed(conn, self._in_doubt)
        except Exception as exc:  # noqa: BLE001 - still down: asked again before the next batch
            logger.warning("audit writer: events in doubt not resolved yet (%s)", type(exc).__name__)
            self._reset_connection()
            return
        committed = [e for e in self._in_doubt if str(e.event_id) in found]
        self._in_doubt = []
        for event in committed:
            self._not_delivered(event, "answer_not_sent")

    def _not_delivered(self, event: AccessEvent, why: str) -> None:
        """A granted open that is in the log although its request never sent the document."""

        if event.event_type != events.DOCUMENT_OPEN.name or event.outcome != events.Outcome.GRANTED:
            return
        logger.error("audit writer: open %s committed but not delivered (%s)", event.event_id, why)
        follow_up = _second_event(event, why)
        try:
            pending = _Pending(follow_up)
        except (TypeError, ValueError):
            logger.exception("audit writer: the second event of open %s could not be made", event.event_id)
            return
        pending.abandoned = True  # nobody waits for it
        self._follow_ups.append(pending)

    def _head_for(self, conn: BaseDatabaseWrapper) -> _Head:
        """This connection's own chain: claimed (advisory lock) when the connection is new."""

        conn.ensure_connection()
        raw = conn.connection
        local = self._local
        if getattr(local, "head", None) is None or local.connection is not raw:
            # A head row locked by someone else's long transaction must not hold every
            # request in this process: the batch fails after lock_timeout and is retried.
            timeouts = [
                f"{settings.AUDIT_LOCK_TIMEOUT_MS}ms".encode(),
                f"{settings.AUDIT_STATEMENT_TIMEOUT_MS}ms".encode(),
            ]
            _timed(
                raw,
                lambda pg: pg.send_query_params(
                    b"SELECT set_config('lock_timeout', $1, false), set_config('statement_timeout', $2, false)",
                    timeouts,
                ),
            )
            claimed = _timed(
                raw,
                lambda pg: pg.send_query_params(
                    b"SELECT * FROM audit_claim_writer_chain($1, $2)",
                    [str(chain.WRITER_CHAINS.start).encode(), str(chain.WRITER_CHAINS.stop - 1).encode()],
                ),
            )
            _timed(raw, lambda pg: pg.send_prepare(_APPEND_NAME, _APPEND.encode()))
            values = [claimed.get_value(0, i) or b"" for i in range(3)]
            local.head = _Head(chain=int(values[0]), seq=int(values[1]), last_hash=values[2].decode())
            local.connection = raw
        head: _Head = local.head
        return head

    def _reset_connection(self) -> None:
        # After a failure the connection may be broken or mid-transaction: start afresh.
        # Closing it also frees its chain; the next connection claims one and reloads it.
        try:
            connections[self.alias].close()
        except Exception:  # noqa: BLE001 - closing a dead connection may itself fail
            logger.warning("audit writer: closing the failed connection failed")
        self._local.head = None
        self._local.connection = None

    def _answer(self, batch: list[_Pending], error: BaseException | None) -> None:
        if error is not None:
            # The fact, never the content (an event may carry a national id).
            logger.error("audit write failed: %s", type(error).__name__)
        for pending in batch:
            if error is not None:
                pending.event.pk = None
            elif pending.abandoned:
                # Committed after its request stopped waiting and answered the 503 page.
                self._not_delivered(pending.event, "answer_not_sent")
            pending.answer(error)


IN_DOUBT_MAX = 10_000  # events in doubt kept per process (the newest)


def _committed(conn: BaseDatabaseWrapper, events_: list[AccessEvent]) -> dict[str, int]:
    """Which of these events are in the log: their event_id to their id."""

    if not events_:
        return {}
    times = [e.occurred_at for e in events_]
    slack = datetime.timedelta(seconds=1)
    with conn.cursor() as cursor:
        cursor.execute(
            "SELECT event_id::text, id FROM audit_accessevent "
            "WHERE event_id = ANY(%s::uuid[]) AND occurred_at BETWEEN %s AND %s",
            [[str(e.event_id) for e in events_], min(times) - slack, max(times) + slack],
        )
        return {event_id: int(pk) for event_id, pk in cursor.fetchall()}


def _mark_saved(event: AccessEvent, pk: int, alias: str) -> None:
    event.pk = pk
    event._state.adding = False
    event._state.db = alias


def _second_event(event: AccessEvent, why: str) -> AccessEvent:
    """The `interrupted` event after a granted open that was never delivered: the same
    clinician, patient, attest and document, now."""

    follow_up = copy.copy(event)
    follow_up._state = ModelState()
    follow_up.pk = None
    follow_up.event_id = uuid.uuid4()
    follow_up.occurred_at = timezone.now()
    follow_up.outcome = events.Outcome.INTERRUPTED
    follow_up.reason_code = "not_delivered"
    follow_up.flagged_for_review = False
    follow_up.details = {**(event.details or {}), "delivered_bytes": 0, "unavailable": why}
    follow_up.chain, follow_up.chain_seq, follow_up.prev_hash, follow_up.entry_hash = 0, 0, "", ""
    return follow_up


# Migrations 0013/0014. Prepared by name on each new connection and run straight through
# libpq: the wait for the database is without Python's GIL, so the requests' threads go
# on making the next batch meanwhile.
_APPEND_NAME = b"pjd_audit_append_batch"
_APPEND = (
    "SELECT new_id, new_event_id "
    "FROM audit_append_batch($1::smallint, $2::bigint, $3::varchar, $4::varchar, $5::jsonb)"
)


def _timed(raw: psycopg.Connection[Any], send: Callable[[PGconn], None]) -> PGresult:
    """Send one command through libpq and wait for its answer, but not for ever: a network
    that swallows packets (no reset, no answer) would otherwise hold this writer, and so
    every request of the process, until TCP gives up (minutes). The wait is in select(),
    without Python's GIL. On time-out the connection is useless; the caller closes it."""

    pg = raw.pgconn
    deadline = time.monotonic() + settings.AUDIT_STATEMENT_TIMEOUT_MS / 1000 + 1.0
    send(pg)
    while pg.flush():  # the connection is non-blocking: push the rest of the command out
        if not select.select([], [pg.socket], [], max(0.0, deadline - time.monotonic()))[1]:
            raise psycopg.OperationalError("audit write timed out sending")
    result: PGresult | None = None
    while True:
        while pg.is_busy():
            if not select.select([pg.socket], [], [], max(0.0, deadline - time.monotonic()))[0]:
                raise psycopg.OperationalError("audit write timed out waiting for the database")
            pg.consume_input()
        next_result = pg.get_result()
        if next_result is None:
            break
        if result is None or result.status in (ExecStatus.COMMAND_OK, ExecStatus.TUPLES_OK):
            result = next_result  # keep the first failure, if any
    if result is None or pg.status != ConnStatus.OK:
        # A connection that died answers without an SQLSTATE: say so as what it is.
        raise psycopg.OperationalError(pg.error_message.decode(errors="replace") or "connection lost")
    if result.status not in (ExecStatus.COMMAND_OK, ExecStatus.TUPLES_OK):
        raise psycopg.errors.error_from_result(result, encoding=raw.info.encoding)
    return result


def _append(
    conn: BaseDatabaseWrapper, head: _Head, events: list[AccessEvent], contents: list[tuple[str, str]]
) -> None:
    """Link the batch onto this writer's chain, insert it and commit: one round trip.

    `contents` are the events' content JSON and digests, made by the requests' threads.
    The links are made here, from the head as this writer last committed it; the database
    moves the head on only if it is still there (else nothing is written and the caller
    reconnects, which reloads it). Each row is sent as the very JSON its digest was made
    from, plus its place and hash. One statement in autocommit is one transaction: when it
    returns, the batch is committed.
    """

    seq, last = head.seq, head.last_hash
    rows = []
    for event, (canonical, digest) in zip(events, contents, strict=True):
        seq += 1
        event.chain, event.chain_seq, event.prev_hash = head.chain, seq, last
        event.entry_hash = link = chain.link_hash(last, head.chain, seq, digest)
        rows.append(
            f'{canonical[:-1]},"chain":{head.chain},"chain_seq":{seq},"prev_hash":"{last}","entry_hash":"{link}"}}'
        )
        last = link
    raw = conn.connection
    assert raw is not None and raw.autocommit  # Django's default: the statement commits
    assert raw.pgconn.transaction_status == TransactionStatus.IDLE
    params = [
        str(head.chain).encode(),
        str(head.seq).encode(),
        head.last_hash.encode(),
        last.encode(),
        f"[{','.join(rows)}]".encode(),
    ]
    result = _timed(raw, lambda pg: pg.send_query_prepared(_APPEND_NAME, params))
    ids = {result.get_value(i, 1): int(result.get_value(i, 0) or 0) for i in range(result.ntuples)}
    head.seq, head.last_hash = seq, last
    for event in events:
        _mark_saved(event, ids[str(event.event_id).encode()], conn.alias)


_committer = GroupCommitter()


def committer() -> GroupCommitter:
    return _committer
