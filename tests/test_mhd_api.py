"""The MHD API (ITI-67, ITI-68) for EPJ systems: search and retrieve with a DPoP-bound
token, the portal's own policy and audit, and every fault an OperationOutcome."""

from __future__ import annotations

import datetime
import json
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.test import Client
from django.utils import timezone

from pjd_portal.accounts.models import Organisation, User
from pjd_portal.auditlog.services import AuditWriteFailed
from pjd_portal.documents.models import ConfidentialityCode
from tests.builders import (
    FAKE_PDF,
    LIST_PATIENT_ID,
    OTHER_PATIENT_ID,
    UNKNOWN_PATIENT_ID,
    World,
    add_document,
    events,
)
from tests.mhd_api_tokens import DpopKey, access_token, attest_for, trust_provider

BASE = "http://testserver/api/fhir"
pytestmark = pytest.mark.django_db


class Epj:
    """An EPJ calling the API through Django's test client, with its DPoP key and nonce."""

    def __init__(self, client: Client, user: User, organisation: Organisation) -> None:
        self.client = client
        self.user = user
        self.organisation = organisation
        self.key = DpopKey()
        self.nonce: str | None = None

    def token(self, patients: list[str] | None = None, **attest: Any) -> str:
        return access_token(
            attest_for(self.user, self.organisation, patients or [LIST_PATIENT_ID], **attest),
            jkt=self.key.thumbprint,
        )

    def call(
        self,
        method: str,
        path: str,
        data: Any = None,
        *,
        token: str | None = None,
        proof: str | None = None,
        accept: str = "application/fhir+json",
        headers: dict[str, str] | None = None,
        **proof_overrides: Any,
    ) -> Any:
        token = token if token is not None else self.token()
        url = path if path.startswith("http") else f"{BASE}/{path}"
        if self.nonce is None:
            self.nonce = self.client.get(f"{BASE}/metadata")["DPoP-Nonce"]
        if proof is None:
            proof_overrides.setdefault("nonce", self.nonce)
            proof = self.key.proof(
                proof_overrides.pop("htm", method),
                proof_overrides.pop("htu", url),
                access_token=token,
                **proof_overrides,
            )
        extra: dict[str, Any] = {
            "HTTP_AUTHORIZATION": f"DPoP {token}",
            "HTTP_DPOP": proof,
            "HTTP_ACCEPT": accept,
        }
        for name, value in (headers or {}).items():
            extra[f"HTTP_{name.upper().replace('-', '_')}"] = value
        if method == "POST":
            response = self.client.post(url, data or {}, **extra)
        else:
            response = self.client.get(url, data or {}, **extra)
        if "DPoP-Nonce" in response:
            self.nonce = response["DPoP-Nonce"]
        return response

    def search(self, data: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        return self.call("POST", "DocumentReference/_search", data or {}, **kwargs)


@pytest.fixture
def epj(world: World, monkeypatch: pytest.MonkeyPatch, settings: Any) -> Epj:
    trust_provider(monkeypatch, settings)
    return Epj(Client(), world.fastlege, world.gp_office)


def _json(response: Any) -> dict[str, Any]:
    assert response["Content-Type"].startswith("application/fhir+json"), response.content[:300]
    return json.loads(response.content)  # type: ignore[no-any-return]


def _matches(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle.get("entry", []) if e["search"]["mode"] == "match"]


def _outcome_issues(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        i for e in bundle.get("entry", []) if e["search"]["mode"] == "outcome" for i in e["resource"]["issue"]
    ]


def _assert_outcome(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.content[:500]
    body = _json(response)
    assert body["resourceType"] == "OperationOutcome"
    if code:
        assert body["issue"][0]["code"] == code
    assert response["DPoP-Nonce"]
    return body


# --- ITI-67 -----------------------------------------------------------------------------


def test_a_search_lists_the_patients_documents_as_mhd_document_references(epj: Epj, world: World) -> None:
    doc = add_document(world, title="Epikrise hjerte", days_ago=3)
    add_document(world, world.other_patient, title="Annen pasient")
    response = epj.search(
        {
            "patient.identifier": f"urn:oid:2.16.578.1.12.4.1.4.1|{LIST_PATIENT_ID}",
            "status": "current",
            "_include": "DocumentReference:subject",
        }
    )
    assert response.status_code == 200, response.content[:1000]
    assert response["DPoP-Nonce"] and response["Cache-Control"] == "no-store"
    bundle = _json(response)
    assert bundle["type"] == "searchset" and bundle["total"] == 1
    [resource] = _matches(bundle)
    assert resource["id"] == str(doc.document_id) and resource["status"] == "current"
    assert resource["subject"]["identifier"]["value"] == LIST_PATIENT_ID
    assert resource["content"][0]["attachment"]["url"] == f"{BASE}/Binary/{doc.document_id}"
    assert resource["content"][0]["attachment"]["contentType"] == "application/pdf"
    assert resource["securityLabel"][0]["coding"][0]["code"] == "N"
    assert resource["custodian"]["identifier"]["value"] == world.hospital.orgnr
    [included] = [e["resource"] for e in bundle["entry"] if e["search"]["mode"] == "include"]
    assert resource["subject"]["reference"] == f"Patient/{included['id']}"
    assert LIST_PATIENT_ID not in json.dumps(bundle["link"])
    # The list event, as the portal writes it, through the API's channel and client.
    [listed] = events("document_list")
    assert listed.details["channel"] == "api" and listed.details["client_id"] == "pjd-test-epj"
    assert listed.details["document_ids"] == [str(doc.document_id)]
    assert listed.patient_national_id == LIST_PATIENT_ID


def test_a_get_search_names_no_patient_and_unknown_parameters_are_refused(epj: Epj, world: World) -> None:
    add_document(world)
    for query in ({"patient.identifier": LIST_PATIENT_ID}, {"patient": "x"}, {"subject": "Patient/1"}):
        _assert_outcome(epj.call("GET", "DocumentReference", query), 400, "not-supported")
    _assert_outcome(epj.search({"unknown": "1"}), 400, "not-supported")
    _assert_outcome(epj.search({"_count": "500"}), 400, "value")
    _assert_outcome(epj.search({"date": "ne2026-01-01"}), 400, "not-supported")
    _assert_outcome(epj.search({"_cursor": "forged"}), 400, "value")
    refused = events("api_call_refused")
    assert refused and all(LIST_PATIENT_ID not in json.dumps(e.details) for e in refused)
    # The GET search of the attest's patient, without naming it.
    bundle = _json(epj.call("GET", "DocumentReference", {"status": "current"}))
    assert bundle["total"] == 1


def test_another_patient_than_the_attests_is_answered_as_an_unknown_one(epj: Epj, world: World) -> None:
    add_document(world, world.other_patient)
    other = epj.search({"patient.identifier": OTHER_PATIENT_ID})
    unknown = epj.search({}, token=epj.token([UNKNOWN_PATIENT_ID]))
    assert _assert_outcome(other, 404) == _assert_outcome(unknown, 404)
    assert events("api_call_refused")[-1].reason_code == "patient_not_attested"


def test_paging_follows_opaque_next_links_without_the_national_id(epj: Epj, world: World) -> None:
    for i in range(5):
        add_document(world, title=f"Dok {i}", days_ago=i + 1)
    first = _json(epj.search({"_count": "2", "patient.identifier": LIST_PATIENT_ID}))
    assert first["total"] == 5 and [d["description"] for d in _matches(first)] == ["Dok 0", "Dok 1"]
    seen = [d["description"] for d in _matches(first)]
    page = first
    while True:
        links = {link["relation"]: link["url"] for link in page["link"]}
        assert LIST_PATIENT_ID not in json.dumps(page["link"])
        if "next" not in links:
            break
        assert set(parse_qs(urlsplit(links["next"]).query)) == {"_cursor"}
        page = _json(epj.call("GET", links["next"]))
        seen += [d["description"] for d in _matches(page)]
    assert seen == [f"Dok {i}" for i in range(5)]
    # Each page is one list event with the API's channel.
    assert len(events("document_list")) == 3
    # A cursor is bound to its patient: another attest's patient cannot use it.
    next_url = {link["relation"]: link["url"] for link in first["link"]}["next"]
    _assert_outcome(epj.call("GET", next_url, token=epj.token([OTHER_PATIENT_ID])), 400)


def test_filters_category_date_sort_and_id(epj: Epj, world: World) -> None:
    a = add_document(world, category="A00-1", title="A", days_ago=5)
    c = add_document(world, category="C00-1", title="C", days_ago=40)
    add_document(world, category="I00-1", title="I", days_ago=2)
    system = "urn:oid:2.16.578.1.12.4.1.1.9602"

    def titles(data: dict[str, Any]) -> list[str]:
        response = epj.search(data)
        assert response.status_code == 200, response.content[:500]
        return [d["description"] for d in _matches(_json(response))]

    assert titles({"category": f"{system}|A00-1,C00-1"}) == ["A", "C"]
    assert titles({"category": "C00-1"}) == ["C"]
    since = (timezone.localdate() - datetime.timedelta(days=10)).isoformat()
    assert titles({"date": f"ge{since}"}) == ["I", "A"]
    assert titles({"date": [f"lt{since}"]}) == ["C"]
    assert titles({"_sort": "date"}) == ["C", "A", "I"]
    assert titles({"_id": str(a.document_id)}) == ["A"]
    assert titles({"status": "superseded"}) == []
    assert c  # listed above


def test_what_is_not_shown_is_counted_by_reason_class_in_an_outcome_entry(epj: Epj, world: World) -> None:
    add_document(world, title="Vises")
    add_document(world, title="Sperret", confidentiality=ConfidentialityCode.NORS)
    add_document(world, title="Gammel", category="C00-1", days_ago=4000)
    bundle = _json(epj.search())
    assert [d["description"] for d in _matches(bundle)] == ["Vises"]
    codes = {i["details"]["coding"][0]["code"]: i for i in _outcome_issues(bundle)}
    assert "blocked" in codes and any(c.startswith("outside_window") for c in codes)
    assert codes["blocked"]["extension"][0]["valueInteger"] == 1
    assert "Sperret" not in json.dumps(bundle)
    [listed] = events("document_list")
    assert listed.details["not_shown"]["blocked"] == 1


@pytest.mark.parametrize(
    ("kind", "reason", "words"),
    [
        ("reservation", "patient_reserved", "reserv"),
        ("blocked_clinician", "", ""),
        ("restriction", "", "forh"),
    ],
)
def test_reservation_block_and_restriction_are_refused_with_the_policys_message(
    epj: Epj, world: World, kind: str, reason: str, words: str
) -> None:
    from pjd_portal.patients.models import PrivacyChoice

    add_document(world, title="Skal ikke vises")
    PrivacyChoice.objects.create(
        patient=world.patient,
        kind=kind,
        blocked_hpr_number=world.fastlege.hpr_number if kind == "blocked_clinician" else "",
    )
    body = _assert_outcome(epj.search(), 403, "forbidden")
    assert "Skal ikke vises" not in json.dumps(body)
    if words:
        assert words in body["issue"][0]["diagnostics"].lower()
    assert events("access_denied"), "the refusal is in the log"
    if reason:
        assert reason in [e.reason_code for e in events("access_denied")]
    assert not events("document_list")


# --- ITI-68 -----------------------------------------------------------------------------


def test_a_document_is_streamed_after_its_open_event_is_committed(epj: Epj, world: World) -> None:
    doc = add_document(world)
    response = epj.call(
        "GET", f"Binary/{doc.document_id}", accept="application/pdf", headers={"nhn-event-id": "evt-42"}
    )
    assert response.status_code == 200 and response.streaming
    assert response["Content-Type"] == "application/pdf"
    [opened] = events("document_open")
    assert opened.outcome == "granted" and opened.details["channel"] == "api"
    assert opened.details["nhn_event_id"] == "evt-42"
    assert b"".join(response.streaming_content) == FAKE_PDF
    # As a Binary resource for a FHIR client.
    binary = _json(epj.call("GET", f"Binary/{doc.document_id}"))
    assert binary["resourceType"] == "Binary" and binary["contentType"] == "application/pdf"
    assert len(events("document_open")) == 2


def test_not_allowed_and_not_found_are_one_404_both_logged(epj: Epj, world: World) -> None:
    others = add_document(world, world.other_patient)
    blocked = add_document(world, confidentiality=ConfidentialityCode.NORS)
    answers = [
        epj.call("GET", f"Binary/{others.document_id}"),
        epj.call("GET", f"Binary/{blocked.document_id}"),
        epj.call("GET", "Binary/00000000-0000-4000-8000-000000000000"),
        epj.call("GET", "Binary/not-a-document"),
    ]
    bodies = [_assert_outcome(a, 404, "not-found") for a in answers]
    assert all(b == bodies[0] for b in bodies)
    denied = events("access_denied")
    assert len(denied) == 4 and {e.outcome for e in denied} == {"denied", "not_found"}
    assert not events("document_open")


def test_an_open_whose_event_cannot_be_written_sends_no_byte(
    epj: Epj, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pjd_portal.clinic import opening

    doc = add_document(world)
    epj.call("GET", "metadata")

    def fail(*args: Any, **kwargs: Any) -> None:
        raise AuditWriteFailed("down")

    monkeypatch.setattr(opening, "record_event_committed", fail)
    response = epj.call("GET", f"Binary/{doc.document_id}", accept="application/pdf")
    _assert_outcome(response, 503, "transient")
    assert FAKE_PDF not in response.content
    assert not events("document_open")


# --- the token and the proof ------------------------------------------------------------


def test_token_and_proof_faults_are_each_a_401_operation_outcome(epj: Epj, world: World) -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa

    add_document(world)
    attest = attest_for(world.fastlege, world.gp_office, [LIST_PATIENT_ID])
    jkt = epj.key.thumbprint
    forged = access_token(attest, jkt=jkt, key=rsa.generate_private_key(public_exponent=65537, key_size=2048))
    expired = access_token(attest, jkt=jkt, issued=time.time() - 3600, lifetime=60)
    audience = access_token(attest, jkt=jkt, audience="nhn:another-api")
    other_key = access_token(attest, jkt=DpopKey().thumbprint)
    good = access_token(attest, jkt=jkt)
    url = f"{BASE}/DocumentReference/_search"
    epj.call("GET", "metadata")
    cases = {
        "forged": epj.search(token=forged),
        "expired": epj.search(token=expired),
        "audience": epj.search(token=audience),
        "key_not_bound": epj.search(token=other_key),
        "no_proof": epj.search(token=good, proof=""),
        "bad_proof": epj.search(token=good, proof="not.a.jwt"),
        "htm": epj.search(token=good, htm="GET"),
        "htu": epj.search(token=good, htu=f"{BASE}/Binary/x"),
        "ath": epj.search(token=good, ath="x" * 43),
        "stale_iat": epj.search(token=good, iat=time.time() - 3600),
        "stale_nonce": epj.search(token=good, nonce="bm9uY2U:1aaaaa:bad"),
        "no_nonce": epj.search(token=good, nonce=None),
    }
    replayed = epj.key.proof("POST", url, access_token=good, nonce=epj.nonce, jti="same-jti")
    assert epj.search(token=good, proof=replayed).status_code == 200
    cases["replayed"] = epj.search(token=good, proof=replayed)
    for name, response in cases.items():
        assert response.status_code == 401, (name, response.content[:300])
        _assert_outcome(response, 401, "login")
        assert response["WWW-Authenticate"].startswith("DPoP"), name
    assert 'error="use_dpop_nonce"' in cases["no_nonce"]["WWW-Authenticate"]
    # Refusals of a client whose token checked out are logged (not the nonce round).
    reasons = [e.reason_code for e in events("api_call_refused")]
    assert "dpop_htm" in reasons and "dpop_ath" in reasons and "dpop_nonce" not in reasons
    assert "dpop_replayed" in reasons


def test_an_attest_the_portal_cannot_read_is_a_403_and_logged(epj: Epj, world: World) -> None:
    token = access_token(None, jkt=epj.key.thumbprint)
    _assert_outcome(epj.search(token=token), 403, "forbidden")
    assert events("api_call_refused")[-1].reason_code == "attest_missing"


def test_metadata_and_the_openapi_description_need_no_token(client: Client) -> None:
    metadata = _json(client.get("/api/fhir/metadata"))
    assert metadata["resourceType"] == "CapabilityStatement" and metadata["kind"] == "instance"
    assert (
        "https://profiles.ihe.net/ITI/MHD/CapabilityStatement/IHE.MHD.DocumentResponder"
        in metadata["instantiates"]
    )
    types = {r["type"]: r for r in metadata["rest"][0]["resource"]}
    assert {"DocumentReference", "Binary", "AuditEvent"} <= set(types)
    description = client.get("/api/openapi.json").json()
    assert description["openapi"].startswith("3.1") and "/api/fhir/Binary/{id}" in description["paths"]
    assert description["components"]["securitySchemes"]["dpop"]["scheme"] == "DPoP"
    # Anything else under the base is an OperationOutcome, not the HTML 404 page.
    _assert_outcome(client.get("/api/fhir/Patient/1"), 404)
    _assert_outcome(client.put("/api/fhir/DocumentReference/_search"), 405)
