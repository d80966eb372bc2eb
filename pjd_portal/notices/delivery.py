"""Delivering a notice to the citizen portal: one attempt per task, retried with backoff.

An attempt:

1. **claims** the notice: one UPDATE that raises `attempts` from n-1 to n only if the notice
   is still pending and due. It succeeds for exactly one worker however many tasks name
   attempt n (a duplicate from `requeue_patient_notices`, a second worker process): on
   PostgreSQL and SQLite alike, the database serialises the two UPDATEs and the second
   matches no row.
2. **posts** the signed JSON (signing.py) to `PJD_PATIENT_NOTICE_URL`, outside any
   transaction, with a timeout.
3. **records** the outcome in one transaction: the notice's new state, its audit event
   (`patient_notice_delivered` or `patient_notice_failed`, as `Actor.system`) and, when
   another attempt is due, that attempt's task, `PATIENT_NOTICE_BASE_DELAY_SECONDS *
   2**(n-1)` later (at most `PATIENT_NOTICE_MAX_DELAY_SECONDS`). After
   `PATIENT_NOTICE_MAX_ATTEMPTS` the notice is `failed`, and stays on the privacy officer's
   page.

Without a URL nothing is claimed: the notice stays pending, visibly, until one is set and
`requeue_patient_notices` runs. The application log names notices by id only: the patient's
national id is in the body and nowhere else.
"""

from __future__ import annotations

import datetime
import json
import logging
import time
from dataclasses import dataclass

import requests
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django_tasks import task

from pjd_portal.auditlog import events
from pjd_portal.auditlog.actor import Actor
from pjd_portal.auditlog.events import Detail, Outcome
from pjd_portal.auditlog.services import record_event
from pjd_portal.notices import signing
from pjd_portal.notices.models import NoticeStatus, PatientNotice

logger = logging.getLogger(__name__)

QUEUE = "patient_notices"
ACTOR = "patient_notices"


@dataclass(frozen=True)
class AttemptResult:
    result: str  # "sent", "retry", "failed", "not_claimed", "not_configured"
    error: str = ""


def notice_body(notice: PatientNotice) -> bytes:
    """What the citizen portal receives. The national id routes the notice to the patient:
    it is here, in the body, and never in a URL, a header or a log line."""

    document = {
        "notice_id": str(notice.notice_id),
        "kind": notice.kind,
        "basis": notice.basis,
        "accessed_at": notice.accessed_at.astimezone(datetime.UTC).isoformat(),
        "organisation": {"orgnr": notice.organisation_orgnr, "name": notice.organisation_name},
        "clinician": {"name": notice.clinician_name, "role": notice.clinician_role},
        "patient": {"national_id": notice.patient.national_id},
    }
    return json.dumps(document, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()


def backoff(attempt: int) -> datetime.timedelta:
    """How long after failed attempt `attempt` (1, 2, …) the next one is made."""

    seconds = settings.PATIENT_NOTICE_BASE_DELAY_SECONDS * 2 ** (attempt - 1)
    return datetime.timedelta(seconds=min(seconds, settings.PATIENT_NOTICE_MAX_DELAY_SECONDS))


def enqueue_attempt(notice: PatientNotice, *, attempt: int, run_after: datetime.datetime | None) -> None:
    chosen = (
        deliver_patient_notice if run_after is None else deliver_patient_notice.using(run_after=run_after)
    )
    chosen.enqueue(str(notice.notice_id), attempt)


def claim(notice_id: str, attempt: int, now: datetime.datetime) -> bool:
    return (
        PatientNotice.objects.filter(
            notice_id=notice_id, status=NoticeStatus.PENDING, attempts=attempt - 1, next_attempt_at__lte=now
        ).update(attempts=attempt, last_attempt_at=now)
        == 1
    )


def post(url: str, body: bytes) -> str:
    """Send one attempt; the failure's class ("HTTP 503", "ConnectTimeout"), or "" if sent."""

    headers = signing.signed_headers(settings.PATIENT_NOTICE_KEY, int(time.time()), body)
    try:
        response = requests.post(
            url,
            data=body,
            headers=headers,
            timeout=(settings.PATIENT_NOTICE_CONNECT_TIMEOUT, settings.PATIENT_NOTICE_READ_TIMEOUT),
            allow_redirects=False,
        )
    except requests.RequestException as exc:
        return type(exc).__name__
    if 200 <= response.status_code < 300:
        return ""
    return f"HTTP {response.status_code}"


def deliver(notice_id: str, attempt: int) -> AttemptResult:
    """Make attempt `attempt` of the notice, if it is this call's to make."""

    url = settings.PATIENT_NOTICE_URL
    if not url:
        logger.warning("patient notice %s waits: PJD_PATIENT_NOTICE_URL is not set", notice_id)
        return AttemptResult("not_configured")
    now = timezone.now()
    if not claim(notice_id, attempt, now):
        logger.info(
            "patient notice %s attempt %d: not this task's (sent, failed or taken)", notice_id, attempt
        )
        return AttemptResult("not_claimed")
    notice = PatientNotice.objects.select_related("patient").get(notice_id=notice_id)
    error = post(url, notice_body(notice))
    max_attempts = settings.PATIENT_NOTICE_MAX_ATTEMPTS
    done = timezone.now()
    with transaction.atomic():
        if not error:
            notice.status = NoticeStatus.SENT
            notice.sent_at = done
            notice.last_error = ""
            outcome = AttemptResult("sent")
        elif attempt >= max_attempts:
            notice.status = NoticeStatus.FAILED
            notice.last_error = error
            outcome = AttemptResult("failed", error)
        else:
            notice.next_attempt_at = done + backoff(attempt)
            notice.last_error = error
            outcome = AttemptResult("retry", error)
        notice.save(update_fields=["status", "sent_at", "last_error", "next_attempt_at"])
        details: dict[str, Detail] = {
            "notice_id": str(notice.notice_id),
            "kind": notice.kind,
            "attempt": attempt,
        }
        if error:
            details.update(
                max_attempts=max_attempts,
                error=error,
                next_attempt_at=notice.next_attempt_at.isoformat() if outcome.result == "retry" else None,
            )
            event = events.PATIENT_NOTICE_FAILED(
                outcome=Outcome.DENIED,
                reason_code="gave_up" if outcome.result == "failed" else "will_retry",
                patient=notice.patient,
                details=details,
            )
        else:
            event = events.PATIENT_NOTICE_DELIVERED(
                outcome=Outcome.GRANTED, patient=notice.patient, details=details
            )
        record_event(event, actor=Actor.system(ACTOR), where=None)
        if outcome.result == "retry":
            enqueue_attempt(notice, attempt=attempt + 1, run_after=notice.next_attempt_at)
    logger.log(
        logging.WARNING if error else logging.INFO,
        "patient notice %s attempt %d/%d: %s%s",
        notice_id,
        attempt,
        max_attempts,
        outcome.result,
        f" ({error})" if error else "",
    )
    return outcome


@task(queue_name=QUEUE)
def deliver_patient_notice(notice_id: str, attempt: int) -> str:
    """The task: one attempt. Its arguments (stored in the task table) are ids, not data."""

    return deliver(notice_id, attempt).result
