"""Reads from a streaming replica, for the pages that only read the log (docs/operations.md,
"The read replica").

Django's routers decide per model, but whether a read may go to the replica depends on the
page: the log review's search reads access events from the replica, the clinician's list
reads the same models from the primary. So a page that may read from the replica says so
(`replica_reads`, around the view, inside its access gate), and the router reads that
request-scoped decision from a context variable. Everything else stays on the primary:

- every write, wherever it is made (`db_for_write` is always the primary, also for a row
  that was read from the replica);
- every read inside a transaction on the primary: a read that decides a write (the audit
  chain's head, a review item's status under `select_for_update`) sees that transaction;
- every model outside REPLICA_APPS: sessions, accounts, roles and permissions are read from
  the primary on every page, so a role revoked a moment ago is revoked here too;
- every page not marked, above all the clinician's path (lookup, basis, list, open).

Before a marked page reads, it asks how far behind the replica is (`measure`). A replica
that is down, not replaying (promoted, or pointed at a primary), further behind than
PJD_REPLICA_MAX_LAG_SECONDS, or without the user's own last change (`note_primary_write`)
is not used: the page reads from the primary and says so. The page never fails for the
replica's sake before it reads; a replica that fails in the middle of a page is a database
error like any other (the 503 page).
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import wraps
from typing import Any

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections
from django.db.models import Model
from django.http import HttpRequest
from django.http.response import HttpResponseBase

logger = logging.getLogger(__name__)

# The apps whose rows a marked page may read from the replica: the log, its stored signals,
# the review queue, and the patients and documents the log names. Not accounts, roles,
# guardian's permissions, sessions or the task queue: who may read is decided on the primary.
REPLICA_APPS = frozenset({"audit", "logreading", "review", "patients", "documents"})  # app labels

# The primary's WAL position after the user's own last change (review status), in the session.
SESSION_KEY = "pjd_primary_lsn"


class Fallback:
    """Why a marked page read from the primary after all (ReplicaState.fallback)."""

    UNAVAILABLE = "unavailable"  # no connection, or the measuring query failed
    NOT_REPLAYING = "not_replaying"  # the server is not in recovery: not a replica (any more)
    BEHIND = "behind"  # further behind than PJD_REPLICA_MAX_LAG_SECONDS, or not known how far
    OWN_WRITE = "own_write"  # the user's own last change has not reached it yet


@dataclass(frozen=True)
class ReplicaState:
    """Where one page's reads go, and what the page says about it."""

    alias: str
    lag_seconds: float | None = None  # how far behind the replica is, at most (None: not known)
    fallback: str = ""  # "" when the replica is used; otherwise a Fallback

    @property
    def on_replica(self) -> bool:
        return self.alias != DEFAULT_DB_ALIAS

    @property
    def lag_whole_seconds(self) -> int:
        """The delay rounded up: "up to N seconds" must not understate it."""

        return math.ceil(self.lag_seconds) if self.lag_seconds is not None else 0


_current: contextvars.ContextVar[ReplicaState | None] = contextvars.ContextVar("pjd_replica", default=None)


def current() -> ReplicaState | None:
    """This request's replica decision, inside a marked page; None elsewhere."""

    return _current.get()


def configured_alias() -> str:
    return str(getattr(settings, "REPLICA_DATABASE", "") or "")


class ReplicaRouter:
    """DATABASE_ROUTERS: the replica for REPLICA_APPS' reads inside a marked page, the
    primary for everything else."""

    def db_for_read(self, model: type[Model], **hints: Any) -> str:
        state = _current.get()
        if (
            state is None
            or not state.on_replica
            or model._meta.app_label not in REPLICA_APPS
            # A read inside a write's transaction belongs to that transaction.
            or connections[DEFAULT_DB_ALIAS].in_atomic_block
        ):
            return DEFAULT_DB_ALIAS
        return state.alias

    def db_for_write(self, model: type[Model], **hints: Any) -> str:
        # Explicit: without it Django saves a row to the database it was read from.
        return DEFAULT_DB_ALIAS

    def allow_relation(self, obj1: Model, obj2: Model, **hints: Any) -> bool:
        return True  # the replica holds the primary's rows: the same database, later

    def allow_migrate(self, db: str, app_label: str, **hints: Any) -> bool:
        return db == DEFAULT_DB_ALIAS  # the replica is read-only; it replays the primary's schema


# --- how far behind ---------------------------------------------------------------------

# After a replica failed, this process reads from the primary for PJD_REPLICA_RETRY_SECONDS
# without trying again: a down replica must not cost every page its connect timeout. Per
# process on purpose: it only saves time, each process finds out for itself.
_down_until = 0.0


@dataclass(frozen=True)
class Measure:
    in_recovery: bool
    caught_up: bool  # replayed everything the primary had written when asked
    has_own_write: bool  # replayed the user's own last change
    replay_age_seconds: float | None  # since the last transaction it replayed (None: none yet)


_PRIMARY_LSN_SQL = "SELECT pg_current_wal_lsn()::text"
# Asked of the replica after the primary's position was read, so "caught up" means: every
# commit made before this page began is there. An idle primary writes no WAL, and the last
# replayed transaction then looks old by the wall clock: the positions are compared first,
# and the time since the last replay counts only when the replica is behind (it is then an
# upper bound of what the page may lack: the first missing commit is no older than that).
_REPLICA_SQL = """
SELECT pg_is_in_recovery(),
       coalesce(pg_last_wal_replay_lsn() >= %s::pg_lsn, false),
       coalesce(pg_last_wal_replay_lsn() >= %s::pg_lsn, false),
       extract(epoch FROM clock_timestamp() - pg_last_xact_replay_timestamp())::float8
"""


