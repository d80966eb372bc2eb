"""The patient's access log ("innsyn i logg"): FHIR AuditEvents (IHE BALP) for the citizen
portal's API, keyset paging, and the privacy officer's printable page.

FHIR output is validated with `fhir.resources`' R4B models (strict: unknown elements and
bad datatypes are errors), and in batches by a second, independent validator, FHIR.js
against the R4 StructureDefinitions (tests/fhir_validation.py). The AuditEvents are built as
the patient may see them (`policy.CITIZEN_LOG`) unless a test says otherwise."""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import json
import re
import time
import uuid
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt
import pytest
import time_machine
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from fhir.resources.R4B.auditevent import AuditEvent as FhirAuditEvent
from fhir.resources.R4B.bundle import Bundle as FhirBundle
from fhir.resources.R4B.operationoutcome import OperationOutcome as FhirOperationOutcome

from pjd_portal.access import policy
from pjd_portal.access.models import AccessAttest, Basis, PatientLookup
from pjd_portal.accounts.audit_context import anonymous_actor
from pjd_portal.accounts.keys import public_jwks
from pjd_portal.accounts.models import Role
from pjd_portal.accounts.sessions import SESSION_ACTIVITY_AT_KEY
from pjd_portal.auditlog import events as kinds
from pjd_portal.auditlog.events import Outcome
from pjd_portal.auditlog.models import AccessEvent
from pjd_portal.auditlog.services import record_event
from pjd_portal.documents.models import ConfidentialityCode
from pjd_portal.logreading import fhir
from pjd_portal.logreading.selectors import (
    PATIENT_LOG_EVENT_TYPES,
    InvalidCursor,
    decode_cursor,
    patient_log_page,
)
from tests.builders import (
    LIST_PATIENT_ID,
    OTHER_PATIENT_ID,
    UNKNOWN_PATIENT_ID,
    add_document,
    add_sub_unit,
    comparable,
    grant_role,
    login,
    lookup_and_attest,
    matched,
    record,
    request_as,
    revoke_roles,
)
from tests.fhir_validation import assert_valid_r4, fhir_js

API = "/api/fhir/AuditEvent/_search"
AUDIENCE = f"http://testserver{API}"
PAGE = "/forvaltning/innsyn/"
CLIENT_ID = "innbyggerportal"
FHIR_JSON = "application/fhir+json"
T0 = datetime.datetime(2026, 7, 1, 10, 0, 0, tzinfo=datetime.UTC)  # 12:00 in Oslo (CEST)
CITIZEN = policy.CITIZEN_LOG
AUDITOR = policy.AUDITOR_LOG


# --- fixtures and helpers ----------------------------------------------------------


def _rsa_pem() -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@pytest.fixture(scope="module")
def citizen_key() -> bytes:
    return _rsa_pem()


@pytest.fixture(scope="module")
def other_key() -> bytes:
    return _rsa_pem()


@pytest.fixture
def citizen_portal(settings, citizen_key):
    """The citizen portal registered as the API client, its public key given as JSON."""

    jwks = public_jwks(citizen_key)
    settings.CITIZEN_PORTAL_CLIENT_ID = CLIENT_ID
    settings.CITIZEN_PORTAL_JWKS = json.dumps(jwks)
    return jwks["keys"][0]["kid"]


