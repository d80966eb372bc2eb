"""A circuit breaker per document source: after N consecutive failures the source is not
asked for a cool-down period (callers answer at once), then one trial request is let
through (half-open); its success closes the breaker, its failure opens it again.

The breaker's state lives in a storage, as pybreaker's does: the breakers the portal uses
(`breaker_for`) keep theirs on the shared cache (`CacheStorage`: Redis in production, the
database cache in the demo), so that a source found down by one process is not asked by any
other until the cool-down has passed, and only one process makes the trial. `LocalStorage`
(this process's memory) is for a breaker made by hand (the tests of the breaker itself).
Times are wall-clock seconds, the one clock the processes share.

The cache is asked atomically where two processes could race: the failures are counted
with `incr` and the trial is claimed with `add` (atomic on Redis; on the database cache
`incr` is a read and a write, so in the demo a failure may go uncounted when two land at
once: the breaker then opens one failure later). A cache that does not answer makes the
breaker closed (the source is asked): it saves waiting, it never decides an access.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

from django.conf import settings
from django.core.cache import cache

logger = logging.getLogger(__name__)

CLOSED = "closed"
OPEN = "open"
HALF_OPEN = "half_open"
# Consecutive failures are forgotten after this long without another (and an opened state
# after the cool-down and this long, when nothing asked the source since).
MEMORY_SECONDS = 3600
# A trial is held at least this long (or a cool-down, if longer): more than one exchange
# with a source takes with its timeouts and retry, so no second process makes a trial
# meanwhile; a process that died during its trial holds it no longer than that.
TRIAL_SECONDS = 15.0


class BreakerStorage(Protocol):
    def opened_at(self) -> float | None: ...
    def claim_trial(self, now: float, seconds: float) -> bool: ...
    def add_failure(self) -> int: ...
    def open(self, now: float, cooldown: float) -> None: ...
    def close(self) -> None: ...


class LocalStorage:
    """The state in this process's memory."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._opened_at: float | None = None
        self._failures = 0
        self._trial_until = 0.0

    def opened_at(self) -> float | None:
        with self._lock:
            return self._opened_at

    def claim_trial(self, now: float, seconds: float) -> bool:
        with self._lock:
            if now < self._trial_until:
                return False
            self._trial_until = now + seconds
            return True

    def add_failure(self) -> int:
        with self._lock:
            self._failures += 1
            return self._failures

    def open(self, now: float, cooldown: float) -> None:
        with self._lock:
            self._opened_at = now
            self._trial_until = 0.0

    def close(self) -> None:
        with self._lock:
            self._opened_at = None
            self._failures = 0
            self._trial_until = 0.0


class CacheStorage:
    """The state on the shared cache, three keys per breaker."""

    def __init__(self, name: str) -> None:
        digest = hashlib.sha256(name.encode()).hexdigest()[:32]
        self._opened = f"pjd:breaker:{digest}:opened"
        self._failures = f"pjd:breaker:{digest}:failures"
        self._trial = f"pjd:breaker:{digest}:trial"

    @staticmethod
    def _failed(doing: str, exc: Exception) -> None:
        logger.warning("circuit breaker state unavailable on %s: %s", doing, type(exc).__name__)

    def opened_at(self) -> float | None:
        try:
            value = cache.get(self._opened)
        except Exception as exc:  # noqa: BLE001 - whatever the cache backend raises: closed
            self._failed("read", exc)
            return None
        return float(value) if isinstance(value, int | float) else None

    def claim_trial(self, now: float, seconds: float) -> bool:
        # One process wins the add; the claim ends by itself (TRIAL_SECONDS), so a
        # process that died during its trial does not keep the source closed off.
        try:
            return bool(cache.add(self._trial, now, timeout=max(1, int(seconds))))
        except Exception as exc:  # noqa: BLE001
            self._failed("trial", exc)
            return True

    def add_failure(self) -> int:
        try:
            cache.add(self._failures, 0, timeout=MEMORY_SECONDS)
            try:
                return int(cache.incr(self._failures))
            except ValueError:  # expired between the add and the incr
                cache.set(self._failures, 1, timeout=MEMORY_SECONDS)
                return 1
        except Exception as exc:  # noqa: BLE001
            self._failed("failure", exc)
            return 0

    def open(self, now: float, cooldown: float) -> None:
        try:
            cache.set(self._opened, now, timeout=int(cooldown) + MEMORY_SECONDS)
            cache.delete(self._trial)
        except Exception as exc:  # noqa: BLE001
            self._failed("open", exc)

    def close(self) -> None:
        try:
            cache.delete_many([self._opened, self._failures, self._trial])
        except Exception as exc:  # noqa: BLE001
            self._failed("close", exc)


class CircuitBreaker:
    def __init__(
        self,
        name: str,
        *,
        failure_threshold: int,
        cooldown_seconds: float,
        clock: Callable[[], float] = time.time,
        storage: BreakerStorage | None = None,
    ) -> None:
        self.name = name
        self.failure_threshold = max(1, failure_threshold)
        self.cooldown_seconds = cooldown_seconds
        self._clock = clock
        self.storage: BreakerStorage = storage if storage is not None else LocalStorage()

    @property
    def state(self) -> str:
        opened = self.storage.opened_at()
        if opened is None:
            return CLOSED
        return OPEN if self._clock() - opened < self.cooldown_seconds else HALF_OPEN

    def allow(self) -> bool:
        """May a request be made now? While open: no. After the cool-down: one trial."""

        opened = self.storage.opened_at()
        if opened is None:
            return True
        now = self._clock()
        if now - opened < self.cooldown_seconds:
            return False
        return self.storage.claim_trial(now, max(TRIAL_SECONDS, self.cooldown_seconds))

    def record_success(self) -> None:
        self.storage.close()

    def record_failure(self) -> None:
        if self.storage.opened_at() is not None:
            # The trial failed (or a request let through before it opened): open anew.
            self.storage.open(self._clock(), self.cooldown_seconds)
        elif self.storage.add_failure() >= self.failure_threshold:
            self.storage.open(self._clock(), self.cooldown_seconds)


_registry: dict[str, CircuitBreaker] = {}
_registry_lock = threading.Lock()


def breaker_for(key: str) -> CircuitBreaker:
    """The breaker for one source (keyed by its base URL), as configured; its state is on
    the shared cache, the same in every process."""

    with _registry_lock:
        breaker = _registry.get(key)
        if breaker is None:
            breaker = CircuitBreaker(
                key,
                failure_threshold=settings.DOCUMENT_SOURCE_BREAKER_FAILURES,
                cooldown_seconds=settings.DOCUMENT_SOURCE_BREAKER_COOLDOWN,
                storage=CacheStorage(key),
            )
            _registry[key] = breaker
        return breaker


def reset_breakers() -> None:
    """Close every breaker this process has used (their shared state too)."""

    with _registry_lock:
        for breaker in _registry.values():
            breaker.record_success()
        _registry.clear()
