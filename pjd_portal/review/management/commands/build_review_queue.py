"""Put yesterday's flagged and sampled access events in the log review's queue.

Run nightly (docs/operations.md). Idempotent: an event already in the queue is left as it is.
"""

from __future__ import annotations

import datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from pjd_portal.logreading import risk
from pjd_portal.review.queue import build_queue


class Command(BaseCommand):
    help = "Queue the accesses with a risk signal and a random sample of the rest for review."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--since",
            help="Queue events from this date (YYYY-MM-DD, Norwegian time); default: the last 24 hours.",
        )
        parser.add_argument(
            "--sample-key",
            default="",
            help="Key of the random sample (tests, reruns elsewhere); default: the configured one.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        now = timezone.now()
        if options["since"]:
            try:
                day = datetime.date.fromisoformat(options["since"])
            except ValueError as exc:
                raise CommandError("--since must be a date, YYYY-MM-DD") from exc
            since = datetime.datetime.combine(day, datetime.time.min, tzinfo=risk.OSLO)
        else:
            since = now - datetime.timedelta(hours=24)
        key = options["sample_key"].encode() or None
        counts = build_queue(since, now, key=key)
        self.stdout.write(
            f"Review queue from {since.isoformat(timespec='seconds')}: {counts.examined} events examined, "
            f"{counts.flagged} flagged and {counts.sampled} sampled queued, "
            f"{counts.already} already in the queue."
        )
