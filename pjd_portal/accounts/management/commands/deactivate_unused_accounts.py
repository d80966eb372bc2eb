"""Deactivate accounts not used for PJD_ACCOUNT_UNUSED_DAYS days (default 90).

An account is unused when its last login is older than that, or when it has never logged
in and was created longer ago than that. Such an account gets is_active=False: it can no
longer log in, a live session of it is no longer accepted, and it holds no role (the
django-guardian permission checks refuse inactive users). Superusers are never touched.
Its grants (the guardian permission rows, accounts/roles.py) are left as they are, and an
administrator who reactivates the account finds the roles as they were.

Audited with one ACCOUNT_DEACTIVATED event per deactivated account, written in the same
transaction as that account's change; the account is the event's subject (details), the
actor is the system (no user). `--dry-run` lists the count and changes nothing.
"""

from __future__ import annotations

import datetime
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from pjd_portal.accounts.models import User
from pjd_portal.auditlog import events
from pjd_portal.auditlog.actor import Actor
from pjd_portal.auditlog.events import Outcome
from pjd_portal.auditlog.services import record_event

COMMAND = "deactivate_unused_accounts"


def unused_accounts(now: datetime.datetime, days: int) -> Any:
    cutoff = now - datetime.timedelta(days=days)
    return (
        User.objects.filter(is_active=True, is_superuser=False)
        .filter(Q(last_login__lt=cutoff) | Q(last_login__isnull=True, date_joined__lt=cutoff))
        .order_by("pk")
    )


class Command(BaseCommand):
    help = "Deactivate accounts unused for PJD_ACCOUNT_UNUSED_DAYS days (superusers excepted)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="Count and list only; change nothing.")

    def handle(self, *args: Any, **options: Any) -> None:
        days = settings.ACCOUNT_UNUSED_DAYS
        now = timezone.now()
        candidates = list(unused_accounts(now, days))
        if options["dry_run"]:
            self.stdout.write(
                f"Would deactivate {len(candidates)} account(s) unused for {days} days (dry run)."
            )
            return
        actor = Actor.system(COMMAND)  # the operators' job: no person, no address
        deactivated = 0
        for user in candidates:
            with transaction.atomic():
                # Only if still unused now: a login since the list was read keeps it.
                changed = unused_accounts(now, days).filter(pk=user.pk).update(is_active=False)
                if not changed:
                    continue
                record_event(
                    events.ACCOUNT_DEACTIVATED(
                        outcome=Outcome.GRANTED,
                        reason_code="account_unused",
                        command=COMMAND,
                        unused_days=days,
                        target_user_id=user.pk,
                        target_public_id=str(user.public_id),
                        target_name=user.display_name or user.username,
                        target_hpr_number=user.hpr_number,
                        last_login=user.last_login.isoformat() if user.last_login else None,
                        date_joined=user.date_joined.isoformat(),
                    ),
                    actor=actor,
                    where=None,
                )
                deactivated += 1
        self.stdout.write(f"Deactivated {deactivated} account(s) unused for {days} days.")
