"""Rate limits on the shared cache: how many requests one caller may make per window.

django-ratelimit counts (its fixed windows, its cache keys, `add` then `incr`: atomic on
Redis); this module says what is counted and what a refusal is. A limit is per caller and
per window: a clinician's patient lookups (clinic/patient_views.py), the citizen portal's
calls (citizen_api/views.py), each per minute and per hour (settings.RATE_*, 0: none).
Every request counts, the refused ones too, so a caller who keeps trying stays refused
until the window ends.

A cache that does not answer lets the request through (and says so in the application
log): the limit guards against browsing and floods, it decides no access; every lookup is
logged whatever the limit does, and the log review's signals read the log, not the cache.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from django.core.cache import cache
from django_ratelimit.core import get_usage

logger = logging.getLogger(__name__)

PERIODS = {"m": 60, "h": 3600}


@dataclass(frozen=True)
class Limit:
    count: int  # 0: no limit
    period: str  # "m" or "h"

    @property
    def seconds(self) -> int:
        return PERIODS[self.period]

    @property
    def rate(self) -> str:
        return f"{self.count}/{self.period}"


@dataclass(frozen=True)
class Refusal:
    """Over a limit: which, and when the caller may try again (seconds)."""

    limit: Limit
    retry_after: int


def count_and_check(*, group: str, caller: str, limits: Sequence[Limit]) -> Refusal | None:
    """Count one request against each limit of `group` for `caller`; the first limit it
    is over, or None. `caller` is an opaque key (a user's id, a client id), never a
    national id. The count is by caller alone, for every method: django-ratelimit reads
    the request only for keys and methods taken from it, so it is given none."""

    refusal: Refusal | None = None
    for limit in limits:
        if limit.count <= 0:
            continue
        try:
            usage = get_usage(
                None,
                group=f"{group}.{limit.period}",
                key=lambda _group, _request: caller,
                rate=limit.rate,
                increment=True,
            )
        except Exception as exc:  # noqa: BLE001 - whatever the cache backend raises: see above
            logger.warning("rate limit %s not counted: %s", group, type(exc).__name__)
            continue
        if usage is None or not usage["should_limit"] or refusal is not None:
            continue
        if usage["limit"] == 0:  # the cache would not count (django-ratelimit's answer)
            logger.warning("rate limit %s not counted: the cache gave no count", group)
            continue
        refusal = Refusal(limit=limit, retry_after=max(1, min(int(usage["time_left"]), limit.seconds)))
    return refusal


def first_refusal(*, group: str, caller: str, refusal: Refusal) -> bool:
    """Is this the caller's first refusal by this limit in its window? Only that one is
    logged as an event: a caller who keeps trying must not fill the access log. A cache
    that does not answer says yes (one event too many rather than none)."""

    key = f"pjd:rate-refused:{group}.{refusal.limit.period}:{caller}"
    try:
        return bool(cache.add(key, 1, timeout=refusal.retry_after))
    except Exception as exc:  # noqa: BLE001 - whatever the cache backend raises
        logger.warning("rate limit %s: refusal not deduplicated: %s", group, type(exc).__name__)
        return True
