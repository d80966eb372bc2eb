"""Give every overdue pending patient notice a new delivery task (notices/services.py)."""

from __future__ import annotations

import datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from pjd_portal.notices.services import requeue_pending


class Command(BaseCommand):
    help = "Enqueue a delivery for pending patient notices whose attempt is overdue (a lost task, a URL set late)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--older-than",
            type=int,
            default=300,
            help="seconds a pending notice's attempt must be overdue (default 300; 0: every pending notice due)",
        )

    def handle(self, *args: Any, older_than: int, **options: Any) -> None:
        count = requeue_pending(older_than=datetime.timedelta(seconds=max(older_than, 0)))
        self.stdout.write(f"{count} pending patient notice(s) enqueued")
