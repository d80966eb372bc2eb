"""Counts, not guesses: the database round trips a request made, in response headers.

`X-Bench-Round-Trips` is what the request's own connection sent: every statement through
Django's cursors (the execute wrapper sees savepoints too), plus two per transaction that
reached the server (psycopg 3 outside pipeline mode sends BEGIN before the first statement
and COMMIT or ROLLBACK on its own), plus Django's health check (`SELECT 1` straight on the
psycopg connection, once per request with conn_health_checks). A new connection's handshake
is not a statement; it is counted apart (`X-Bench-Connects`), as sequential requests on a
warm server do not make one.

`X-Bench-Audit-Writer` is what the access log's group writer sent meanwhile (its own
connection, its own thread, so no execute wrapper sees it): every command it sends goes
through `group_commit._timed`, which is wrapped here. At concurrency 1 nothing else runs,
so the difference is what this request waited for.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections
from django.http import HttpRequest, HttpResponse
from psycopg.pq import TransactionStatus

from pjd_portal.auditlog import group_commit

GetResponse = Callable[[HttpRequest], HttpResponse]


class _WriterCount:
    """The group writer's commands in this process. Only its one thread sends them; the
    lock keeps the count exact should a second writer thread ever exist."""

    def __init__(self) -> None:
        self.value = 0
        self._lock = threading.Lock()

    def add(self) -> None:
        with self._lock:
            self.value += 1


WRITER_COMMANDS = _WriterCount()
_original_timed = group_commit._timed


def _counted_timed(raw: Any, send: Any) -> Any:
    WRITER_COMMANDS.add()
    return _original_timed(raw, send)


group_commit._timed = _counted_timed


class _RequestCount:
    def __init__(self) -> None:
        self.statements = 0
        self.transactions = 0
        self.health_checks = 0
        self.connects = 0

    @property
    def round_trips(self) -> int:
        return self.statements + 2 * self.transactions + self.health_checks

    def statement(
        self,
        execute: Callable[..., Any],
        sql: str,
        params: Sequence[Any] | Mapping[str, Any] | None,
        many: bool,
        context: dict[str, Any],
    ) -> Any:
        # One per call: psycopg 3 runs executemany in pipeline mode, one round trip.
        self.statements += 1
        return execute(sql, params, many, context)


class RoundTripMiddleware:
    def __init__(self, get_response: GetResponse) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        wrapper = connections[DEFAULT_DB_ALIAS]  # this thread's own connection
        count = _RequestCount()
        writer_before = WRITER_COMMANDS.value
        self._watch(wrapper, count)
        try:
            with wrapper.execute_wrapper(count.statement):
                response = self.get_response(request)
        finally:
            for name in ("_commit", "_rollback", "is_usable", "connect"):
                wrapper.__dict__.pop(name, None)
        response["X-Bench-Round-Trips"] = str(count.round_trips)
        response["X-Bench-Statements"] = str(count.statements)
        response["X-Bench-Transactions"] = str(count.transactions)
        response["X-Bench-Connects"] = str(count.connects)
        response["X-Bench-Audit-Writer"] = str(WRITER_COMMANDS.value - writer_before)
        return response

    @staticmethod
    def _watch(wrapper: Any, count: _RequestCount) -> None:
        """Shadow the connection's own methods on this instance for this request (the
        wrapper is this thread's alone, so no other request sees them)."""

        cls = type(wrapper)

        def ended(method: Callable[[Any], None]) -> Callable[[], None]:
            def end() -> None:
                raw = wrapper.connection
                # An empty atomic block never sent BEGIN, and psycopg sends no COMMIT for it.
                if raw is not None and raw.pgconn.transaction_status != TransactionStatus.IDLE:
                    count.transactions += 1
                method(wrapper)

            return end

        def is_usable() -> bool:
            count.health_checks += 1
            return bool(cls.is_usable(wrapper))

        def connect() -> None:
            count.connects += 1
            cls.connect(wrapper)

        wrapper._commit = ended(cls._commit)
        wrapper._rollback = ended(cls._rollback)
        wrapper.is_usable = is_usable
        wrapper.connect = connect