def claims(**overrides):
    now = int(time.time())
    base = {
        "iss": CLIENT_ID,
        "sub": CLIENT_ID,
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + 60,
        "jti": str(uuid.uuid4()),
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def token(key: bytes, kid: str, **overrides) -> str:
    return jwt.encode(claims(**overrides), key, algorithm="RS256", headers={"kid": kid})


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned_token(header: dict[str, Any], payload: dict[str, Any], signature: bytes = b"") -> str:
    head = _b64(json.dumps(header).encode())
    body = _b64(json.dumps(payload).encode())
    return f"{head}.{body}.{_b64(signature)}"


def api(client: Client, data: dict[str, Any], bearer: str | None, *, as_json: bool = False, query: str = ""):
    headers: dict[str, Any] = {"HTTP_AUTHORIZATION": f"Bearer {bearer}"} if bearer else {}
    url = f"{API}?{query}" if query else API
    if as_json:
        return client.post(url, data=json.dumps(data), content_type="application/json", **headers)
    return client.post(url, data=urlencode(data), content_type="application/x-www-form-urlencoded", **headers)


def make_attest(world, basis=Basis.UNNTAK, purpose="TREAT", reason="", patient=None):
    patient = patient or world.patient
    now = datetime.datetime.now(datetime.UTC)
    lookup = PatientLookup.objects.create(
        user=world.fastlege,
        organisation=world.gp_office,
        patient=patient,
        created_at=now,
        expires_at=now + datetime.timedelta(hours=1),
    )
    return AccessAttest.objects.create(
        lookup=lookup,
        user=world.fastlege,
        organisation=world.gp_office,
        patient=patient,
        basis=basis,
        purpose_of_use=purpose,
        care_relation="BEHANDLER",
        reason=reason,
        created_at=now,
        expires_at=now + datetime.timedelta(hours=1),
    )


def validate_event(resource: dict[str, Any]) -> FhirAuditEvent:
    return FhirAuditEvent.model_validate(resource)


def codings(concepts):
    return {(c["system"], c["code"]) for concept in concepts for c in concept["coding"]}


def user_agent(resource):
    [agent] = [a for a in resource["agent"] if a["requestor"] and "reference" in a["who"]]
    return agent


def entity(resource, system, code):
    found = [
        e for e in resource.get("entity", []) if (e["type"]["system"], e["type"]["code"]) == (system, code)
    ]
    return found


# --- 1. mapping: every event type, validated as R4B --------------------------------


def _cases(world):
    """(label, event) for every event type the portal writes, with the interesting variants."""

    doc = add_document(world)
    attest = make_attest(world)
    emergency = make_attest(world, Basis.AKUTT, "BTG", "Pasienten er bevisstløs etter fall.")
    cases = [
        ("login", record(world, T0, kinds.LOGIN.name)),
        ("login_refused", record(world, T0, kinds.LOGIN_REFUSED.name, Outcome.DENIED, reason_code="no_hpr")),
        ("logout", record(world, T0, kinds.LOGOUT.name)),
        ("organisation_chosen", record(world, T0, kinds.ORGANISATION_CHOSEN.name)),
        (
            "session_expired",
            record(world, T0, kinds.SESSION_EXPIRED.name, Outcome.DENIED, reason_code="idle"),
        ),
        ("lookup", record(world, T0, kinds.PATIENT_LOOKUP.name, patient=world.patient)),
        (
            "lookup_miss",
            record(
                world,
                T0,
                kinds.PATIENT_LOOKUP.name,
                Outcome.NOT_FOUND,
                reason_code="no_such_patient",
                patient_national_id=UNKNOWN_PATIENT_ID,
            ),
        ),
        (
            "lookup_invalid",
            record(world, T0, kinds.PATIENT_LOOKUP.name, Outcome.INVALID, reason_code="invalid_format"),
        ),
        ("basis", record(world, T0, kinds.BASIS_STATED.name, patient=world.patient, attest=attest)),
        (
            "emergency",
            record(
                world,
                T0,
                kinds.EMERGENCY_ACCESS.name,
                patient=world.patient,
                attest=emergency,
                reason_text=emergency.reason,
                flagged_for_review=True,
            ),
        ),
        (
            "list",
            record(
                world,
                T0,
                kinds.DOCUMENT_LIST.name,
                patient=world.patient,
                attest=attest,
                details={"page": 1, "sort": "-date", "category": "", "shown": 1},
            ),
        ),
        (
            "open",
            record(world, T0, kinds.DOCUMENT_OPEN.name, patient=world.patient, document=doc, attest=attest),
        ),
        (
            "open_denied",
            record(
                world,
                T0,
                kinds.ACCESS_DENIED.name,
                Outcome.DENIED,
                reason_code="outside_window",
                patient=world.patient,
                document=doc,
                attest=attest,
                details={"document_id": str(doc.document_id)},
            ),
        ),
        (
            "basis_denied",
            record(
                world,
                T0,
                kinds.ACCESS_DENIED.name,
                Outcome.DENIED,
                reason_code="unntak_not_list_patient",
                patient=world.patient,
                basis=Basis.UNNTAK,
            ),
        ),
        (
            "list_denied",
            record(
                world,
                T0,
                kinds.ACCESS_DENIED.name,
                Outcome.DENIED,
                reason_code="clinician_blocked",
                patient=world.patient,
                attest=attest,
            ),
        ),
        (
            "unknown_handle",
            record(
                world,
                T0,
                kinds.ACCESS_DENIED.name,
                Outcome.NOT_FOUND,
                reason_code="unknown_handle",
                details={"handle": str(uuid.uuid4())},
            ),
        ),
    ]
    # A log read has no person behind it (the citizen portal asked): recorded without one.
    request = request_as(method="post")
    with time_machine.travel(T0, tick=False):
        log_read = record_event(
            kinds.PATIENT_LOG_READ(
                outcome=Outcome.GRANTED, patient=world.patient, client_id=CLIENT_ID, log_read="fhir_api"
            ),
            actor=anonymous_actor(request),
            where=None,
        )
    cases.append(("log_read_by_citizen_portal", log_read))
    # Whatever types audit/models.py has by now: each maps to something valid.
    covered = {event.event_type for _, event in cases}
    for event_type in kinds.KINDS:
        if event_type not in covered:
            carries = kinds.kind(event_type).carries_patient
            cases.append(
                (event_type, record(world, T0, event_type, patient=world.patient if carries else None))
            )
    return cases


def _loaded(event):
    return AccessEvent.objects.select_related("document", "attest").get(pk=event.pk)


def test_every_event_type_maps_to_a_valid_r4b_audit_event(world):
    cases = _cases(world)
    assert {e.event_type for _, e in cases} >= set(kinds.KINDS)
    for label, event in cases:
        resource = fhir.audit_event(_loaded(event), audience=CITIZEN)
        validate_event(resource)  # raises on anything R4B does not allow
        assert resource["id"] == str(event.event_id), label
        assert resource["recorded"] == "2026-07-01T10:00:00.000000Z", label
        assert resource["outcome"] == ("0" if event.outcome == Outcome.GRANTED else "4"), label
        # A BALP profile is claimed only for successes (BALP fixes outcome to 0).
        if event.outcome != Outcome.GRANTED:
            assert "meta" not in resource, label


def test_document_open_is_balp_patient_read_with_clinician_organisation_patient_and_document(world):
    doc = add_document(world, title="Epikrise hjerteavdelingen")
    attest = make_attest(world)
    event = record(world, T0, kinds.DOCUMENT_OPEN.name, patient=world.patient, document=doc, attest=attest)
    resource = fhir.audit_event(_loaded(event), audience=CITIZEN)
    validate_event(resource)

    assert resource["meta"]["profile"] == [
        "https://profiles.ihe.net/ITI/BALP/StructureDefinition/IHE.BasicAudit.PatientRead"
    ]
    assert resource["type"] == {
        "system": "http://terminology.hl7.org/CodeSystem/audit-event-type",
        "code": "rest",
        "display": "Restful Operation",
    }
    assert [(s["system"], s["code"]) for s in resource["subtype"]] == [
        ("http://hl7.org/fhir/restful-interaction", "read")
    ]
    assert resource["action"] == "R"

    # agents: user (IRCP), client (DCM 110152 for a read), server (DCM 110153)
    agent_types = {
        (a["type"]["coding"][0]["system"], a["type"]["coding"][0]["code"]) for a in resource["agent"]
    }
    assert agent_types == {
        ("http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "IRCP"),
        ("http://dicom.nema.org/resources/ontology/DCM", "110152"),
        ("http://dicom.nema.org/resources/ontology/DCM", "110153"),
    }
    user = user_agent(resource)
    assert user["who"]["identifier"] == {"system": "urn:oid:2.16.578.1.12.4.1.4.4", "value": "910000011"}
    assert user["who"]["display"] == "Kari Fastlege"
    assert codings(user["role"]) == {("urn:oid:2.16.578.1.12.4.1.1.9060", "LE")}
    assert codings(user["purposeOfUse"]) == {
        ("http://terminology.hl7.org/CodeSystem/v3-ActReason", "TREAT"),
        (fhir.BASIS_SYSTEM, "UNNTAK"),
    }
    contained = {r["resourceType"]: r for r in resource["contained"]}
    assert user["who"]["reference"] == "#actor-role"
    # The patient sees the clinician's HPR number, never their national id ...
    assert contained["Practitioner"]["identifier"] == [
        {"system": "urn:oid:2.16.578.1.12.4.1.4.4", "value": "910000011"}
    ]
    assert contained["Practitioner"]["name"] == [{"text": "Kari Fastlege"}]
    assert codings(contained["PractitionerRole"]["code"]) == {("urn:oid:2.16.578.1.12.4.1.1.9060", "LE")}
    # ... nor the IP address the request came from: both are for the auditors.
    assert all("network" not in a for a in resource["agent"] if a["who"].get("display") != "PJD portal")
    audited = fhir.audit_event(_loaded(event), audience=AUDITOR)
    audited_contained = {r["resourceType"]: r for r in audited["contained"]}
    assert {(i["system"], i["value"]) for i in audited_contained["Practitioner"]["identifier"]} == {
        ("urn:oid:2.16.578.1.12.4.1.4.4", "910000011"),
        ("urn:oid:2.16.578.1.12.4.1.4.1", world.fastlege.pid),
    }
    assert {"address": event.client_ip, "type": "2"} in [a.get("network") for a in audited["agent"]]
    assert contained["Organization"]["identifier"] == [
        {"system": "urn:oid:2.16.578.1.12.4.1.4.101", "value": "310000000"}
    ]
    assert contained["Organization"]["name"] == "Storgata legekontor"

    [patient] = entity(resource, "http://terminology.hl7.org/CodeSystem/audit-entity-type", "1")
    assert patient["role"]["code"] == "1"
    assert patient["what"]["identifier"] == {
        "system": "urn:oid:2.16.578.1.12.4.1.4.1",
        "value": LIST_PATIENT_ID,
    }
    objects = entity(resource, "http://terminology.hl7.org/CodeSystem/audit-entity-type", "2")
    [document] = [e for e in objects if e["what"].get("type") == "DocumentReference"]
    assert document["role"]["code"] == "4"
    assert document["what"]["identifier"]["value"] == f"urn:uuid:{doc.document_id}"
    assert document["what"]["display"] == "Epikrise hjerteavdelingen"
    assert document["description"] == "Oslo universitetssykehus HF"
    # ... with the organisation that holds and shares it,
    assert {"type": "source-orgnr", "valueString": doc.source.organisation.orgnr} in document["detail"]
    # ... and the attest the open was made under.
    [attested] = [e for e in objects if e.get("name") == "access attest"]
    assert attested["what"]["identifier"]["value"] == f"urn:uuid:{attest.attest_id}"
    [transaction] = entity(resource, fhir.BALP_ENTITY_TYPE, "XrequestId")
    assert transaction["what"]["identifier"]["value"] == event.request_id


def test_a_sub_unit_is_part_of_its_legal_entity_in_the_audit_event(world):
    unit = add_sub_unit(world)
    event = record(world, T0, kinds.DOCUMENT_LIST.name, patient=world.patient, org=unit)
    resource = fhir.audit_event(_loaded(event), audience=CITIZEN)
    validate_event(resource)
    contained = {r["id"]: r for r in resource["contained"]}
    assert contained["organisation"]["identifier"][0]["value"] == "974589095"
    assert contained["organisation"]["partOf"] == {"reference": "#legal-entity"}
    assert contained["legal-entity"]["identifier"][0]["value"] == world.hospital.orgnr
    assert contained["legal-entity"]["name"] == world.hospital.name


def test_the_printed_log_names_the_legal_entity_of_a_sub_unit(world, as_privacy_officer):
    unit = add_sub_unit(world)
    record(world, T0, kinds.DOCUMENT_OPEN.name, patient=world.patient, org=unit, document=add_document(world))
    body = as_privacy_officer.post(PAGE, {"national_id": LIST_PATIENT_ID}).content.decode()
    assert "OUS, Akuttmottaket" in body and f"del av {world.hospital.name}" in body


def test_lookup_and_list_are_balp_patient_query_with_the_query_base64(world):
    lookup = record(world, T0, kinds.PATIENT_LOOKUP.name, patient=world.patient)
    listed = record(
        world, T0, kinds.DOCUMENT_LIST.name, patient=world.patient, details={"page": 2, "sort": "title"}
    )
    for event in (lookup, listed):
        resource = fhir.audit_event(_loaded(event), audience=CITIZEN)
        validate_event(resource)
        assert resource["meta"]["profile"] == [
            "https://profiles.ihe.net/ITI/BALP/StructureDefinition/IHE.BasicAudit.PatientQuery"
        ]
        assert resource["subtype"][0]["code"] == "search-type"
        assert resource["action"] == "E"
        client = next(a for a in resource["agent"] if a["type"]["coding"][0]["code"] == "110153")
        assert client["requestor"] is False  # the user is the requestor
        [query] = [e for e in resource["entity"] if e.get("role", {}).get("code") == "24"]
        decoded = base64.b64decode(query["query"]).decode()
        assert decoded == query["description"]
        params = parse_qs(urlsplit(decoded).query)
        assert f"{fhir.NATIONAL_ID_SYSTEM}|{LIST_PATIENT_ID}" in next(iter(params.values()))


def test_emergency_access_is_a_create_with_break_the_glass_and_the_reason(world):
    attest = make_attest(world, Basis.AKUTT, "BTG", "Pasienten er bevisstløs etter fall.")
    event = record(
        world,
        T0,
        kinds.EMERGENCY_ACCESS.name,
        patient=world.patient,
        attest=attest,
        reason_text=attest.reason,
    )
    resource = fhir.audit_event(_loaded(event), audience=CITIZEN)
    validate_event(resource)
    assert resource["meta"]["profile"][0].endswith("IHE.BasicAudit.PatientCreate")
    assert resource["action"] == "C"
    user = user_agent(resource)
    assert user["type"]["coding"][0]["code"] == "AUT"
    purposes = {c["coding"][0]["code"]: c for c in user["purposeOfUse"]}
    assert purposes["BTG"]["coding"][0]["system"] == "http://terminology.hl7.org/CodeSystem/v3-ActReason"
    assert purposes["AKUTT"]["text"] == "Pasienten er bevisstløs etter fall."
    [data] = [e for e in resource["entity"] if e["type"]["code"] == "2"]
    assert data["what"]["identifier"]["value"] == f"urn:uuid:{attest.attest_id}"


def test_a_refused_open_follows_patient_read_with_a_failure_outcome_and_no_profile_claim(world):
    doc = add_document(world)
    event = record(
        world,
        T0,
        kinds.ACCESS_DENIED.name,
        Outcome.DENIED,
        reason_code="source_rule_open",
        patient=world.patient,
        document=doc,
        details={"document_id": str(doc.document_id)},
    )
    resource = fhir.audit_event(_loaded(event), audience=CITIZEN)
    validate_event(resource)
    assert (resource["action"], resource["outcome"]) == ("R", "4")
    # Refused, in words and in the code: no PatientRead profile (BALP defines it for a success).
    assert resource["outcomeDesc"] == "refused (denied: source_rule_open)"
    assert "meta" not in resource
    assert resource["type"]["code"] == "rest" and resource["subtype"][0]["code"] == "read"


def test_recorded_is_the_event_time_in_utc():
    event = AccessEvent(
        event_id=uuid.uuid4(),
        occurred_at=datetime.datetime(
            2026, 1, 15, 23, 30, 0, 250000, tzinfo=datetime.timezone(datetime.timedelta(hours=1))
        ),
        event_type=kinds.LOGIN.name,
        outcome=Outcome.GRANTED,
    )
    resource = fhir.audit_event(event, audience=CITIZEN)
    assert resource["recorded"] == "2026-01-15T22:30:00.250000Z"
    validate_event(resource)


@pytest.mark.parametrize("code", [ConfidentialityCode.NORN_DUE, ConfidentialityCode.NORU])
def test_a_document_kept_from_the_citizen_is_logged_without_its_title(world, code):
    doc = add_document(world, title="Hemmelig tittel", confidentiality=code)
    event = record(world, T0, kinds.DOCUMENT_OPEN.name, patient=world.patient, document=doc)
    resource = fhir.audit_event(_loaded(event), audience=CITIZEN)
    validate_event(resource)
    text = json.dumps(resource)
    assert "Hemmelig tittel" not in text and "Oslo universitetssykehus" not in text
    assert f"urn:uuid:{doc.document_id}" in text  # the access itself is still there
    assert not policy.citizen_may_see_document_details(code)
    assert policy.citizen_may_see_document_details(ConfidentialityCode.NORMAL)


def _remote_open(world, code, outcome=Outcome.GRANTED, event_type=kinds.DOCUMENT_OPEN.name):
    details = {"source_id": 7, "remote_document_id": "DocumentReference/abc-123"}
    if outcome == Outcome.GRANTED:
        details |= {
            "title": "Epikrise fra UNN",
            "institution_name": "Universitetssykehuset Nord-Norge",
            "institution_orgnr": "983974899",
            "confidentiality_code": code,
        }
    return record(
        world,
        T0,
        event_type,
        outcome,
        patient=world.patient,
        attest=make_attest(world),
        source_orgnr="310400009",
        details=details,
    )


def test_a_remote_open_is_a_patient_read_naming_the_document_at_its_source(world):
    resource = fhir.audit_event(_loaded(_remote_open(world, ConfidentialityCode.NORMAL)), audience=CITIZEN)
    validate_event(resource)
    assert resource["meta"]["profile"][0].endswith("IHE.BasicAudit.PatientRead")
    [document] = [e for e in resource["entity"] if e["what"].get("type") == "DocumentReference"]
    assert document["what"]["identifier"] == {
        "system": "urn:pjd:mhd-source:310400009",
        "value": "DocumentReference/abc-123",
    }
    assert document["name"] == "Epikrise fra UNN"
    assert {"type": "source-orgnr", "valueString": "310400009"} in document["detail"]
    assert any(e.get("name") == "access attest" for e in resource["entity"])


@pytest.mark.parametrize("code", [ConfidentialityCode.NORN_DUE, ConfidentialityCode.NORU, ""])
def test_a_remote_document_kept_from_the_citizen_or_of_unknown_confidentiality_has_no_title(world, code):
    resource = fhir.audit_event(_loaded(_remote_open(world, code)), audience=CITIZEN)
    validate_event(resource)
    assert "Epikrise fra UNN" not in json.dumps(resource)
    [document] = [e for e in resource["entity"] if e["what"].get("type") == "DocumentReference"]
    assert document["what"]["identifier"]["value"] == "DocumentReference/abc-123"


def test_a_refused_remote_open_follows_patient_read(world):
    event = _remote_open(world, "", outcome=Outcome.DENIED, event_type=kinds.ACCESS_DENIED.name)
    resource = fhir.audit_event(_loaded(event), audience=CITIZEN)
    validate_event(resource)
    assert resource["subtype"][0]["code"] == "read" and resource["outcome"] == "4"


# --- 1b. what the patient sees: theirs only ----------------------------------------


def _others(world):
    """Another patient's document, attest, remote document id and lookup handle."""

    doc = add_document(world, world.other_patient, title="Den andres epikrise")
    attest = make_attest(world, patient=world.other_patient)
    return {
        "doc": doc,
        "attest": attest,
        "remote_id": "DocumentReference/den-andres-999",
        "handle": str(attest.lookup.handle),
    }


def _other_patients_identifiers(world, others) -> list[str]:
    return [
        OTHER_PATIENT_ID,
        UNKNOWN_PATIENT_ID,
        str(others["doc"].document_id),
        str(others["attest"].attest_id),
        others["remote_id"],
        others["handle"],
        "Den andres epikrise",
    ]


def _carrying_others(world, others):
    """For each event type of the patient's log: events of this patient that also name
    something of another patient's, every way the type can."""

    doc, attest, remote_id, handle = others["doc"], others["attest"], others["remote_id"], others["handle"]
    patient = world.patient
    denied = {"outcome": Outcome.DENIED, "patient": patient}
    return {
        kinds.PATIENT_LOOKUP.name: [
            record(world, T0, kinds.PATIENT_LOOKUP.name, patient=patient, attest=attest, handle=handle),
            # A lookup that found nobody: the number asked for is no one this patient is.
            record(
                world,
                T0,
                kinds.PATIENT_LOOKUP.name,
                Outcome.NOT_FOUND,
                reason_code="no_such_patient",
                patient_national_id=UNKNOWN_PATIENT_ID,
            ),
        ],
        kinds.BASIS_STATED.name: [record(world, T0, kinds.BASIS_STATED.name, patient=patient, attest=attest)],
        kinds.EMERGENCY_ACCESS.name: [
            record(world, T0, kinds.EMERGENCY_ACCESS.name, patient=patient, attest=attest, situation="x")
        ],
        kinds.DOCUMENT_LIST.name: [
            record(
                world,
                T0,
                kinds.DOCUMENT_LIST.name,
                patient=patient,
                attest=attest,
                document=doc,
                document_ids=[str(doc.document_id)],
                remote_document_ids=[remote_id],
            )
        ],
        kinds.DOCUMENT_VIEWED.name: [
            record(
                world,
                T0,
                kinds.DOCUMENT_VIEWED.name,
                patient=patient,
                document=doc,
                attest=attest,
                document_id=str(doc.document_id),
            )
        ],
        kinds.DOCUMENT_OPEN.name: [
            record(world, T0, kinds.DOCUMENT_OPEN.name, patient=patient, document=doc, attest=attest)
        ],
        kinds.ACCESS_DENIED.name: [
            # The issue's case: a denied open of another patient's document (clinic/opening.py
            # names the id asked for, not the row).
            record(
                world, T0, kinds.ACCESS_DENIED.name, reason_code="unknown_document",
                document_id=str(doc.document_id), **denied,
            ),
            # An older writer that linked the other patient's row itself.
            record(
                world, T0, kinds.ACCESS_DENIED.name, reason_code="outside_window", document=doc,
                document_id=str(doc.document_id), **denied,
            ),
            # A remote id asked for that the source did not describe for this patient.
            record(
                world, T0, kinds.ACCESS_DENIED.name, Outcome.NOT_FOUND, reason_code="unknown_document",
                patient=patient, source_orgnr="310400009", source_id=7, remote_document_id=remote_id,
            ),
            # A handle or an attest of another patient's, on a refusal of this patient.
            record(world, T0, kinds.ACCESS_DENIED.name, reason_code="unknown_handle", handle=handle, **denied),
            record(
                world, T0, kinds.ACCESS_DENIED.name, reason_code="clinician_blocked", attest=attest, **denied
            ),
        ],
        kinds.PRIVACY_CHOICES_VIEWED.name: [
            record(world, T0, kinds.PRIVACY_CHOICES_VIEWED.name, patient=patient, handle=handle)
        ],
    }  # fmt: skip


@pytest.mark.parametrize("event_type", sorted(PATIENT_LOG_EVENT_TYPES))
def test_no_other_patients_identifiers_in_the_patients_log_for_each_event_type(world, event_type):
    others = _others(world)
    cases = _carrying_others(world, others)
    # Every type of the patient's log has its case here: a new type needs one.
    assert set(cases) == PATIENT_LOG_EVENT_TYPES
    forbidden = _other_patients_identifiers(world, others)
    for event in cases[event_type]:
        resource = fhir.audit_event(_loaded(event), audience=CITIZEN)
        validate_event(resource)
        text = json.dumps(resource)
        assert [value for value in forbidden if value in text] == [], (event_type, event.reason_code)
        # The clinician by name and HPR number, never by national id or IP address.
        assert "Kari Fastlege" in text and world.fastlege.hpr_number in text
        assert world.fastlege.pid not in text and "127.0.0.1" not in text
        if event.patient_id is not None:  # the patient's own identifier is theirs to see
            assert LIST_PATIENT_ID in text


def test_the_auditor_sees_what_the_patient_does_not(world):
    """The same events for an auditor: the ids asked for, the clinician's national id and IP
    address (so the tests above would notice a leak)."""

    others = _others(world)
    [denied_open, *_] = _carrying_others(world, others)[kinds.ACCESS_DENIED.name]
    text = json.dumps(fhir.audit_event(_loaded(denied_open), audience=AUDITOR))
    assert str(others["doc"].document_id) in text
    assert world.fastlege.pid in text and "127.0.0.1" in text


def test_the_patients_own_refused_document_is_named_to_them(world):
    """Only what is not theirs is left out: their own document on a refused open, their own
    remote document the source described and the policy refused, their own attest."""

    doc = add_document(world)
    attest = make_attest(world)
    local = record(
        world, T0, kinds.ACCESS_DENIED.name, Outcome.DENIED, reason_code="outside_window",
        patient=world.patient, document=doc, attest=attest, document_id=str(doc.document_id),
    )  # fmt: skip
    remote = record(
        world, T0, kinds.ACCESS_DENIED.name, Outcome.DENIED, reason_code="source_rule_open",
        patient=world.patient, source_orgnr="310400009", source_id=7, remote_document_id="DocumentReference/mitt-1",
    )  # fmt: skip
    local_text = json.dumps(fhir.audit_event(_loaded(local), audience=CITIZEN))
    assert f"urn:uuid:{doc.document_id}" in local_text and str(attest.attest_id) in local_text
    assert "DocumentReference/mitt-1" in json.dumps(fhir.audit_event(_loaded(remote), audience=CITIZEN))


def test_refusals_say_refused_and_claim_no_balp_profile(world):
    refusals = [e for _, e in _cases(world) if fhir.is_refusal(e)]
    assert refusals
    for event in refusals:
        resource = fhir.audit_event(_loaded(event), audience=CITIZEN)
        assert resource["outcome"] == "4"
        assert resource["outcomeDesc"].startswith("refused (")
        assert "meta" not in resource  # no PatientRead/Query/Create: BALP defines them for success


def test_every_event_type_is_valid_r4_for_fhir_js_for_both_audiences(world):
    """The second validator: FHIR.js against the R4 StructureDefinitions, 0 errors."""

    events = [e for _, e in _cases(world)]
    events += [e for found in _carrying_others(world, _others(world)).values() for e in found]
    resources = [fhir.audit_event(_loaded(e), audience=a) for e in events for a in (CITIZEN, AUDITOR)]
    for resource in resources:
        validate_event(resource)  # and the first, for the auditor's too
    answers = fhir_js(resources)
    errors = [
        (r["id"], m)
        for r, answer in zip(resources, answers, strict=True)
        for m in answer["messages"]
        if m.get("severity") in ("error", "fatal")
    ]
    assert errors == []
    assert all(answer["valid"] for answer in answers)


def test_fhir_js_finds_errors(world):
    """The validator is not a yes-sayer: an unknown element and a bad code are errors."""

    resource = fhir.audit_event(_loaded(record(world, T0, kinds.LOGIN.name)), audience=CITIZEN)
    [answer] = fhir_js([{**resource, "outcome": "9", "agent": [{**resource["agent"][0], "ip": "1"}]}])
    assert not answer["valid"]
    assert {m["location"] for m in answer["messages"]} >= {"AuditEvent.outcome", "AuditEvent.agent[0].ip"}


# --- 2. the Bundle -------------------------------------------------------------------


def test_search_bundle_validates_with_entries_and_when_empty(world):
    events = [e for _, e in _cases(world)]
    resources = [fhir.audit_event(_loaded(e), audience=CITIZEN) for e in events]
    now = datetime.datetime.now(datetime.UTC)
    bundle = fhir.search_bundle(resources, self_url=AUDIENCE, next_url=f"{AUDIENCE}?cursor=x", now=now)
    parsed = FhirBundle.model_validate(bundle)
    assert parsed.type == "searchset" and parsed.entry is not None and parsed.link is not None
    assert len(parsed.entry) == len(events)
    assert all(e.search is not None and e.search.mode == "match" for e in parsed.entry)
    assert [link.relation for link in parsed.link] == ["self", "next"]
    empty = fhir.search_bundle([], self_url=AUDIENCE, now=now)
    assert FhirBundle.model_validate(empty).entry is None


# --- 3. keyset paging ----------------------------------------------------------------


def _patient_events(world, n=7):
    """n events for the patient, three of them at the very same instant (the id breaks
    the tie), plus noise that must never appear: other patient, no patient, a login."""

    made = []
    for i in range(n):
        when = T0 + datetime.timedelta(minutes=i if i < 4 else 3)  # 3, 4, 5, 6 share minute 3
        made.append(record(world, when, kinds.DOCUMENT_LIST.name, patient=world.patient))
    record(world, T0, kinds.DOCUMENT_LIST.name, patient=world.other_patient)
    record(world, T0, kinds.LOGIN.name)
    expected = sorted(made, key=lambda e: (e.occurred_at, e.pk), reverse=True)
    return expected


def test_keyset_paging_across_three_pages_gives_every_event_once_in_order(world):
    expected = _patient_events(world, 7)
    seen, cursor, pages = [], None, 0
    while True:
        page = patient_log_page(world.patient.pk, cursor=cursor, limit=3)
        pages += 1
        seen += page.events
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
        # An event written between two pages (the log read itself, say) moves nothing.
        record(world, T0 + datetime.timedelta(days=1), kinds.DOCUMENT_OPEN.name, patient=world.patient)
    assert pages == 3
    assert [e.pk for e in seen] == [e.pk for e in expected]
    assert len({e.pk for e in seen}) == 7


def test_the_selector_uses_no_offset_and_one_query_per_page(world):
    _patient_events(world, 7)
    first = patient_log_page(world.patient.pk, limit=3)
    with CaptureQueriesContext(connection) as queries:
        page = patient_log_page(world.patient.pk, cursor=first.next_cursor, limit=3)
        [e.document for e in page.events]
    assert len(queries) == 1
    sql = queries[0]["sql"].upper()
    assert "OFFSET" not in sql
    assert "ORDER BY" in sql


def test_only_accesses_to_the_patient_are_in_their_log(world):
    record(world, T0, kinds.LOGIN.name)
    lookup = record(world, T0, kinds.PATIENT_LOOKUP.name, patient=world.patient)
    record(world, T0, "patient_log_read", patient=world.patient)  # reading the log is not an access
    page = patient_log_page(world.patient.pk, limit=50)
    assert [e.pk for e in page.events] == [lookup.pk]
    assert {"patient_lookup", "document_open", "access_denied"} <= PATIENT_LOG_EVENT_TYPES


@pytest.mark.parametrize("bad", ["", "nonsense", "a:b:c", "W10:1abc:xyz"])
def test_a_bad_or_tampered_cursor_is_refused(world, bad):
    with pytest.raises(InvalidCursor):
        decode_cursor(bad)
    _patient_events(world, 4)
    good = patient_log_page(world.patient.pk, limit=2).next_cursor
    assert good is not None
    with pytest.raises(InvalidCursor):
        patient_log_page(world.patient.pk, cursor=good[:-2] + ("AA" if good[-2:] != "AA" else "BB"), limit=2)


# --- 4. the API for the citizen portal ---------------------------------------------


def test_api_answers_a_bundle_newest_first_and_audits_the_call(world, citizen_portal, citizen_key):
    expected = _patient_events(world, 4)
    response = api(Client(), {"patient": LIST_PATIENT_ID}, token(citizen_key, citizen_portal))
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == FHIR_JSON
    assert response["Cache-Control"] == "no-store"
    bundle = json.loads(response.content)
    FhirBundle.model_validate(bundle)
    assert bundle["type"] == "searchset"
    assert [e["resource"]["id"] for e in bundle["entry"]] == [str(e.event_id) for e in expected]
    [read] = AccessEvent.objects.filter(details__log_read="fhir_api")
    assert read.patient_national_id == LIST_PATIENT_ID
    assert read.outcome == Outcome.GRANTED
    assert read.details["client_id"] == CLIENT_ID
    assert read.actor_user_id is None
    # Not shown to the patient as an access in their own log.
    assert read.pk not in {e.pk for e in patient_log_page(world.patient.pk, limit=50).events}


def test_api_accepts_a_json_body_and_the_identifier_with_its_system(world, citizen_portal, citizen_key):
    _patient_events(world, 2)
    body = {"patient": f"urn:oid:2.16.578.1.12.4.1.4.1|{LIST_PATIENT_ID}"}
    response = api(Client(), body, token(citizen_key, citizen_portal), as_json=True)
    assert response.status_code == 200
    assert len(json.loads(response.content)["entry"]) == 2


def test_api_pages_with_the_cursor_across_three_pages(world, citizen_portal, citizen_key):
    expected = _patient_events(world, 7)
    ids, data, pages = [], {"patient": LIST_PATIENT_ID, "_count": "3"}, 0
    while True:
        response = api(Client(), data, token(citizen_key, citizen_portal))
        assert response.status_code == 200
        bundle = json.loads(response.content)
        FhirBundle.model_validate(bundle)
        pages += 1
        ids += [e["resource"]["id"] for e in bundle.get("entry", [])]
        links = {link["relation"]: link["url"] for link in bundle["link"]}
        assert all(LIST_PATIENT_ID not in url for url in links.values())
        if "next" not in links:
            break
        assert links["next"].startswith(AUDIENCE + "?cursor=")
        [cursor] = parse_qs(urlsplit(links["next"]).query)["cursor"]
        data = {"patient": LIST_PATIENT_ID, "_count": "3", "cursor": cursor}
    assert pages == 3
    assert ids == [str(e.event_id) for e in expected]


def test_api_unknown_patient_gets_an_empty_bundle_like_a_patient_nobody_accessed(
    world, citizen_portal, citizen_key
):
    unknown = api(Client(), {"patient": UNKNOWN_PATIENT_ID}, token(citizen_key, citizen_portal))
    untouched = api(Client(), {"patient": OTHER_PATIENT_ID}, token(citizen_key, citizen_portal))
    for response in (unknown, untouched):
        assert response.status_code == 200
        bundle = json.loads(response.content)
        FhirBundle.model_validate(bundle)
        assert "entry" not in bundle and "total" not in bundle
    strip = lambda b: {k: v for k, v in json.loads(b.content).items() if k not in ("id", "timestamp")}  # noqa: E731
    assert strip(unknown) == strip(untouched)
    miss = AccessEvent.objects.get(details__log_read="fhir_api", outcome=Outcome.NOT_FOUND)
    assert miss.patient_national_id == UNKNOWN_PATIENT_ID


@pytest.mark.parametrize(
    "value",
    [
        "1234",
        "abcdefghijk",
        LIST_PATIENT_ID[:-1] + str((int(LIST_PATIENT_ID[-1]) + 1) % 10),
        "",
        "urn:other|123",
    ],
)
def test_api_bad_national_id_is_400_operation_outcome(world, citizen_portal, citizen_key, value):
    response = api(Client(), {"patient": value}, token(citizen_key, citizen_portal))
    assert response.status_code == 400
    assert response["Content-Type"] == FHIR_JSON
    FhirOperationOutcome.model_validate(json.loads(response.content))


@pytest.mark.parametrize(
    ("data", "query"),
    [
        ({"patient": LIST_PATIENT_ID, "_count": "0"}, ""),
        ({"patient": LIST_PATIENT_ID, "_count": "x"}, ""),
        ({"patient": LIST_PATIENT_ID, "cursor": "garbage"}, ""),
        ({"patient": UNKNOWN_PATIENT_ID, "cursor": "garbage"}, ""),
        ({"patient": LIST_PATIENT_ID, "name": "Ola"}, ""),
        ({}, f"patient={LIST_PATIENT_ID}"),
    ],
)
def test_api_bad_requests_are_400_operation_outcomes(world, citizen_portal, citizen_key, data, query):
    response = api(Client(), data, token(citizen_key, citizen_portal), query=query)
    assert response.status_code == 400
    FhirOperationOutcome.model_validate(json.loads(response.content))
    # The known client's refused request is logged once, without what it asked for.
    [event] = AccessEvent.objects.all()
    assert (event.event_type, event.outcome) == (kinds.PATIENT_LOG_READ.name, Outcome.INVALID)
    assert event.reason_code.startswith("bad_request_") and event.details["client_id"] == CLIENT_ID
    assert event.patient_id is None and not event.patient_national_id


def test_api_refuses_a_body_that_is_not_json(world, citizen_portal, citizen_key):
    response = Client().post(
        API,
        data="{not json",
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token(citizen_key, citizen_portal)}",
    )
    assert response.status_code == 400
    FhirOperationOutcome.model_validate(json.loads(response.content))


def test_api_is_post_only(world, citizen_portal, citizen_key):
    response = Client().get(
        API, {"patient": LIST_PATIENT_ID}, HTTP_AUTHORIZATION=f"Bearer {token(citizen_key, citizen_portal)}"
    )
    assert response.status_code == 405
    assert response["Allow"] == "POST"
    FhirOperationOutcome.model_validate(json.loads(response.content))
    assert not AccessEvent.objects.exists()


def _refusals(citizen_key, other_key, kid):
    now = int(time.time())
    good = claims()
    public_pem = (
        serialization.load_pem_private_key(citizen_key, None)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    hs_header = {"alg": "HS256", "typ": "JWT", "kid": kid}
    hs_signing = f"{_b64(json.dumps(hs_header).encode())}.{_b64(json.dumps(good).encode())}".encode()
    return {
        "no token": None,
        "not a jwt": "abc.def",
        "wrong signature": token(other_key, kid),
        "unknown key id": token(citizen_key, "some-other-kid"),
        "wrong aud": token(citizen_key, kid, aud="http://testserver/api/fhir/Patient/_search"),
        "expired": token(citizen_key, kid, iat=now - 600, exp=now - 120),
        "too long lived": token(citizen_key, kid, exp=now + 3600),
        "wrong iss": token(citizen_key, kid, iss="someone-else"),
        "wrong sub": token(citizen_key, kid, sub="someone-else"),
        "no jti": token(citizen_key, kid, jti=None),
        "no exp": token(citizen_key, kid, exp=None),
        "alg none": unsigned_token({"alg": "none", "typ": "JWT", "kid": kid}, good),
        "HS256 with the public key as secret": hs_signing.decode()
        + "."
        + _b64(hmac.new(public_pem, hs_signing, hashlib.sha256).digest()),
        "not yet valid": token(citizen_key, kid, nbf=now + 600),
    }


REFUSAL_NAMES = [
    "no token",
    "not a jwt",
    "wrong signature",
    "unknown key id",
    "wrong aud",
    "expired",
    "too long lived",
    "wrong iss",
    "wrong sub",
    "no jti",
    "no exp",
    "alg none",
    "HS256 with the public key as secret",
    "not yet valid",
]


@pytest.mark.parametrize("case", REFUSAL_NAMES)
def test_api_refuses_every_bad_token_with_401_operation_outcome(
    world, citizen_portal, citizen_key, other_key, case
):
    bearer = _refusals(citizen_key, other_key, citizen_portal)[case]
    client = Client(raise_request_exception=True)  # a 500 would raise here
    response = api(client, {"patient": LIST_PATIENT_ID}, bearer)
    assert response.status_code == 401, (case, response.content)
    assert response["Content-Type"] == FHIR_JSON
    assert response["WWW-Authenticate"].startswith("Bearer")
    outcome = json.loads(response.content)
    FhirOperationOutcome.model_validate(outcome)
    assert outcome["issue"][0]["code"] == "login"
    assert LIST_PATIENT_ID not in response.content.decode()
    assert not AccessEvent.objects.exists()  # an unauthenticated call cannot fill the log


def test_api_refuses_a_replayed_token(world, citizen_portal, citizen_key):
    bearer = token(citizen_key, citizen_portal)
    assert api(Client(), {"patient": LIST_PATIENT_ID}, bearer).status_code == 200
    assert api(Client(), {"patient": LIST_PATIENT_ID}, bearer).status_code == 401


def test_api_refuses_everything_when_no_client_is_configured(world, settings, citizen_key, citizen_portal):
    settings.CITIZEN_PORTAL_CLIENT_ID = ""
    assert api(Client(), {"patient": LIST_PATIENT_ID}, token(citizen_key, citizen_portal)).status_code == 401


def test_api_logs_a_known_client_the_policy_refuses(world, citizen_key, citizen_portal, monkeypatch):
    from pjd_portal.access import policy

    monkeypatch.setattr(policy, "may_read_patient_access_log_as_client", lambda client_id, allowed: False)
    response = api(Client(), {"patient": LIST_PATIENT_ID}, token(citizen_key, citizen_portal))
    assert response.status_code == 401
    [event] = AccessEvent.objects.all()
    assert (event.outcome, event.reason_code) == (Outcome.DENIED, "client_not_allowed")
    assert event.details["client_id"] == CLIENT_ID and not event.patient_national_id


def test_api_reads_the_jwks_from_a_file(world, settings, tmp_path, citizen_key, citizen_portal):
    path = tmp_path / "citizen-jwks.json"
    path.write_text(settings.CITIZEN_PORTAL_JWKS)
    settings.CITIZEN_PORTAL_JWKS = str(path)
    assert api(Client(), {"patient": LIST_PATIENT_ID}, token(citizen_key, citizen_portal)).status_code == 200
    settings.CITIZEN_PORTAL_JWKS = str(tmp_path / "missing.json")
    assert api(Client(), {"patient": LIST_PATIENT_ID}, token(citizen_key, citizen_portal)).status_code == 401


def test_api_ignores_the_login_session(world, citizen_portal, citizen_key):
    """No CSRF token needed, and a browser session neither authenticates nor is kept alive."""

    client = login(Client(enforce_csrf_checks=True), world.fastlege, world.gp_office)
    session = client.session
    session[SESSION_ACTIVITY_AT_KEY] = int(time.time()) - 100
    session.save()
    assert api(client, {"patient": LIST_PATIENT_ID}, None).status_code == 401
    assert api(client, {"patient": LIST_PATIENT_ID}, token(citizen_key, citizen_portal)).status_code == 200
    assert client.session[SESSION_ACTIVITY_AT_KEY] == session[SESSION_ACTIVITY_AT_KEY]
    [read] = AccessEvent.objects.filter(details__log_read="fhir_api")
    assert read.actor_user_id is None and read.organisation_orgnr == ""


def test_api_hides_documents_kept_from_the_citizen(world, citizen_portal, citizen_key):
    doc = add_document(world, title="Hemmelig tittel", confidentiality=ConfidentialityCode.NORN_DUE)
    record(world, T0, kinds.DOCUMENT_OPEN.name, patient=world.patient, document=doc)
    response = api(Client(), {"patient": LIST_PATIENT_ID}, token(citizen_key, citizen_portal))
    assert response.status_code == 200
    assert "Hemmelig tittel" not in response.content.decode()


def test_api_answers_the_real_clinician_path(world, as_fastlege, citizen_portal, citizen_key):
    doc = add_document(world)
    handle = lookup_and_attest(as_fastlege)
    assert as_fastlege.get(f"/pasient/{handle}/").status_code == 200
    assert as_fastlege.get(f"/pasient/{handle}/dokument/{doc.document_id}/").status_code == 200
    response = api(Client(), {"patient": LIST_PATIENT_ID}, token(citizen_key, citizen_portal))
    bundle = json.loads(response.content)
    assert_valid_r4(bundle)  # fhir.resources (R4B) and FHIR.js (R4): 0 errors
    profiles = [e["resource"]["meta"]["profile"][0].rsplit(".", 1)[1] for e in bundle["entry"]]
    assert profiles == [
        "PatientRead",
        "PatientQuery",
        "PatientCreate",
        "PatientQuery",
    ]  # open, list, basis, lookup


def test_api_the_patients_bundle_names_nothing_of_another_patient_on_the_real_path(
    world, as_fastlege, citizen_portal, citizen_key
):
    """The clinician, in this patient's record, opens their own document and then another
    patient's by its id (refused, 404): the patient's Bundle shows both accesses, with the
    clinician by name and HPR number, and not the other patient's document, nor the
    clinician's national id or IP address. Valid R4 for both validators."""

    mine = add_document(world)
    theirs = add_document(world, world.other_patient, title="Den andres epikrise")
    handle = lookup_and_attest(as_fastlege)
    assert as_fastlege.get(f"/pasient/{handle}/dokument/{mine.document_id}/").status_code == 200
    assert as_fastlege.get(f"/pasient/{handle}/dokument/{theirs.document_id}/").status_code == 404
    denied = AccessEvent.objects.get(event_type=kinds.ACCESS_DENIED.name)
    assert denied.patient == world.patient and denied.details["document_id"] == str(theirs.document_id)
    response = api(Client(), {"patient": LIST_PATIENT_ID}, token(citizen_key, citizen_portal))
    assert response.status_code == 200
    text = response.content.decode()
    bundle = json.loads(text)
    assert_valid_r4(bundle)
    assert str(theirs.document_id) not in text and "Den andres epikrise" not in text
    assert OTHER_PATIENT_ID not in text
    assert str(mine.document_id) in text
    assert world.fastlege.pid not in text and "127.0.0.1" not in text
    assert world.fastlege.hpr_number in text and "Kari Fastlege" in text
    [refused] = [e["resource"] for e in bundle["entry"] if e["resource"]["id"] == str(denied.event_id)]
    assert (refused["outcome"], refused["outcomeDesc"]) == ("4", "refused (denied: document_other_patient)")
    assert "meta" not in refused and refused["subtype"][0]["code"] == "read"


# --- 5. the privacy officer's printable page ---------------------------------------

OTHER_PERSONAS = ["anonymous", "fastlege", "other_clinician", "auditor", "administrator"]


@pytest.mark.parametrize("persona", OTHER_PERSONAS)
def test_everyone_but_the_privacy_officer_gets_the_404_of_a_missing_page(world, persona_client, persona):
    client = persona_client(persona)
    missing = client.get("/forvaltning/finnes-ikke/")
    assert missing.status_code == 404
    for method in ("get", "post", "put"):
        response = getattr(client, method)(PAGE, {"national_id": LIST_PATIENT_ID})
        assert response.status_code == 404, (persona, method)
        assert comparable(response) == comparable(missing)
        assert "Pia" not in response.content.decode() and LIST_PATIENT_ID not in response.content.decode()
    denied = AccessEvent.objects.filter(
        event_type=kinds.ACCESS_DENIED.name, reason_code="not_privacy_officer"
    )
    assert denied.count() == (0 if persona == "anonymous" else 3)
    assert not AccessEvent.objects.filter(details__log_read="privacy_officer").exists()


def test_a_privacy_officer_role_elsewhere_or_revoked_does_not_open_the_page(world, privacy_officer):
    user, org = privacy_officer
    # Acting for another organisation, where the role is not held.
    grant_role(user, world.hospital, Role.AUDITOR)
    assert login(Client(), user, world.hospital).get(PAGE).status_code == 404
    revoke_roles(user, role=Role.PRIVACY_OFFICER)
    assert login(Client(), user, org).get(PAGE).status_code == 404
    assert not policy.may_read_patient_access_log(None)


def test_the_privacy_officer_sees_the_form_and_the_front_page_links_to_it(world, as_privacy_officer):
    response = as_privacy_officer.get(PAGE)
    assert response.status_code == 200
    body = response.content.decode()
    assert 'data-testid="patient-log-form"' in body
    assert 'method="post"' in body
    home = as_privacy_officer.get("/").content.decode()
    assert f'href="{PAGE}"' in home


def test_the_printed_log_shows_who_where_when_what_why_and_the_outcome(world, as_privacy_officer):
    doc = add_document(world, title="Epikrise hjerteavdelingen")
    emergency = make_attest(world, Basis.AKUTT, "BTG", "Pasienten er bevisstløs etter fall.")
    record(
        world,
        T0,
        kinds.EMERGENCY_ACCESS.name,
        patient=world.patient,
        attest=emergency,
        reason_text=emergency.reason,
    )
    record(
        world,
        T0 + datetime.timedelta(minutes=5),
        kinds.DOCUMENT_OPEN.name,
        patient=world.patient,
        document=doc,
        attest=emergency,
    )
    record(
        world,
        T0 + datetime.timedelta(minutes=7),
        kinds.ACCESS_DENIED.name,
        Outcome.DENIED,
        reason_code="clinician_blocked",
        user=world.other_clinician,
        org=world.legevakt,
        patient=world.patient,
    )
    response = as_privacy_officer.post(PAGE, {"national_id": LIST_PATIENT_ID})
    assert response.status_code == 200
    body = response.content.decode()
    rows = re.findall(r'<tr data-testid="patient-log-row">(.*?)</tr>', body, re.S)
    assert len(rows) == 3
    newest, opened, stated = rows
    assert "Lars Legevakt" in newest and "910000022" in newest and "Bergen legevakt" in newest
    assert "Avvist" in newest  # Outcome.DENIED in bokmål
    assert "01.07.2026 12:05:00" in opened  # 10:05 UTC is 12:05 in Oslo in July
    assert "Kari Fastlege" in opened and "910000011" in opened
    assert "Storgata legekontor" in opened and "310000000" in opened
    assert "Epikrise hjerteavdelingen" in opened and "Oslo universitetssykehus HF" in opened
    assert "Akutt" in opened and "Pasienten er bevisstløs etter fall." in stated
    assert "Ingrid Testesen" in body
    # Printable: its own print stylesheet hides the portal's chrome.
    assert "css/forvaltning.css" in body
    # The read is logged, as the privacy officer's.
    [read] = AccessEvent.objects.filter(details__log_read="privacy_officer")
    assert read.actor_name == "Pia Personvern"
    assert read.organisation_orgnr == "310900001"
    assert read.patient_national_id == LIST_PATIENT_ID
    assert read.event_type == "patient_log_read" and read.patient == world.patient


def test_the_print_stylesheet_removes_navigation_and_forms():
    from pathlib import Path

    css = (Path(__file__).resolve().parent.parent / "static" / "css" / "forvaltning.css").read_text()
    media = css.split("@media print", 1)[1]
    for selector in (".portal-header", ".portal-footer", ".portal-noprint", "dialog"):
        assert selector in media.split("display: none")[0]


def test_the_printed_log_withholds_documents_kept_from_the_patient(world, as_privacy_officer):
    doc = add_document(world, title="Hemmelig tittel", confidentiality=ConfidentialityCode.NORN_DUE)
    record(world, T0, kinds.DOCUMENT_OPEN.name, patient=world.patient, document=doc)
    body = as_privacy_officer.post(PAGE, {"national_id": LIST_PATIENT_ID}).content.decode()
    assert "Hemmelig tittel" not in body
    assert "Kari Fastlege" in body


def test_the_printed_log_with_a_tampered_page_link_shows_nothing_and_is_logged(world, as_privacy_officer):
    record(world, T0, kinds.DOCUMENT_OPEN.name, patient=world.patient, document=add_document(world))
    response = as_privacy_officer.post(PAGE, {"national_id": LIST_PATIENT_ID, "cursor": "tampered"})
    assert response.status_code == 400
    assert "Kari Fastlege" not in response.content.decode()
    [event] = AccessEvent.objects.filter(details__log_read="privacy_officer")
    assert (event.outcome, event.reason_code, event.patient_id) == (
        Outcome.INVALID,
        "invalid_cursor",
        world.patient.pk,
    )


def test_the_printed_log_names_a_remote_document_the_patient_may_see(world, as_privacy_officer):
    _remote_open(world, ConfidentialityCode.NORMAL)
    body = as_privacy_officer.post(PAGE, {"national_id": LIST_PATIENT_ID}).content.decode()
    assert "Epikrise fra UNN" in body and "Universitetssykehuset Nord-Norge" in body


def test_the_printed_log_withholds_a_remote_document_kept_from_the_patient(world, as_privacy_officer):
    _remote_open(world, ConfidentialityCode.NORN_DUE)
    body = as_privacy_officer.post(PAGE, {"national_id": LIST_PATIENT_ID}).content.decode()
    assert "Epikrise fra UNN" not in body
    assert "Kari Fastlege" in body


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "Skriv inn pasientens fødselsnummer"),
        ("1234", "11 siffer"),
        (LIST_PATIENT_ID[:-1] + str((int(LIST_PATIENT_ID[-1]) + 1) % 10), "kontrollsiffer"),
    ],
)
def test_a_bad_national_id_gets_a_clear_norwegian_message(world, as_privacy_officer, value, message):
    response = as_privacy_officer.post(PAGE, {"national_id": value})
    assert response.status_code == 400
    assert message in response.content.decode()
    assert 'data-testid="patient-log"' not in response.content.decode()