def primary_lsn() -> str:
    """The primary's WAL position now. Raises DatabaseError (the primary is down: the 503 page)."""

    with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
        cursor.execute(_PRIMARY_LSN_SQL)
        return str(cursor.fetchone()[0])


def measure(alias: str, primary_position: str, own_write_lsn: str) -> Measure:
    """The replica's position against the primary's. Raises DatabaseError."""

    with connections[alias].cursor() as cursor:
        cursor.execute(_REPLICA_SQL, [primary_position, own_write_lsn or "0/0"])
        in_recovery, caught_up, has_own_write, age = cursor.fetchone()
    return Measure(
        in_recovery=bool(in_recovery),
        caught_up=bool(caught_up),
        has_own_write=bool(has_own_write),
        replay_age_seconds=None if age is None else max(0.0, float(age)),
    )


def _decide(alias: str, found: Measure) -> ReplicaState:
    if not found.in_recovery:
        return ReplicaState(DEFAULT_DB_ALIAS, fallback=Fallback.NOT_REPLAYING)
    if not found.has_own_write:
        return ReplicaState(DEFAULT_DB_ALIAS, fallback=Fallback.OWN_WRITE)
    if found.caught_up:
        return ReplicaState(alias, lag_seconds=0.0)
    lag = found.replay_age_seconds
    if lag is None or lag > settings.REPLICA_MAX_LAG_SECONDS:
        return ReplicaState(DEFAULT_DB_ALIAS, lag_seconds=lag, fallback=Fallback.BEHIND)
    return ReplicaState(alias, lag_seconds=lag)


def choose(own_write_lsn: str = "") -> ReplicaState:
    """Where a marked page reads from: the replica if it is up and close enough behind."""

    alias = configured_alias()
    if not alias:
        return ReplicaState(DEFAULT_DB_ALIAS)
    if time.monotonic() < _down_until:
        return ReplicaState(DEFAULT_DB_ALIAS, fallback=Fallback.UNAVAILABLE)
    position = primary_lsn()  # first: "caught up" then covers every commit before this page
    try:
        found = measure(alias, position, own_write_lsn)
    except DatabaseError as exc:
        _set_aside(alias, exc)
        return ReplicaState(DEFAULT_DB_ALIAS, fallback=Fallback.UNAVAILABLE)
    state = _decide(alias, found)
    if state.fallback == Fallback.BEHIND:
        logger.warning("read replica %s s behind; reading from the primary", state.lag_whole_seconds)
    return state


def _set_aside(alias: str, exc: BaseException) -> None:
    """The replica failed: this process reads from the primary for PJD_REPLICA_RETRY_SECONDS."""

    global _down_until  # noqa: PLW0603 - see _down_until
    _down_until = time.monotonic() + settings.REPLICA_RETRY_SECONDS
    logger.warning("read replica unavailable (%s); reading from the primary", type(exc).__name__)
    with contextlib.suppress(DatabaseError):
        connections[alias].close()


def reset() -> None:
    """Forget a replica failure (tests, and after an operator fixed it: a restart does too)."""

    global _down_until  # noqa: PLW0603 - see _down_until
    _down_until = 0.0


# --- marking a page ---------------------------------------------------------------------


def _own_write_lsn(request: HttpRequest) -> str:
    session = getattr(request, "session", None)
    return str(session.get(SESSION_KEY, "")) if session is not None else ""


@contextlib.contextmanager
def reading_from_replica(request: HttpRequest | None = None) -> Iterator[ReplicaState]:
    """Inside: REPLICA_APPS' reads go to the replica, if it is fit (see `choose`)."""

    if not configured_alias():
        token = _current.set(ReplicaState(DEFAULT_DB_ALIAS))
    else:
        token = _current.set(choose(_own_write_lsn(request) if request is not None else ""))
    state = _current.get() or ReplicaState(DEFAULT_DB_ALIAS)
    try:
        yield state
    except DatabaseError as exc:
        # It failed in the middle of the page (the 503 page, as any database error): the
        # user's next try reads from the primary.
        if state.on_replica:
            _set_aside(state.alias, exc)
        raise
    finally:
        _current.reset(token)


def _in_state(state: ReplicaState, chunks: Iterable[Any]) -> Iterator[Any]:
    """A streamed body's chunks made under the page's decision: the stream runs after the
    view has returned (the CSV export reads its rows there)."""

    iterator = iter(chunks)
    while True:
        token = _current.set(state)
        try:
            chunk = next(iterator)
        except StopIteration:
            return
        except DatabaseError as exc:
            if state.on_replica:
                _set_aside(state.alias, exc)
            raise
        finally:
            _current.reset(token)
        yield chunk


View = Callable[..., HttpResponseBase]


def replica_reads(view: View) -> View:
    """Mark a view whose reads of the log may go to the replica. Put it under the access
    gate, so that the gate's own reads (the person's roles) stay on the primary."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        with reading_from_replica(request) as state:
            response = view(request, *args, **kwargs)
        if response.streaming:
            response.streaming_content = _in_state(state, response.streaming_content)  # type: ignore[attr-defined]
        return response

    return wrapper


def note_primary_write(request: HttpRequest) -> None:
    """After the user's own change, their next marked page reads from the replica only once
    the replica has it (read your own writes): the primary's position goes in the session."""

    if not configured_alias() or connections[DEFAULT_DB_ALIAS].vendor != "postgresql":
        return
    request.session[SESSION_KEY] = primary_lsn()


def template_context(request: HttpRequest) -> dict[str, Any]:
    """Context processor: `log_replica`, this page's decision, when a replica is configured."""

    state = _current.get()
    return {"log_replica": state} if state is not None and configured_alias() else {}
