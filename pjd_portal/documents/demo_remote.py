"""Synthetic documents at a remote MHD source: a FHIR batch Bundle the test FHIR server
(`fhirserver/`, `FHIR_SEED_FILE`) loads at start-up, for the demo (`seed_remote_demo`)
and the tests. Synthetic only, as all demo data.

Each document is a Binary (its bytes), a DocumentReference pointing at it, and the
patient's Patient resource (by national id), linked by `urn:uuid:` full URLs that the
server turns into its own ids.
"""

from __future__ import annotations

import base64
import datetime
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pjd_portal.documents.sources.mhd import CATEGORY_SYSTEM, NATIONAL_ID_SYSTEM, ORGNR_SYSTEM

CONFIDENTIALITY_SYSTEM_VOLVEN = "urn:oid:2.16.578.1.12.4.1.1.9603"
CONFIDENTIALITY_SYSTEM_HL7 = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"


@dataclass(frozen=True)
class SeedPatient:
    national_id: str
    given_name: str = ""
    family_name: str = ""
    birth_date: datetime.date | None = None


@dataclass(frozen=True)
class SeedDocument:
    national_id: str
    category: str  # Volven 9602
    type_code: str
    type_name: str
    title: str
    service_date: datetime.date
    author: str
    custodian_name: str
    custodian_orgnr: str
    data: bytes
    content_type: str = "application/pdf"  # "" leaves it out of the reference
    served_type: str = ""  # the Binary's own type, when not the announced one
    confidentiality: str = "N"  # N, R, V (HL7) or NORS ... (Volven 9603)
    status: str = "current"
    department: str = ""  # context.practiceSetting


def _urn() -> str:
    return f"urn:uuid:{uuid.uuid4()}"


def _entry(full_url: str, resource: dict[str, Any]) -> dict[str, Any]:
    return {
        "fullUrl": full_url,
        "resource": resource,
        "request": {"method": "POST", "url": resource["resourceType"]},
    }


def seed_bundle(patients: Sequence[SeedPatient], documents: Sequence[SeedDocument]) -> dict[str, Any]:
    """A batch Bundle: the patients first, then each document's Binary and reference."""

    entries: list[dict[str, Any]] = []
    patient_urls: dict[str, str] = {}
    for patient in patients:
        url = _urn()
        patient_urls[patient.national_id] = url
        resource: dict[str, Any] = {
            "resourceType": "Patient",
            "identifier": [{"system": NATIONAL_ID_SYSTEM, "value": patient.national_id}],
        }
        if patient.family_name:
            resource["name"] = [{"family": patient.family_name, "given": [patient.given_name]}]
        if patient.birth_date is not None:
            resource["birthDate"] = patient.birth_date.isoformat()
        entries.append(_entry(url, resource))
    for document in documents:
        binary_url = _urn()
        served = document.served_type or document.content_type or "application/pdf"
        entries.append(
            _entry(
                binary_url,
                {
                    "resourceType": "Binary",
                    "contentType": served,
                    "data": base64.b64encode(document.data).decode(),
                },
            )
        )
        attachment: dict[str, Any] = {
            "url": binary_url,
            "size": len(document.data),
            "title": document.title,
        }
        if document.content_type:
            attachment["contentType"] = document.content_type
        system = (
            CONFIDENTIALITY_SYSTEM_HL7
            if document.confidentiality in ("N", "R", "V")
            else CONFIDENTIALITY_SYSTEM_VOLVEN
        )
        created = document.service_date + datetime.timedelta(days=1)
        reference: dict[str, Any] = {
            "resourceType": "DocumentReference",
            "status": document.status,
            "subject": {"reference": patient_urls[document.national_id]},
            # When the reference was made: the day after the service, as sources do.
            "date": f"{created.isoformat()}T09:00:00+01:00",
            "description": document.title,
            "type": {"coding": [{"code": document.type_code, "display": document.type_name}]},
            "category": [{"coding": [{"system": CATEGORY_SYSTEM, "code": document.category}]}],
            "securityLabel": [{"coding": [{"system": system, "code": document.confidentiality}]}],
            "author": [{"display": document.author}],
            "custodian": {
                "display": document.custodian_name,
                "identifier": {"system": ORGNR_SYSTEM, "value": document.custodian_orgnr},
            },
            "context": {
                "period": {"start": document.service_date.isoformat()},
                **({"practiceSetting": {"text": document.department}} if document.department else {}),
            },
            "content": [{"attachment": attachment}],
        }
        entries.append(_entry(_urn(), reference))
    return {"resourceType": "Bundle", "type": "batch", "entry": entries}
