"""Check every hash chain of the access log and name the first broken link of each."""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from pjd_portal.audit.chain import verify_all


class Command(BaseCommand):
    help = "Verify the access log's hash chains; exit 1 and name the first broken link if any."

    def handle(self, *args: Any, **options: Any) -> None:
        started = time.monotonic()
        checked, broken = verify_all()
        seconds = time.monotonic() - started
        if broken:
            for link in broken:
                self.stderr.write(f"BROKEN {link}")
            raise CommandError(f"{len(broken)} broken chain(s) among {checked} events ({seconds:.1f} s)")
        self.stdout.write(f"OK: {checked} events in intact chains ({seconds:.1f} s)")
