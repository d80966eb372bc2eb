"""Create the access log's monthly partitions ahead of time (PostgreSQL).

Run daily (cron or a systemd timer). Rows that arrive for a month without a partition
land in the DEFAULT partition rather than failing, but they should not: this command
keeps the next months ready, each protected against TRUNCATE like the rest.

Run it as the migration role that owns the tables (as `migrate` runs), not as the
portal's application role: that role may only INSERT and SELECT on the log and cannot
create partitions. A new partition has no grants of its own; the application role
reaches it through the parent table only, as deploy/postgres/portal_role.sql leaves the
existing ones.
"""

from __future__ import annotations

import datetime
from typing import Any

from django.core.management.base import BaseCommand
from django.db import connection
from django.utils import timezone


class Command(BaseCommand):
    help = "Create monthly partitions of the access log for this month and the months ahead."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--months-ahead", type=int, default=3)

    def handle(self, *args: Any, **options: Any) -> None:
        if connection.vendor != "postgresql":
            self.stdout.write("Not PostgreSQL: the access log is not partitioned here; nothing to do.")
            return
        month = timezone.now().astimezone(datetime.UTC).date().replace(day=1)
        names = []
        with connection.cursor() as cursor:
            for _ in range(options["months_ahead"] + 1):
                cursor.execute("SELECT audit_ensure_partition(%s)", [month])
                names.append(cursor.fetchone()[0])
                month = (month + datetime.timedelta(days=32)).replace(day=1)
        self.stdout.write(f"Partitions ready: {', '.join(names)}")
