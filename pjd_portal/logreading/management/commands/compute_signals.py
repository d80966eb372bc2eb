"""Store the risk signals of the access events written since the last run.

Run it every minute (docs/operations.md): the signals are then those of the facts as they
were within a minute or so of the access. Idempotent, and safe to run twice at once (a
row already stored is left as it is).
"""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from pjd_portal.logreading.stored_signals import compute_signals


class Command(BaseCommand):
    help = "Compute and store the risk signals of the access events that have none yet."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--chunk", type=int, default=500, help="events per query (default 500)")

    def handle(self, *args: Any, **options: Any) -> None:
        started = time.monotonic()
        counts = compute_signals(chunk=options["chunk"])
        seconds = time.monotonic() - started
        assert counts.computed_before is not None
        self.stdout.write(
            f"Signals stored for {counts.events} events ({counts.rows} rows, one per reviewing "
            f"organisation) in {seconds:.1f} s; computed up to {counts.computed_before.isoformat(timespec='seconds')}."
        )
