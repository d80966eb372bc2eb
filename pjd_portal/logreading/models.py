"""The risk signals of each access event, fixed at the time of access and stored.

`EventSignals` holds one row per event and reviewing organisation: the acting organisation
(`organisation_orgnr`) and, when another organisation's document was read, that
organisation too (`source_orgnr`), as the review queue has one item per event and
reviewer. Each row carries the signals that reviewer may see (the context signals only
for the acting organisation's own auditors, `risk.CONTEXT_SIGNALS`) as they were when the
row was computed, a minute or so after the access (`stored_signals.compute_signals`), and
copies of the columns the log review filters on. So the auditor's scope is one equality
(`reviewer_orgnr = X`) instead of an OR, and every question of the search form is an
ordered index range on this one narrow table:

- scope, and a time range: (reviewer, occurred_at DESC, event_pk DESC);
- clinician by HPR number, patient, unknown national id, event type, outcome, acting
  organisation: (reviewer, that column, occurred_at DESC, event_pk DESC);
- each signal: a partial index (reviewer, occurred_at DESC, event_pk DESC) WHERE signal.

The access event itself stays append-only and untouched; these rows are derived from it,
written once (never updated: a later change of the patient's state does not move them),
and could be computed again from the log if lost (with the facts of that later day).
The table lives in this app (log reading), not in the access log's, because the signals
are the log review's reading of the log: the bottom floor (auditlog) knows nothing of
patients, roles or thresholds.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q

# The signals, in the order of `risk.Signal` (a test keeps the two lists the same).
SIGNAL_FIELDS = (
    "emergency",
    "no_care_relation",
    "self_lookup",
    "same_surname",
    "colleague",
    "many_patients",
    "outside_hours",
    "protected_address",
    "blocked_clinician",
    "rate_limited",
)
_ABBREVIATIONS = {
    "emergency": "emerg",
    "no_care_relation": "nocare",
    "self_lookup": "self",
    "same_surname": "surname",
    "colleague": "colleague",
    "many_patients": "many",
    "outside_hours": "hours",
    "protected_address": "protected",
    "blocked_clinician": "blocked",
    "rate_limited": "ratelim",
}


def _keyed(name: str, *columns: str) -> models.Index:
    return models.Index(fields=["reviewer_orgnr", *columns, "-occurred_at", "-event_pk"], name=name)


class EventSignals(models.Model):
    pk = models.CompositePrimaryKey("event_pk", "reviewer_orgnr")
    event_pk = models.BigIntegerField()  # AccessEvent.id (no foreign key: the log has none)
    reviewer_orgnr = models.CharField(max_length=9)
    # Copies of the event's columns the search filters on (the event is never changed).
    occurred_at = models.DateTimeField()
    event_type = models.CharField(max_length=30)
    outcome = models.CharField(max_length=20)
    organisation_orgnr = models.CharField(max_length=9, blank=True)
    source_orgnr = models.CharField(max_length=9, blank=True)
    actor_hpr_number = models.CharField(max_length=9, blank=True)
    actor_name = models.CharField(max_length=200, blank=True)
    patient_id = models.BigIntegerField(null=True, blank=True)
    patient_national_id = models.CharField(max_length=11, blank=True)
    computed_at = models.DateTimeField()
    # The signals this reviewer sees on the event, as they were when computed.
    emergency = models.BooleanField(default=False)
    no_care_relation = models.BooleanField(default=False)
    self_lookup = models.BooleanField(default=False)
    same_surname = models.BooleanField(default=False)
    colleague = models.BooleanField(default=False)
    many_patients = models.BooleanField(default=False)
    outside_hours = models.BooleanField(default=False)
    protected_address = models.BooleanField(default=False)
    blocked_clinician = models.BooleanField(default=False)
    rate_limited = models.BooleanField(default=False)

    class Meta:
        indexes = [
            _keyed("logreading_sig_scope"),
            _keyed("logreading_sig_hpr", "actor_hpr_number"),
            _keyed("logreading_sig_patient", "patient_id"),
            _keyed("logreading_sig_nid", "patient_national_id"),
            _keyed("logreading_sig_type", "event_type"),
            _keyed("logreading_sig_outcome", "outcome"),
            _keyed("logreading_sig_org", "organisation_orgnr"),
            *(
                models.Index(
                    fields=["reviewer_orgnr", "-occurred_at", "-event_pk"],
                    name=f"logreading_sig_{_ABBREVIATIONS[signal]}",
                    condition=Q(**{signal: True}),
                )
                for signal in SIGNAL_FIELDS
            ),
        ]

    def __str__(self) -> str:
        return f"signals of event {self.event_pk} for {self.reviewer_orgnr}"

    @property
    def signals(self) -> tuple[str, ...]:
        return tuple(name for name in SIGNAL_FIELDS if getattr(self, name))


class SignalWatermark(models.Model):
    """How far `compute_signals` has come: every event in some auditor's scope that
    occurred before `computed_before` was computed (but for late commits, which the
    next runs find by looking back `settings.LOG_SIGNALS_LOOKBACK_MINUTES`). One row."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    computed_before = models.DateTimeField()
    updated_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"signals computed before {self.computed_before.isoformat()}"
