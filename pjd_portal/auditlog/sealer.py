"""The sealer: chains plainly written events a few seconds after they are committed.

On the plain write path (audit/writer.py) every event is one ordinary INSERT in its own
durable transaction, with no chain link: no head row to queue on, no hashing in the
request. The sealer (`manage.py seal_audit`, a loop) then takes the committed events that
have no seal yet, in order of their id, and appends one link per event to the seal chain
(chain.SEAL_CHAIN): a row in `audit_auditseal` with the event's id, its place (seq) and
`chain.link_hash(prev_hash, SEAL_CHAIN, seq, content digest)`, and moves the chain's head
on, all in one transaction.

- Several sealers are safe: each pass first locks the seal chain's head row (an UPDATE,
  which takes the row lock on PostgreSQL and the write lock on SQLite), so passes queue;
  each reads what is sealed only after it holds the lock.
- Restarts are safe: the sealer keeps nothing but what the tables say. Where it left off is
  the highest sealed event id.
- Late commits: ids are handed out at INSERT, so an event can commit after events with
  higher ids were sealed (a long transaction). Each pass notes the ids it skipped over
  (gaps) and looks for them again for GAP_MEMORY; one that commits then is sealed in the
  pass that sees it. Most gaps never fill (a rolled-back transaction used the id).
  An event that commits later than that stays unsealed and `verify_audit` reports it.
- Rows not yet sealed are protected like every row: the append-only triggers and, in
  production, a role that may only INSERT and SELECT. `verify_audit` fails on an event
  still unsealed AUDIT_SEAL_LAG after it occurred.
"""

from __future__ import annotations

import datetime
import logging
import time
from dataclasses import dataclass, field

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from pjd_portal.auditlog import chain
from pjd_portal.auditlog.models import AccessEvent, AuditChainHead, AuditSeal

logger = logging.getLogger(__name__)

# How many events one pass seals at most (one transaction): bounds its lock and memory.
PASS_MAX = 5000
# How many skipped ids are remembered, and for how long, waiting for a late commit.
GAP_MAX = 100_000
GAP_MEMORY = datetime.timedelta(minutes=10)


@dataclass
class Sealer:
    """One sealer process's memory: the gaps it has seen (lost on restart, rebuilt from
    the seal table on the first pass)."""

    gaps: dict[int, datetime.datetime] = field(default_factory=dict)
    started: bool = False

    def seal_pass(self, limit: int = PASS_MAX) -> int:
        """Seal what is committed and unsealed, up to `limit` events; the number sealed."""

        with transaction.atomic(durable=True):
            seq, last_hash = _lock_head()
            sealed_max = (
                AuditSeal.objects.order_by("-event_pk").values_list("event_pk", flat=True).first() or 0
            )
            now = timezone.now()
            if not self.started:
                self._rebuild_gaps(sealed_max, now)
                self.started = True
            self._forget_old_gaps(now)
            late = (
                list(
                    AccessEvent.objects.filter(chain=chain.SEAL_CHAIN, pk__in=list(self.gaps))
                    .exclude(_sealed())
                    .order_by("pk")
                )
                if self.gaps
                else []
            )
            fresh = list(
                AccessEvent.objects.filter(chain=chain.SEAL_CHAIN, pk__gt=sealed_max).order_by("pk")[:limit]
            )
            events = sorted(late + fresh, key=lambda e: e.pk)[:limit]
            if not events:
                return 0
            seals = []
            for event in events:
                seq += 1
                link = chain.link_hash(last_hash, chain.SEAL_CHAIN, seq, chain.content_digest(event)[1])
                seals.append(
                    AuditSeal(event_pk=event.pk, seq=seq, prev_hash=last_hash, entry_hash=link, sealed_at=now)
                )
                last_hash = link
            AuditSeal.objects.bulk_create(seals, batch_size=1000)
            AuditChainHead.objects.filter(chain=chain.SEAL_CHAIN).update(seq=seq, last_hash=last_hash)
            self._note_gaps(sealed_max, [e.pk for e in fresh], now)
            for event in late:
                self.gaps.pop(event.pk, None)
        return len(events)

    def _note_gaps(self, sealed_max: int, fresh_ids: list[int], now: datetime.datetime) -> None:
        expected = sealed_max + 1
        for pk in fresh_ids:
            for missing in range(expected, pk):
                if len(self.gaps) < GAP_MAX:
                    self.gaps[missing] = now
            expected = pk + 1

    def _rebuild_gaps(self, sealed_max: int, now: datetime.datetime) -> None:
        """After a restart: the ids among the recently sealed ones without a seal (a
        sequence's ids are never handed out twice, so any that commits later is new)."""

        recent = list(
            AuditSeal.objects.filter(sealed_at__gte=now - GAP_MEMORY)
            .order_by("event_pk")
            .values_list("event_pk", flat=True)[:GAP_MAX]
        )
        if not recent:
            return
        present = set(recent)
        for pk in range(recent[0], sealed_max):
            if pk not in present and len(self.gaps) < GAP_MAX:
                self.gaps[pk] = now

    def _forget_old_gaps(self, now: datetime.datetime) -> None:
        old = [pk for pk, seen in self.gaps.items() if now - seen > GAP_MEMORY]
        for pk in old:
            del self.gaps[pk]

    def run(self, interval: float, stop_after: float | None = None) -> None:
        """Seal, then wait `interval` seconds when there was nothing left to seal; for ever
        (or for `stop_after` seconds). A failed pass is logged and tried again: the sealer
        is a companion that must outlive a database restart."""

        deadline = None if stop_after is None else time.monotonic() + stop_after
        while deadline is None or time.monotonic() < deadline:
            try:
                sealed = self.seal_pass()
            except Exception as exc:  # noqa: BLE001 - a companion loop: log, wait, go on
                logger.error("audit sealer pass failed: %s", type(exc).__name__)
                connection.close()
                sealed = 0
            if sealed < PASS_MAX:
                time.sleep(interval)


def _lock_head() -> tuple[int, str]:
    """The seal chain's head, locked for this transaction (created at genesis if new)."""

    table = AuditChainHead._meta.db_table
    with connection.cursor() as cursor:
        for _attempt in range(2):
            # A no-op UPDATE takes the row lock (PostgreSQL) or the write lock (SQLite)
            # before anything is read: two sealers cannot both extend the chain.
            cursor.execute(
                f"UPDATE {table} SET seq = seq WHERE chain = %s RETURNING seq, last_hash",  # noqa: S608
                [chain.SEAL_CHAIN],
            )
            row = cursor.fetchone()
            if row is not None:
                return int(row[0]), str(row[1])
            cursor.execute(
                f"INSERT INTO {table} (chain, seq, last_hash) VALUES (%s, 0, %s) ON CONFLICT (chain) DO NOTHING",  # noqa: S608
                [chain.SEAL_CHAIN, chain.GENESIS],
            )
    raise RuntimeError("audit seal chain head missing")  # pragma: no cover


def unsealed_older_than(lag: datetime.timedelta) -> int:
    """Plainly written events still without a seal `lag` after they occurred."""

    cutoff = timezone.now() - lag
    return (
        AccessEvent.objects.filter(chain=chain.SEAL_CHAIN, occurred_at__lt=cutoff).exclude(_sealed()).count()
    )


def _sealed() -> Exists:
    # NOT EXISTS, not NOT IN: an anti-join that stays cheap with millions of seals.
    return Exists(AuditSeal.objects.filter(event_pk=OuterRef("pk")))


def seal_lag() -> datetime.timedelta:
    return datetime.timedelta(seconds=settings.AUDIT_SEAL_LAG_SECONDS)
