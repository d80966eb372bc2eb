"""The patient banner on every clinician page with patient data: who the patient is (as far
as the policy lets this clinician see), the basis in force and how long it holds."""

from __future__ import annotations

import datetime
import math
from dataclasses import dataclass, replace

from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from pjd_portal.access import policy
from pjd_portal.access.services import PatientAccess
from pjd_portal.accounts.models import User
from pjd_portal.patients.national_id import display_form


@dataclass(frozen=True)
class Banner:
    national_id: str  # display form; the clinician typed it, so it is shown even when the name is not
    name: str = ""  # empty when the policy hides who the patient is from this clinician
    age: int | None = None
    gender: str = ""
    birth_date: datetime.date | None = None
    protected_address: bool = False
    address: str = ""
    fastlege: str = ""
    basis: str = ""
    expires_at: datetime.datetime | None = None
    minutes_left: int | None = None

    @property
    def identity_shown(self) -> bool:
        return bool(self.name)


def banner_of(access: PatientAccess, *, with_fastlege: bool = False) -> Banner:
    """The banner for this access. `with_fastlege` (the patient card) costs one query."""

    patient = access.patient
    valid = policy.attest_is_valid(access.clinician, access.patient_facts, access.attest_facts, access.now)
    attest = access.attest if valid else None
    basis = Banner(
        national_id=display_form(patient.national_id),
        basis=attest.get_basis_display() if attest else "",
        expires_at=attest.expires_at if attest else None,
        minutes_left=max(0, math.ceil((attest.expires_at - access.now).total_seconds() / 60))
        if attest
        else None,
    )
    if not policy.may_see_patient_identity(access.clinician, access.patient_facts):
        return basis
    return replace(
        basis,
        name=patient.name,
        age=patient.age_on(timezone.localdate()),
        gender=patient.get_gender_display(),
        birth_date=patient.birth_date,
        protected_address=patient.has_protected_address,
        address=patient.address
        if policy.may_see_patient_address(access.clinician, access.patient_facts)
        else "",
        fastlege=_fastlege(access) if with_fastlege else "",
    )


def _fastlege(access: PatientAccess) -> str:
    """The fastlege's name, "you" for the clinician's own list patient; empty when the
    patient has none or the name is not known here (an HPR number is not shown)."""

    hpr_number = access.patient.fastlege_hpr_number
    if not hpr_number:
        return ""
    if hpr_number == access.clinician.hpr_number:
        return str(_("You (your list patient)"))
    user = User.objects.filter(hpr_number=hpr_number).only("display_name").first()
    return user.display_name if user is not None else str(_("Registered, name not known here"))