def test_an_unknown_patient_is_said_plainly_and_logged(world, as_privacy_officer):
    response = as_privacy_officer.post(PAGE, {"national_id": UNKNOWN_PATIENT_ID})
    assert response.status_code == 200
    assert 'data-testid="patient-log-not-found"' in response.content.decode()
    [read] = AccessEvent.objects.filter(details__log_read="privacy_officer")
    assert (read.outcome, read.patient_national_id) == (Outcome.NOT_FOUND, UNKNOWN_PATIENT_ID)


def test_the_next_page_is_a_post_button_and_pages_never_repeat(world, as_privacy_officer, settings):
    settings.PATIENT_LOG_PAGE_SIZE = 3
    expected = _patient_events(world, 7)
    seen, data, pages = [], {"national_id": LIST_PATIENT_ID}, 0
    while True:
        response = as_privacy_officer.post(PAGE, data)
        assert response.status_code == 200
        body = response.content.decode()
        pages += 1
        seen += re.findall(r'<tr data-testid="patient-log-row">', body)
        match = re.search(
            r'<form method="post" action="([^"]+)" class="portal-noprint" data-testid="patient-log-next">(.*?)</form>',
            body,
            re.S,
        )
        if match is None:
            break
        assert match.group(1) == PAGE
        cursor = matched(r'name="cursor" value="([^"]+)"', match.group(2))
        data = {"national_id": LIST_PATIENT_ID, "cursor": cursor}
    assert pages == 3
    assert len(seen) == len(expected) == 7


