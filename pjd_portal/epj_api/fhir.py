"""FHIR R4 JSON of the MHD API: the DocumentReference (IHE MHD Minimal), the included
Patient, the searchset Bundle with what the list did not show, Binary, the
CapabilityStatement. Plain dicts, as logreading/fhir.py builds the AuditEvents; the
decisions are made before anything here is called.
"""

from __future__ import annotations

import base64
import datetime
import uuid
from typing import Any

from django.utils import timezone
from django.utils.crypto import salted_hmac

from pjd_portal.clinic.listing import ListRow, NotShownLine, SourceNotice
from pjd_portal.clinic.remote import SourceListing
from pjd_portal.logreading.fhir import NATIONAL_ID_SYSTEM, ORGNR_SYSTEM, instant, operation_outcome
from pjd_portal.patients.national_id import NationalIdKind

__all__ = [
    "CATEGORY_SYSTEM",
    "NATIONAL_ID_SYSTEM",
    "NATIONAL_ID_SYSTEMS",
    "binary",
    "capability_statement",
    "document_reference",
    "national_id_system",
    "operation_outcome",
    "patient",
    "patient_id",
    "search_bundle",
]

JSON = dict[str, Any]

CATEGORY_SYSTEM = "urn:oid:2.16.578.1.12.4.1.1.9602"  # Volven 9602: category and type
D_NUMBER_SYSTEM = "urn:oid:2.16.578.1.12.4.1.4.2"
H_NUMBER_SYSTEM = "urn:oid:2.16.578.1.12.4.1.4.3"
# The identifier systems of a Norwegian national id, by its kind: what patient.identifier
# takes and what the documents' subject says. A synthetic (test) id is written as a
# fødselsnummer: the kind it stands in for is not kept.
NATIONAL_ID_SYSTEMS = (NATIONAL_ID_SYSTEM, D_NUMBER_SYSTEM, H_NUMBER_SYSTEM)
_SYSTEM_OF_KIND: dict[str, str] = {
    NationalIdKind.D_NUMMER: D_NUMBER_SYSTEM,
    NationalIdKind.H_NUMMER: H_NUMBER_SYSTEM,
}
CONFIDENTIALITY_HL7 = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
CONFIDENTIALITY_VOLVEN = "urn:oid:2.16.578.1.12.4.1.1.9603"
HL7_CONFIDENTIALITY_CODES = frozenset({"U", "L", "M", "N", "R", "V"})
MHD_MINIMAL = "https://profiles.ihe.net/ITI/MHD/StructureDefinition/IHE.MHD.Minimal.DocumentReference"
MHD_RESPONDER = "https://profiles.ihe.net/ITI/MHD/CapabilityStatement/IHE.MHD.DocumentResponder"
# What the list did not show, by reason class (policy.NOT_SHOWN_*) and by source state.
NOT_SHOWN_SYSTEM = "urn:pjd-portal:CodeSystem:not-shown"
SOURCE_STATE_SYSTEM = "urn:pjd-portal:CodeSystem:source-answer"
COUNT_EXTENSION = "urn:pjd-portal:StructureDefinition:not-shown-count"
SOURCE_EXTENSION = "urn:pjd-portal:StructureDefinition:source"


def patient_id(national_id: str) -> str:
    """The included Patient's logical id: stable for the patient, never the national id
    (a reference may end up in a URL)."""

    return "p" + salted_hmac("pjd.epj-api.patient", national_id).hexdigest()[:40]


def national_id_system(kind: str) -> str:
    """The identifier system of a national id of this kind (patients' `national_id_kind`)."""

    return _SYSTEM_OF_KIND.get(kind, NATIONAL_ID_SYSTEM)


def patient(national_id: str, kind: str) -> JSON:
    """The subject as the search includes it: the identifier only (ITI-67's consumer
    checks the documents' subject against it; nothing else of the patient is shared)."""

    return {
        "resourceType": "Patient",
        "id": patient_id(national_id),
        "identifier": [{"system": national_id_system(kind), "value": national_id}],
    }


def _start_of(day: datetime.date) -> str:
    # The day's start in the portal's time zone, with its offset: read as a date anywhere.
    return timezone.make_aware(datetime.datetime.combine(day, datetime.time())).isoformat()


def _security_label(code: str) -> JSON:
    system = CONFIDENTIALITY_HL7 if code in HL7_CONFIDENTIALITY_CODES else CONFIDENTIALITY_VOLVEN
    return {"coding": [{"system": system, "code": code}]}


