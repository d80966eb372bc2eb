"""The review queue of the log review (loggkontroll): events an auditor should look at.

`manage.py build_review_queue` (run nightly) puts two kinds of events in the queue: the
events a risk signal fired on, and a random sample of the other accesses to patients. An
event gets at most one item per reviewing organisation (a unique constraint: the acting
organisation, and the sharing one when another organisation's document was read), each
with its own status, and the item keeps the signals that
fired: those stored for the event at the time of access (`logreading.EventSignals`, by
`compute_signals`), never written onto the append-only events.

The access events are not referred to by a foreign key: on PostgreSQL their table is
partitioned by month, with (id, occurred_at) as primary key. The item copies the event's
id, UUID and time, and the two organisation numbers the auditors' scope is decided on
(`policy.log_review_events_q`, which matches the same field names here).

Every status change is kept as a `ReviewChange` (who, when, from, to, comment) and is an
access event (REVIEW_STATUS_CHANGED). A change names the item's version it was made on
(optimistic concurrency): one history row per version, also enforced by the database.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.utils.translation import pgettext_lazy


class ReviewStatus(models.TextChoices):
    NEW = "new", pgettext_lazy("review status", "New")
    UNDER_REVIEW = "under_review", pgettext_lazy("review status", "Under review")
    JUSTIFIED = "justified", pgettext_lazy("review status", "Justified")
    FOLLOW_UP = "follow_up", pgettext_lazy("review status", "Follow-up")
    VIOLATION = "violation", pgettext_lazy("review status", "Violation")


class ReviewItem(models.Model):
    item_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    # The event (see the module docstring for why there is no foreign key).
    event_pk = models.BigIntegerField()
    event_id = models.UUIDField()
    event_occurred_at = models.DateTimeField()
    # The scope: the acting organisation and the organisation sharing the document.
    organisation_orgnr = models.CharField(max_length=9, blank=True)
    source_orgnr = models.CharField(max_length=9, blank=True)
    # Whose auditors review this item. An event on another organisation's document is in
    # two scopes; each organisation reviews it on its own item, with its own status.
    reviewer_orgnr = models.CharField(max_length=9, default="")
    # The signals that fired when the item was queued, as ",code,code," (filterable);
    # none for a sampled event.
    signal_codes = models.CharField(max_length=300, blank=True)
    sampled = models.BooleanField(default=False)
    queued_at = models.DateTimeField()

    status = models.CharField(max_length=20, choices=ReviewStatus.choices, default=ReviewStatus.NEW)
    comment = models.TextField(blank=True)
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    version = models.PositiveIntegerField(default=1)
    updated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["event_id", "reviewer_orgnr"], name="review_item_one_per_event_and_org"
            )
        ]
        indexes = [
            models.Index(fields=["reviewer_orgnr", "-event_occurred_at", "-id"], name="review_item_reviewer"),
        ]

    def __str__(self) -> str:
        return f"review {self.item_id} ({self.status})"

    @property
    def signals(self) -> tuple[str, ...]:
        return tuple(code for code in self.signal_codes.split(",") if code)

    @staticmethod
    def encode_signals(signals: tuple[str, ...] | list[str]) -> str:
        return f",{','.join(signals)}," if signals else ""


class ReviewChange(models.Model):
    """One status change (or comment) on an item; rows are only ever added."""

    item = models.ForeignKey(ReviewItem, on_delete=models.PROTECT, related_name="changes")
    version = models.PositiveIntegerField(help_text="The item's version this change made.")
    changed_at = models.DateTimeField()
    changed_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    changed_by_name = models.CharField(max_length=200, blank=True)
    from_status = models.CharField(max_length=20, choices=ReviewStatus.choices)
    to_status = models.CharField(max_length=20, choices=ReviewStatus.choices)
    comment = models.TextField(blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["item", "version"], name="review_change_one_per_version")
        ]
        ordering = ["item", "version"]

    def __str__(self) -> str:
        return f"{self.item_id} v{self.version}: {self.from_status} -> {self.to_status}"