def test_no_national_id_in_any_url_of_the_page(world, as_privacy_officer, settings):
    settings.PATIENT_LOG_PAGE_SIZE = 2
    _patient_events(world, 3)
    for data in (
        {"national_id": LIST_PATIENT_ID},
        {"national_id": "1234"},
        {"national_id": UNKNOWN_PATIENT_ID},
    ):
        response = as_privacy_officer.post(PAGE, data)
        assert "Location" not in response
        body = response.content.decode()
        urls = re.findall(r'(?:action|href|src|hx-get|hx-post)="([^"]*)"', body)
        assert urls and all(data["national_id"] not in url for url in urls)
        assert all(LIST_PATIENT_ID not in url for url in urls)
        for form in re.findall(r"<form[^>]*>", body):
            assert 'method="post"' in form, form


def test_the_page_costs_the_same_queries_for_5_and_50_events(world, as_privacy_officer):
    for patient, n in ((world.patient, 5), (world.other_patient, 50)):
        for i in range(n):
            doc = add_document(world, patient, title=f"Dokument {i}")
            when = T0 + datetime.timedelta(seconds=i)
            record(world, when, kinds.DOCUMENT_OPEN.name, patient=patient, document=doc)
    as_privacy_officer.post(PAGE, {"national_id": UNKNOWN_PATIENT_ID})  # warm up the session
    counts = {}
    for national_id, n in ((LIST_PATIENT_ID, 5), (OTHER_PATIENT_ID, 50)):
        with CaptureQueriesContext(connection) as queries:
            response = as_privacy_officer.post(PAGE, {"national_id": national_id})
        assert response.status_code == 200
        assert response.content.decode().count('data-testid="patient-log-row"') == n
        counts[n] = len(queries)
    assert counts[5] == counts[50], counts
