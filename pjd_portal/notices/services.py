"""Writing a patient notice: the outbox row and its delivery task, in the caller's transaction.

`create_notice` is called by access/services.py: state_basis inside the transaction that
writes the attest and its event, so the three commit together or not at all. The delivery
task is a row of the django-tasks database backend in the same database, so it is part of
that transaction too; should it ever be lost (a worker killed in the middle of an attempt),
the notice is still pending and `requeue_patient_notices` gives it a new task.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from uuid import UUID

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from pjd_portal.notices.delivery import enqueue_attempt
from pjd_portal.notices.models import NoticeStatus, PatientNotice
from pjd_portal.patients.models import Patient

# What the citizen is told the clinician is: Volven 9060's names for the authorizations
# the portal lets in (policy.HEALTH_PERSONNEL_AUTHORIZATIONS); any other code as it is.
ROLE_NAMES = {
    "LE": "Lege",
    "SP": "Sykepleier",
    "JM": "Jordmor",
    "PS": "Psykolog",
    "FA1": "Farmasøyt",
    "HE": "Helsesekretær",
}


def role_of(authorizations: Iterable[str]) -> str:
    return ", ".join(ROLE_NAMES.get(code, code) for code in sorted(authorizations))


def create_notice(
    *,
    kind: str,
    basis: str,
    patient: Patient,
    attest_id: UUID,
    accessed_at: datetime.datetime,
    organisation_orgnr: str,
    organisation_name: str,
    clinician_name: str,
    clinician_authorizations: Iterable[str],
) -> PatientNotice:
    """The notice and its first delivery task. Must run inside the caller's transaction."""

    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("a patient notice is written in the transaction of its access")
    notice = PatientNotice.objects.create(
        patient=patient,
        kind=kind,
        basis=basis,
        attest_id=attest_id,
        accessed_at=accessed_at,
        organisation_orgnr=organisation_orgnr,
        organisation_name=organisation_name[:200],
        clinician_name=clinician_name[:200],
        clinician_role=role_of(clinician_authorizations)[:200],
        next_attempt_at=accessed_at,
        created_at=accessed_at,
    )
    enqueue_attempt(notice, attempt=1, run_after=None)
    return notice


def requeue_pending(*, older_than: datetime.timedelta) -> int:
    """A new task for every pending notice whose attempt is overdue by `older_than`: one
    whose task was lost, or that waited for PJD_PATIENT_NOTICE_URL. A task that turns out
    to be a duplicate does nothing (delivery.claim)."""

    if not settings.PATIENT_NOTICE_URL:
        return 0  # nowhere to send them yet: they wait, pending, without a task each
    cutoff = timezone.now() - older_than
    count = 0
    for notice in PatientNotice.objects.filter(status=NoticeStatus.PENDING, next_attempt_at__lte=cutoff):
        with transaction.atomic():
            enqueue_attempt(notice, attempt=notice.attempts + 1, run_after=None)
        count += 1
    return count
