"""Building the review queue: the flagged events and a random sample of the rest.

Run by `manage.py build_review_queue` (nightly). The signals are those stored for each
event within minutes of the access (`logreading.stored_signals`, the facts as they were
then); an event not computed yet is computed here with the same rules and thresholds, and
stored. The item keeps them as they were when it was queued. An event gets at most one item per reviewing organisation (a unique
constraint), so running the command again, or twice at once, adds nothing new for the
events already queued.

The sample is a random draw per event, keyed (HMAC-SHA256 of the event's UUID with a
secret key, settings.REVIEW_QUEUE_SAMPLE_KEY or one derived from SECRET_KEY): the same
event always gets the same draw, so a rerun over the same day does not grow the sample,
and no clinician can tell in advance which accesses will be drawn.

The sample is drawn only from the accesses no signal fired on (for that reviewing
organisation), so that it shows what the signals miss. A night where most accesses are
flagged (a night shift's are all outside working hours) would leave the draw nearly
nothing to draw from, and often no sample at all: so each run takes at least
REVIEW_QUEUE_SAMPLE_MIN accesses per reviewing organisation whenever sampling is on (rate
above 0) and such accesses exist, the ones with the lowest draws: still keyed, still
unpredictable, and a rerun finds them queued and adds none.
"""

from __future__ import annotations

import datetime
import hashlib
import heapq
import hmac
import uuid
from dataclasses import dataclass

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from pjd_portal.auditlog.models import AccessEvent
from pjd_portal.logreading import risk, stored_signals
from pjd_portal.review.models import ReviewItem

CHUNK = 500
_KEY_SALT = b"pjd_portal.review.sample"


def sample_key() -> bytes:
    configured = settings.REVIEW_QUEUE_SAMPLE_KEY
    if configured:
        return configured.encode()
    return hmac.new(settings.SECRET_KEY.encode(), _KEY_SALT, hashlib.sha256).digest()


def draw(event_id: uuid.UUID, key: bytes) -> int:
    """The event's draw: a uniform integer in [0, 2**64) from the keyed hash."""

    digest = hmac.new(key, event_id.bytes, hashlib.sha256).digest()
    return int.from_bytes(digest[:8], "big")


def is_sampled(event_id: uuid.UUID, rate: float, key: bytes) -> bool:
    """The event's draw, as a number in [0, 1), is below `rate`."""

    return draw(event_id, key) < rate * 2**64


@dataclass
class QueueCounts:
    examined: int = 0
    flagged: int = 0  # new items with a signal
    sampled: int = 0  # new items from the sample
    already: int = 0  # events that already had an item


