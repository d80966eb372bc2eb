"""A circuit breaker per document source: after N consecutive failures the source is not
asked for a cool-down period (callers answer at once), then one trial request is let
through (half-open); its success closes the breaker, its failure opens it again."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from django.conf import settings

CLOSED = "closed"
OPEN = "open"
HALF_OPEN = "half_open"


class CircuitBreaker:
    def __init__(
        self,
        name: str,
        *,
        failure_threshold: int,
        cooldown_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.failure_threshold = max(1, failure_threshold)
        self.cooldown_seconds = cooldown_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._state = CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._trial_in_flight = False

    @property
    def state(self) -> str:
        with self._lock:
            if self._state == OPEN and self._clock() - self._opened_at >= self.cooldown_seconds:
                return HALF_OPEN
            return self._state

    def allow(self) -> bool:
        """May a request be made now? While open: no. After the cool-down: one trial."""

        with self._lock:
            if self._state == CLOSED:
                return True
            if self._state == OPEN:
                if self._clock() - self._opened_at < self.cooldown_seconds:
                    return False
                self._state = HALF_OPEN
                self._trial_in_flight = False
            if self._trial_in_flight:
                return False
            self._trial_in_flight = True
            return True

    def record_success(self) -> None:
        with self._lock:
            self._state = CLOSED
            self._failures = 0
            self._trial_in_flight = False

    def record_failure(self) -> None:
        with self._lock:
            self._failures += 1
            self._trial_in_flight = False
            if self._state == HALF_OPEN or self._failures >= self.failure_threshold:
                self._state = OPEN
                self._opened_at = self._clock()


_registry: dict[str, CircuitBreaker] = {}
_registry_lock = threading.Lock()


def breaker_for(key: str) -> CircuitBreaker:
    """The process-wide breaker for one source (keyed by its base URL), as configured."""

    with _registry_lock:
        breaker = _registry.get(key)
        if breaker is None:
            breaker = CircuitBreaker(
                key,
                failure_threshold=settings.DOCUMENT_SOURCE_BREAKER_FAILURES,
                cooldown_seconds=settings.DOCUMENT_SOURCE_BREAKER_COOLDOWN,
            )
            _registry[key] = breaker
        return breaker


def reset_breakers() -> None:
    with _registry_lock:
        _registry.clear()
