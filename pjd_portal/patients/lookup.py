"""The one lookup of a patient by national id, for every page and API that takes one: the
clinician's lookup, the privacy officer's, innsyn, the log review and the citizen API.

Parsing (`read_national_id`) and the query (`find_patient`) are here; each caller writes
its own event (they differ on purpose), from the fields `PatientMatch.event_fields` gives,
so an invalid number is logged by its reason code only and an unknown one by the number.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings

from pjd_portal.auditlog.events import Outcome
from pjd_portal.patients.models import Patient
from pjd_portal.patients.national_id import InvalidNationalId, NationalId, parse_national_id

NO_SUCH_PATIENT_CODE = "no_such_patient"


def read_national_id(raw: str) -> NationalId | InvalidNationalId:
    """Parse input as this deployment allows (synthetic ids only with PJD_ALLOW_SYNTHETIC_IDS)."""

    try:
        return parse_national_id(raw, allow_synthetic=settings.ALLOW_SYNTHETIC_IDS)
    except InvalidNationalId as exc:
        return exc


@dataclass(frozen=True)
class PatientMatch:
    """What a lookup came to: a patient, none (`no_such_patient`), or invalid input."""

    outcome: str
    reason_code: str = ""
    patient: Patient | None = None
    # The parsed number (also when no patient has it: the log review filters on it and a
    # not-found event records it); "" when the input did not parse.
    national_id: str = ""

    @property
    def found(self) -> bool:
        return self.patient is not None

    def event_fields(self) -> dict[str, Any]:
        """The event's outcome, reason code and patient columns: the patient when found,
        the number when not, nothing of the input when it is invalid (it may be a mistyped
        real id)."""

        return {
            "outcome": self.outcome,
            "reason_code": self.reason_code,
            "patient": self.patient,
            "patient_national_id": "" if self.patient is not None else self.national_id,
        }


def find_patient(entered: NationalId | InvalidNationalId) -> PatientMatch:
    if isinstance(entered, InvalidNationalId):
        return PatientMatch(outcome=Outcome.INVALID, reason_code=f"invalid_{entered.code}")
    patient = Patient.objects.filter(national_id=entered.value).first()
    if patient is None:
        return PatientMatch(
            outcome=Outcome.NOT_FOUND, reason_code=NO_SUCH_PATIENT_CODE, national_id=entered.value
        )
    return PatientMatch(outcome=Outcome.GRANTED, patient=patient, national_id=entered.value)