def build_queue(
    since: datetime.datetime,
    until: datetime.datetime | None = None,
    *,
    rate: float | None = None,
    key: bytes | None = None,
    thresholds: risk.Thresholds | None = None,
    minimum: int | None = None,
) -> QueueCounts:
    """Queue the events in [since, until) that an organisation's auditors can see."""

    until = until or timezone.now()
    rate = settings.REVIEW_QUEUE_SAMPLE_RATE if rate is None else rate
    key = key or sample_key()
    thresholds = thresholds or risk.Thresholds.from_settings()
    minimum = settings.REVIEW_QUEUE_SAMPLE_MIN if minimum is None else minimum
    counts = QueueCounts()
    sample = _MinimumSample(minimum if rate > 0 else 0)
    base = AccessEvent.objects.filter(occurred_at__gte=since, occurred_at__lt=until).filter(
        ~Q(organisation_orgnr="") | ~Q(source_orgnr="")  # in some auditor's scope
    )
    after: tuple[datetime.datetime, int] | None = None
    while True:
        query = base
        if after is not None:
            query = query.filter(Q(occurred_at__gt=after[0]) | Q(occurred_at=after[0], pk__gt=after[1]))
        events = list(query.order_by("occurred_at", "pk")[:CHUNK])
        if not events:
            counts.sampled += sample.fill()
            return counts
        after = (events[-1].occurred_at, events[-1].pk)
        counts.examined += len(events)
        # The signals as they were at the time of access (stored within minutes by
        # compute_signals); any not stored yet are computed and stored now.
        stored = stored_signals.signals_of(events, thresholds)
        queued = {
            (event_id, reviewer): sampled
            for event_id, reviewer, sampled in ReviewItem.objects.filter(
                event_id__in=[e.event_id for e in events]
            ).values_list("event_id", "reviewer_orgnr", "sampled")
        }
        now = timezone.now()
        new: list[ReviewItem] = []
        for event in events:
            for reviewer in stored_signals.reviewers(event):
                # Each reviewing organisation gets only the signals within its scope.
                signals = stored.get((event.pk, reviewer), ())
                # The sample is drawn from the accesses no signal fired on (module docstring).
                eligible = not signals and event.event_type in risk.CLINICAL_EVENT_TYPES
                sampled = eligible and is_sampled(event.event_id, rate, key)
                if (event.event_id, reviewer) in queued:
                    if signals or sampled:
                        counts.already += 1
                    if queued[(event.event_id, reviewer)]:
                        sample.drawn(reviewer)
                    continue
                if eligible and not sampled:
                    sample.offer(reviewer, draw(event.event_id, key), event)
                if not (signals or sampled):
                    continue
                new.append(_item(event, reviewer, signals, sampled=sampled, now=now))
                if sampled:
                    sample.drawn(reviewer)
                counts.flagged += bool(signals)
                counts.sampled += not signals
        # A run at the same time may have queued some of them: the constraint keeps one.
        ReviewItem.objects.bulk_create(new, ignore_conflicts=True)


def _item(
    event: AccessEvent,
    reviewer: str,
    signals: tuple[str, ...],
    *,
    sampled: bool = True,
    now: datetime.datetime | None = None,
) -> ReviewItem:
    return ReviewItem(
        event_pk=event.pk,
        event_id=event.event_id,
        event_occurred_at=event.occurred_at,
        organisation_orgnr=event.organisation_orgnr,
        source_orgnr=event.source_orgnr,
        reviewer_orgnr=reviewer,
        signal_codes=ReviewItem.encode_signals(signals),
        sampled=sampled,
        queued_at=now or timezone.now(),
    )


class _MinimumSample:
    """The run's floor of the sample, per reviewing organisation: how many were drawn (new
    or queued before), and the `minimum` eligible accesses with the lowest draws that the
    rate did not take, in case too few were drawn."""

    def __init__(self, minimum: int) -> None:
        self.minimum = minimum
        self.counted: dict[str, int] = {}
        # Per reviewer a heap of (-draw, order, event): the lowest draws kept.
        self.reserve: dict[str, list[tuple[int, int, AccessEvent]]] = {}
        self.order = 0

    def drawn(self, reviewer: str) -> None:
        self.counted[reviewer] = self.counted.get(reviewer, 0) + 1

    def offer(self, reviewer: str, value: int, event: AccessEvent) -> None:
        if self.minimum <= 0:
            return
        heap = self.reserve.setdefault(reviewer, [])
        self.order += 1
        entry = (-value, self.order, event)
        if len(heap) < self.minimum:
            heapq.heappush(heap, entry)
        elif -value > heap[0][0]:
            heapq.heapreplace(heap, entry)

    def fill(self) -> int:
        """Queue what the floor still needs; how many were queued."""

        new: list[ReviewItem] = []
        for reviewer, heap in self.reserve.items():
            missing = self.minimum - self.counted.get(reviewer, 0)
            if missing > 0:
                lowest = sorted(heap, key=lambda entry: -entry[0])[:missing]
                new.extend(_item(event, reviewer, ()) for _value, _order, event in lowest)
        ReviewItem.objects.bulk_create(new, ignore_conflicts=True)
        return len(new)
