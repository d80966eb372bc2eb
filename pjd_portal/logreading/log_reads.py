"""Reading a patient's access log is itself an access: one audit event per read.

Both readers (the citizen portal's FHIR API and the privacy officer's printable page) write
through `record_log_read`, so the event's shape is decided in one place. The event is
committed before the log is returned.
"""

from __future__ import annotations

from typing import Any

from pjd_portal.auditlog import events
from pjd_portal.auditlog.actor import Actor, PointOfCare
from pjd_portal.auditlog.events import Outcome
from pjd_portal.auditlog.models import AccessEvent
from pjd_portal.auditlog.services import record_event_committed
from pjd_portal.lib.rate_limits import Refusal
from pjd_portal.patients.models import Patient

# A read of the log is linked to the patient, so auditors find it by patient; it is not
# one of the clinical events the patient's own log lists (selectors.PATIENT_LOG_EVENT_TYPES).
LOG_READ_EVENT_TYPE: str = events.PATIENT_LOG_READ.name
LINKS_PATIENT = True


def record_log_read(
    *,
    actor: Actor,
    where: PointOfCare | None,
    outcome: str,
    channel: str,
    patient: Patient | None = None,
    national_id: str = "",
    reason_code: str = "",
    details: dict[str, Any] | None = None,
) -> AccessEvent:
    """Write (and commit) the event for one read of a patient's log. Raises AuditWriteFailed.

    `channel` says who read: "fhir_api" (the citizen portal) or "privacy_officer".
    """

    return record_event_committed(
        events.PATIENT_LOG_READ(
            outcome=outcome,
            reason_code=reason_code,
            patient=patient if LINKS_PATIENT else None,
            patient_national_id=patient.national_id if patient is not None else national_id,
            log_read=channel,
            **details or {},
        ),
        actor=actor,
        where=where,
    )


def record_client_rate_limited(*, actor: Actor, client_id: str, refusal: Refusal) -> AccessEvent:
    """Write (and commit) the event of an API client's call refused by its rate limit
    (lib/rate_limits.py): which limit, when it may call again. Raises AuditWriteFailed."""

    return record_event_committed(
        events.RATE_LIMITED(
            outcome=Outcome.DENIED,
            reason_code="client_rate_limited",
            limit=refusal.limit.count,
            period=refusal.limit.period,
            retry_after=refusal.retry_after,
            channel="fhir_api",
            client_id=client_id,
        ),
        actor=actor,
        where=None,
    )
