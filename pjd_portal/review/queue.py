"""Building the review queue: the flagged events and a random sample of the rest.

Run by `manage.py build_review_queue` (nightly). The signals are computed here, with the
same rules and thresholds as the log review (`audit.risk`), and stored on the item as they
were at that time. An event gets at most one item per reviewing organisation (a unique
constraint), so running the command again, or twice at once, adds nothing new for the
events already queued.

The sample is a random draw per event, keyed (HMAC-SHA256 of the event's UUID with a
secret key, settings.REVIEW_QUEUE_SAMPLE_KEY or one derived from SECRET_KEY): the same
event always gets the same draw, so a rerun over the same day does not grow the sample,
and no clinician can tell in advance which accesses will be drawn.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import uuid
from dataclasses import dataclass

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from pjd_portal.auditlog.models import AccessEvent
from pjd_portal.logreading import risk
from pjd_portal.review.models import ReviewItem

CHUNK = 500
_KEY_SALT = b"pjd_portal.review.sample"


def sample_key() -> bytes:
    configured = settings.REVIEW_QUEUE_SAMPLE_KEY
    if configured:
        return configured.encode()
    return hmac.new(settings.SECRET_KEY.encode(), _KEY_SALT, hashlib.sha256).digest()


def is_sampled(event_id: uuid.UUID, rate: float, key: bytes) -> bool:
    """The event's draw: a uniform number in [0, 1) from the keyed hash, below `rate`."""

    digest = hmac.new(key, event_id.bytes, hashlib.sha256).digest()
    return int.from_bytes(digest[:8], "big") < rate * 2**64


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
) -> QueueCounts:
    """Queue the events in [since, until) that an organisation's auditors can see."""

    until = until or timezone.now()
    rate = settings.REVIEW_QUEUE_SAMPLE_RATE if rate is None else rate
    key = key or sample_key()
    thresholds = thresholds or risk.Thresholds.from_settings()
    counts = QueueCounts()
    base = AccessEvent.objects.filter(occurred_at__gte=since, occurred_at__lt=until).filter(
        ~Q(organisation_orgnr="") | ~Q(source_orgnr="")  # in some auditor's scope
    )
    after: tuple[datetime.datetime, int] | None = None
    while True:
        query = base
        if after is not None:
            query = query.filter(Q(occurred_at__gt=after[0]) | Q(occurred_at=after[0], pk__gt=after[1]))
        events = list(risk.annotate_facts(query, thresholds).order_by("occurred_at", "pk")[:CHUNK])
        if not events:
            return counts
        after = (events[-1].occurred_at, events[-1].pk)
        counts.examined += len(events)
        queued = set(
            ReviewItem.objects.filter(event_id__in=[e.event_id for e in events]).values_list(
                "event_id", "reviewer_orgnr"
            )
        )
        now = timezone.now()
        new: list[ReviewItem] = []
        for event in events:
            facts = risk.facts_for(event)
            for reviewer in dict.fromkeys(o for o in (event.organisation_orgnr, event.source_orgnr) if o):
                # Each reviewing organisation gets only the signals within its scope.
                signals = risk.signals_for(facts, thresholds, own_staff=reviewer == event.organisation_orgnr)
                sampled = (
                    not signals
                    and event.event_type in risk.CLINICAL_EVENT_TYPES
                    and is_sampled(event.event_id, rate, key)
                )
                if not (signals or sampled):
                    continue
                if (event.event_id, reviewer) in queued:
                    counts.already += 1
                    continue
                new.append(
                    ReviewItem(
                        event_pk=event.pk,
                        event_id=event.event_id,
                        event_occurred_at=event.occurred_at,
                        organisation_orgnr=event.organisation_orgnr,
                        source_orgnr=event.source_orgnr,
                        reviewer_orgnr=reviewer,
                        signal_codes=ReviewItem.encode_signals(signals),
                        sampled=sampled,
                        queued_at=now,
                    )
                )
                if signals:
                    counts.flagged += 1
                else:
                    counts.sampled += 1
        # A run at the same time may have queued some of them: the constraint keeps one.
        ReviewItem.objects.bulk_create(new, ignore_conflicts=True)