def document_reference(
    row: ListRow,
    *,
    resource_id: str,
    national_id: str,
    national_id_kind: str,
    attachment_url: str,
    include_patient: bool,
) -> JSON:
    """One listed document (of the portal's store or of a remote source) as the IHE MHD
    Minimal DocumentReference. `date` is the service date, the list's date: what `date`
    searches and `_sort=date` orders by."""

    subject: JSON = {"identifier": {"system": national_id_system(national_id_kind), "value": national_id}}
    if include_patient:
        subject["reference"] = f"Patient/{patient_id(national_id)}"
    attachment: JSON = {"url": attachment_url, "title": row.title}
    if row.content_type:
        attachment["contentType"] = row.content_type
    if row.size is not None:
        attachment["size"] = row.size
    custodian: JSON = {"display": row.institution_name}
    if row.institution_orgnr:
        custodian["identifier"] = {"system": ORGNR_SYSTEM, "value": row.institution_orgnr}
    authors: list[JSON] = []
    if row.author:
        authors.append({"display": row.author})
    authors.append(dict(custodian))  # the authoring institution, by org.nr
    type_coding: JSON = {"system": CATEGORY_SYSTEM, "code": row.type_code or row.category}
    if row.type_name:
        type_coding["display"] = row.type_name
    context: JSON = {"period": {"start": _start_of(row.service_date)}}
    if row.department:
        context["practiceSetting"] = {"text": row.department}
    resource: JSON = {
        "resourceType": "DocumentReference",
        "id": resource_id,
        "meta": {"profile": [MHD_MINIMAL]},
        "status": "current",
        "type": {"coding": [type_coding], "text": row.type_name or row.category_label},
        "category": [
            {"coding": [{"system": CATEGORY_SYSTEM, "code": row.category, "display": row.category_label}]}
        ],
        "subject": subject,
        "date": _start_of(row.service_date),
        "author": authors,
        "custodian": custodian,
        "description": row.title,
        "securityLabel": [_security_label(row.confidentiality_code or "N")],
        "content": [{"attachment": attachment}],
        "context": context,
    }
    return resource


def _issue(severity: str, code: str, text: str, coding: JSON, **extensions: Any) -> JSON:
    issue: JSON = {"severity": severity, "code": code, "details": {"coding": [coding], "text": text}}
    issue["diagnostics"] = text
    found = [e for e in extensions.values() if e is not None]
    if found:
        issue["extension"] = found
    return issue


def _count(n: int) -> JSON:
    return {"url": COUNT_EXTENSION, "valueInteger": n}


def _source(source_id: int | None, name: str) -> JSON | None:
    if source_id is None:
        return None
    return {"url": SOURCE_EXTENSION, "valueString": f"{source_id}:{name}"}


def list_issues(
    lines: list[NotShownLine],
    sources: list[SourceListing],
    notices: list[SourceNotice],
    names: dict[int, str],
) -> list[JSON]:
    """What the list says under itself, as OperationOutcome issues: each reason class not
    shown with its count (never which documents), each source that failed, sent less than
    it has, or shows this clinician no list. Never a silent gap."""

    issues = [
        _issue(
            "information",
            "suppressed",
            line.message,
            {
                "system": NOT_SHOWN_SYSTEM,
                "code": f"{line.reason}:{line.category}" if line.category else line.reason,
            },
            count=_count(line.count),
            source=_source(line.source_id, names.get(line.source_id or 0, "")),
        )
        for line in lines
    ]
    for s in sources:
        if s.failed or s.pending:
            state = s.failure or ("pending" if s.pending else "failed")
            issues.append(
                _issue(
                    "warning",
                    "transient" if not s.refused else "not-supported",
                    f"{s.source_name} did not answer ({state}): its documents are not in this result.",
                    {"system": SOURCE_STATE_SYSTEM, "code": state},
                    source=_source(s.source_id, s.source_name),
                )
            )
        elif s.incomplete or s.ceiling:
            missing = f"{s.missing} documents" if s.missing else "some documents"
            issues.append(
                _issue(
                    "warning",
                    "incomplete",
                    f"{s.source_name} sent fewer documents than it has ({s.incomplete or 'ceiling'}): "
                    f"{missing} are not in this result.",
                    {"system": SOURCE_STATE_SYSTEM, "code": s.incomplete or "ceiling"},
                    count=_count(s.missing) if s.missing else None,
                    source=_source(s.source_id, s.source_name),
                )
            )
        if s.unverified:
            issues.append(
                _issue(
                    "information",
                    "suppressed",
                    f"{s.source_name}: {s.unverified} documents whose subject could not be checked are not shown.",
                    {"system": NOT_SHOWN_SYSTEM, "code": "unverified_subject"},
                    count=_count(s.unverified),
                    source=_source(s.source_id, s.source_name),
                )
            )
    issues += [
        _issue(
            "information",
            "suppressed",
            n.message,
            {"system": NOT_SHOWN_SYSTEM, "code": f"source_not_listing:{n.reason}"},
            source=_source(n.source_id, n.source_name),
        )
        for n in notices
    ]
    return issues


