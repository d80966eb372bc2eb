"""Access events: the append-only log of every access and every refusal.

Rows are written only by `audit.services.record_event`. The queryset refuses update and
delete, and a database trigger (migration 0002) refuses UPDATE and DELETE for everyone,
owner included.
"""

from __future__ import annotations

import uuid
from typing import Any, NoReturn

from django.db import models

from pjd_portal.auditlog import events
from pjd_portal.auditlog.events import Outcome


class AppendOnlyError(Exception):
    pass


class AccessEventQuerySet(models.QuerySet["AccessEvent"]):
    def update(self, **kwargs: Any) -> NoReturn:
        raise AppendOnlyError("access events cannot be updated")

    def delete(self) -> NoReturn:
        raise AppendOnlyError("access events cannot be deleted")


class AccessEvent(models.Model):
    event_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    occurred_at = models.DateTimeField(db_index=True)
    # No `choices`: the types are in auditlog/events.py, and adding one needs no migration.
    event_type = models.CharField(max_length=30)
    outcome = models.CharField(max_length=20, choices=Outcome.choices)
    reason_code = models.CharField(max_length=50, blank=True)
    flagged_for_review = models.BooleanField(default=False)

    # who (copied, so the row stays exact whatever happens to the account later)
    actor_user_id = models.BigIntegerField(null=True, blank=True)
    actor_pid = models.CharField(max_length=11, blank=True)
    actor_hpr_number = models.CharField(max_length=9, blank=True)
    actor_name = models.CharField(max_length=200, blank=True)
    actor_authorizations = models.CharField(max_length=100, blank=True)
    # where: the organisation acted for (the point of care when it is a sub-unit) and
    # its legal entity (itself when it has no parent)
    organisation_orgnr = models.CharField(max_length=9, blank=True)
    organisation_name = models.CharField(max_length=200, blank=True)
    # (with a database default too: the benchmark's COPY and older writers leave them out)
    legal_entity_orgnr = models.CharField(max_length=9, blank=True, default="", db_default="")
    legal_entity_name = models.CharField(max_length=200, blank=True, default="", db_default="")
    # whom
    # No database foreign keys (migration 0015): each would lock the referred row for every
    # event written. The row copies what it needs (national id, source); PROTECT still
    # stops the ORM from deleting a patient, document or attest the log refers to.
    patient = models.ForeignKey(
        "patients.Patient",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        db_constraint=False,
    )
    patient_national_id = models.CharField(max_length=11, blank=True)
    # what
    document = models.ForeignKey(
        "documents.DocumentReference",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        db_constraint=False,
    )
    source_orgnr = models.CharField(max_length=9, blank=True)
    # why
    basis = models.CharField(max_length=20, blank=True)
    purpose_of_use = models.CharField(max_length=10, blank=True)
    reason_text = models.TextField(blank=True)
    attest = models.ForeignKey(
        "access.AccessAttest",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        db_constraint=False,
    )
    # how
    request_id = models.CharField(max_length=64, blank=True)
    client_ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=300, blank=True)
    details = models.JSONField(default=dict, blank=True)
    # tamper evidence: a hash chain per shard (see audit/chain.py)
    chain = models.PositiveSmallIntegerField(default=0)
    chain_seq = models.BigIntegerField(default=0)
    prev_hash = models.CharField(max_length=64, blank=True)
    entry_hash = models.CharField(max_length=64, blank=True)

    objects = AccessEventQuerySet.as_manager()

    class Meta:
        # On PostgreSQL migration 0006 replaces the table by a range-partitioned one with
        # its own indexes (keyset-friendly, plus BRIN on time); these serve SQLite.
        indexes = [
            models.Index(fields=["patient", "-occurred_at"]),
            models.Index(fields=["actor_user_id", "-occurred_at"]),
            models.Index(fields=["organisation_orgnr", "-occurred_at"]),
            models.Index(fields=["chain", "chain_seq"]),
            # The log review's scope includes events on documents an organisation shares.
            models.Index(fields=["source_orgnr", "-occurred_at", "-id"], name="audit_ev_source_time"),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} {self.event_id}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None and not kwargs.get("force_insert"):
            raise AppendOnlyError("access events cannot be updated")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise AppendOnlyError("access events cannot be deleted")

    def get_event_type_display(self) -> str:
        return events.label(self.event_type)

    @property
    def from_epj(self) -> dict[str, str]:
        """What an event of a visit from the EPJ says of it: the channel, the EPJ's client,
        its decision and the care relation (the attest's words; empty for the portal's own)."""

        details = self.details or {}
        names = ("channel", "client_id", "decision_ref", "purpose_of_use_details")
        return {name: str(details[name]) for name in names if details.get(name)}

    @property
    def has_separate_legal_entity(self) -> bool:
        """The organisation acted for is a sub-unit: its legal entity is another one."""
        return bool(self.legal_entity_orgnr) and self.legal_entity_orgnr != self.organisation_orgnr


class AuditChainHead(models.Model):
    """The newest link of one hash chain. The only mutable audit table: appending an
    event locks its chain's head row, so writers queue per chain, not on one row."""

    chain = models.PositiveSmallIntegerField(primary_key=True)
    seq = models.BigIntegerField(default=0)
    last_hash = models.CharField(max_length=64)
    # The links up to this seq were made with the retired whole-JSON scheme (audit/chain.py):
    # set once by migration 0017 to where each patient chain stood, never moved after.
    whole_json_until = models.BigIntegerField(default=0, db_default=0)

    def __str__(self) -> str:
        return f"chain {self.chain} at {self.seq}"
