"""The trust framework's attest (tillitsrammeverk), as an EPJ's HelseID token carries it in
`authorization_details` (docs/epj.md, "The attest").

Reading only: what the attest says, in the portal's terms. Whether it opens anything is
the policy's business (access/policy.py), as for a clinician in the portal. The attest is
read as NHN publishes it (snake_case members, `care_relationship`) and as NHN's
information model writes them (`hpr-nr`, `legal-entity`, `care-relation`, ...): the same
attest should not be refused for its spelling.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pjd_portal.lib.redact import redact_national_ids

ATTEST_TYPE = "nhn:tillitsrammeverk:parameters"
MAX_DECISION_REF = 200
MAX_REASON = 2000
_ORGNR = re.compile(r"^\d{9}$")
_PID = re.compile(r"^\d{11}$")
_CODE = re.compile(r"^[A-Za-z0-9_.\-]{1,30}$")


class AttestInvalid(Exception):
    """The token carries no attest the portal can read. `reason_code` for the log."""

    def __init__(self, reason_code: str, message: str) -> None:
        super().__init__(reason_code)
        self.reason_code = reason_code
        self.message = message


@dataclass(frozen=True)
class TrustAttest:
    practitioner_pid: str
    practitioner_name: str
    hpr_number: str
    authorization: str
    legal_entity_orgnr: str
    point_of_care_orgnr: str
    purpose_of_use: str
    purpose_of_use_details: str
    decision_ref: str
    user_selected: bool
    reason: str
    # As the attest lists them, unchecked: exactly one is the policy's rule, and a wrong
    # count is refused with its own answer where the visit starts.
    patient_ids: tuple[str, ...]


def _normal(value: Any) -> Any:
    """Members spelt with hyphens as with underscores, at every depth. Both spellings of
    one member is an attest that says two things: what HelseID or the EPJ's own log read
    might not be what the portal acts on, so it is refused."""

    if isinstance(value, Mapping):
        normal = {str(k).replace("-", "_"): _normal(v) for k, v in value.items()}
        if len(normal) != len(value):
            raise AttestInvalid("attest_ambiguous", "The attest names one member twice.")
        return normal
    if isinstance(value, list):
        return [_normal(v) for v in value]
    return value


def _member(parent: Mapping[str, Any], *names: str) -> Mapping[str, Any]:
    for name in names:
        found = parent.get(name)
        if isinstance(found, Mapping):
            return found
    return {}


def _text(parent: Mapping[str, Any], name: str, limit: int = 200) -> str:
    value = parent.get(name)
    if isinstance(value, str):
        return value.strip()[:limit]
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return ""


def _attest_object(details: Sequence[Mapping[str, Any]] | Mapping[str, Any]) -> Mapping[str, Any]:
    candidates = [details] if isinstance(details, Mapping) else list(details)
    ours = [d for d in candidates if isinstance(d, Mapping) and d.get("type") == ATTEST_TYPE]
    if not ours:
        raise AttestInvalid("attest_missing", "The access token carries no trust framework attest.")
    if len(ours) > 1:
        raise AttestInvalid("attest_several", "The access token carries more than one attest.")
    return _normal(ours[0])  # type: ignore[no-any-return]


def read_attest(details: Sequence[Mapping[str, Any]] | Mapping[str, Any]) -> TrustAttest:
    """The attest of type `nhn:tillitsrammeverk:parameters` in these authorization details."""

    attest = _attest_object(details)
    practitioner = _member(attest, "practitioner")
    care = _member(attest, "care_relationship", "care_relation")
    pid = _text(_member(practitioner, "identifier"), "id")
    legal_entity = _text(_member(practitioner, "legal_entity"), "id")
    point_of_care = _text(_member(practitioner, "point_of_care"), "id") or legal_entity
    purpose = _text(_member(care, "purpose_of_use"), "code").upper()
    if not _PID.match(pid):
        raise AttestInvalid("attest_practitioner", "The attest names no practitioner by national id.")
    if not _ORGNR.match(legal_entity) or not _ORGNR.match(point_of_care):
        raise AttestInvalid(
            "attest_organisation", "The attest names no legal entity and point of care (org.nr)."
        )
    if not _CODE.match(purpose):
        raise AttestInvalid("attest_purpose", "The attest states no purpose of use.")
    details_code = _text(_member(care, "purpose_of_use_details"), "code", 30)
    decision = _member(care, "decision_ref")
    selected = decision.get("user_selected")
    patients = attest.get("patients")
    if patients is None and isinstance(attest.get("patient"), Mapping):
        patients = [attest["patient"]]  # the information model's singular
    patient_ids = tuple(
        _text(_member(p, "identifier"), "id", 20) for p in patients or [] if isinstance(p, Mapping)
    )
    return TrustAttest(
        practitioner_pid=pid,
        practitioner_name=_text(_member(practitioner, "identifier"), "name"),
        hpr_number=_text(_member(practitioner, "hpr_nr"), "id", 9),
        authorization=_text(_member(practitioner, "authorization"), "code", 10),
        legal_entity_orgnr=legal_entity,
        point_of_care_orgnr=point_of_care,
        purpose_of_use=purpose,
        purpose_of_use_details=details_code if _CODE.match(details_code) else "",
        # Shown in log review and the patient's own log: an EPJ that put a national id in
        # its reference must not have it shown there.
        decision_ref=redact_national_ids(_text(decision, "id", MAX_DECISION_REF)),
        user_selected=selected if isinstance(selected, bool) else False,
        reason=redact_national_ids(_text(decision, "reason", MAX_REASON)),
        patient_ids=patient_ids,
    )