def search_bundle(
    matches: list[JSON],
    *,
    base: str,
    total: int,
    self_url: str,
    next_url: str | None,
    included: list[JSON],
    issues: list[JSON],
) -> JSON:
    links = [{"relation": "self", "url": self_url}]
    if next_url:
        links.append({"relation": "next", "url": next_url})
    entries = [
        # Absolute: a Bundle entry's fullUrl is the resource's URL on this server (FHIR R4,
        # Bundle.entry.fullUrl), never a relative reference.
        {"fullUrl": f"{base}/DocumentReference/{r['id']}", "resource": r, "search": {"mode": "match"}}
        for r in matches
    ]
    entries += [
        {"fullUrl": f"{base}/Patient/{r['id']}", "resource": r, "search": {"mode": "include"}}
        for r in included
    ]
    if issues:
        outcome = {"resourceType": "OperationOutcome", "id": str(uuid.uuid4()), "issue": issues}
        entries.append(
            {"fullUrl": f"urn:uuid:{outcome['id']}", "resource": outcome, "search": {"mode": "outcome"}}
        )
    bundle: JSON = {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "meta": {"lastUpdated": instant(timezone.now())},
        "type": "searchset",
        "total": total,
        "link": links,
    }
    if entries:  # FHIR JSON has no empty arrays
        bundle["entry"] = entries
    return bundle


def binary(resource_id: str, content_type: str, data: bytes) -> JSON:
    return {
        "resourceType": "Binary",
        "id": resource_id,
        "contentType": content_type,
        "data": base64.b64encode(data).decode("ascii"),
    }


SEARCH_PARAMETERS = (
    ("status", "token", "current (default); superseded and entered-in-error give empty results"),
    ("category", "token", "Volven 9602 class, with or without its system; a,b is a OR b"),
    ("date", "date", "the service date: ge, le, gt, lt, eq (repeatable)"),
    ("_id", "token", "one document"),
    (
        "patient.identifier",
        "token",
        "POST body only: the attest's patient (else as an unknown patient); fødselsnummer, "
        "D-nummer or H-nummer system",
    ),
    ("_count", "number", "1 to 100"),
    ("_sort", "string", "date or -date (default -date)"),
    ("_include", "string", "DocumentReference:subject"),
    ("_cursor", "string", "the next page (opaque, signed; from link next)"),
)


def capability_statement(base_url: str, *, software_version: str = "") -> JSON:
    return {
        "resourceType": "CapabilityStatement",
        "id": "pjd-portal-mhd",
        "url": f"{base_url}/metadata",
        "name": "PjdPortalMhdDocumentResponder",
        "title": "PJD Portal: IHE MHD Document Responder (ITI-67, ITI-68) for EPJ systems",
        "status": "active",
        "date": "2026-12-03",
        "publisher": "PJD Portal",
        "kind": "instance",
        "instantiates": [MHD_RESPONDER],
        "implementationGuide": ["https://profiles.ihe.net/ITI/MHD/ImplementationGuide/ihe.iti.mhd"],
        "software": {"name": "PJD Portal", "version": software_version or "1"},
        "implementation": {"description": "PJD Portal MHD API", "url": base_url},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "rest": [
            {
                "mode": "server",
                "documentation": (
                    "The patient is always the one of the token's trust framework attest; the national id never "
                    "goes in a URL (search by POST; a GET search takes no patient parameter; next links carry an "
                    "opaque cursor). An unknown search parameter is refused with 400 and an OperationOutcome, as "
                    "HAPI FHIR does with strict handling. What the portal does not show is counted by reason "
                    "class in an OperationOutcome entry (search.mode outcome), with every source that did not answer."
                ),
                "security": {
                    "cors": False,
                    "service": [
                        {
                            "coding": [
                                {
                                    "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                                    "code": "SMART-on-FHIR",
                                }
                            ],
                            "text": "OAuth2 (HelseID), DPoP-bound access tokens",
                        }
                    ],
                    "description": (
                        "Every call but metadata carries `Authorization: DPoP <HelseID access token>` and a `DPoP` "
                        "proof (RFC 9449) for its method and URL, with the nonce of the latest `DPoP-Nonce` header "
                        "(a call without one is answered 401 use_dpop_nonce with a fresh nonce). The token's "
                        "authorization_details carries the trust framework attest (nhn:tillitsrammeverk:parameters) "
                        "for exactly one patient; the portal's own policy decides on it. Every answer carries a "
                        "fresh DPoP-Nonce. See docs/epj.md."
                    ),
                },
                "resource": [
                    {
                        "type": "DocumentReference",
                        "supportedProfile": [MHD_MINIMAL],
                        "interaction": [{"code": "search-type"}],
                        "searchInclude": ["DocumentReference:subject"],
                        "searchParam": [
                            {"name": name, "type": kind, "documentation": doc}
                            for name, kind, doc in SEARCH_PARAMETERS
                        ],
                    },
                    {
                        "type": "Binary",
                        "interaction": [{"code": "read"}],
                        "documentation": (
                            "ITI-68: the document's bytes in its own content type, or a Binary resource "
                            "(base64 data) for Accept: application/fhir+json."
                        ),
                    },
                    {
                        "type": "AuditEvent",
                        "interaction": [{"code": "search-type"}],
                        "documentation": "The citizen portal's search of a patient's access log (POST _search).",
                    },
                ],
            }
        ],
    }
