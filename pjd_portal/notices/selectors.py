"""Reading notices: the privacy officer's list of one patient's notices."""

from __future__ import annotations

from pjd_portal.notices.models import PatientNotice
from pjd_portal.patients.models import Patient

MAX_SHOWN = 200


def notices_for_patient(patient: Patient) -> list[PatientNotice]:
    """The patient's notices, newest first (one query): sent, pending and failed alike."""

    return list(PatientNotice.objects.filter(patient=patient).order_by("-created_at", "-pk")[:MAX_SHOWN])
