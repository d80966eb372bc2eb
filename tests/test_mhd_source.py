"""The MHD document source against a real FHIR server (Medplum's fhir-router, in-memory,
fhirserver/server.mjs), the merge of several sources, and sources that fail.

The servers are started once per session on free ports with the Node 22 that
fhirserver/node_modules brings (`make setup`). Run with `-s` to see the measured
time-to-answer with one source down.
"""

from __future__ import annotations

import base64
import datetime
import http.server
import json
import socket
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import jwt
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from pjd_portal.documents.sources import base, merge
from pjd_portal.documents.sources.base import AccessContext, RemoteDocument, SourceError
from pjd_portal.documents.sources.breaker import CLOSED, HALF_OPEN, OPEN, CircuitBreaker
from pjd_portal.documents.sources.local import LocalSourceClient
from pjd_portal.documents.sources.mhd import FOREIGN_URL, MhdSourceClient
from pjd_portal.documents.sources.tokens import ClientCredentialsTokenProvider, StaticTokenProvider
from tests.builders import CATEGORY_SYSTEM, document_reference, fake_source_answers
from tests.fhirserver import FhirServer
from tests.fhirserver import start as start_fhir_server

NATIONAL_ID_SYSTEM = "urn:oid:2.16.578.1.12.4.1.4.1"
PATIENT = "13857099812"  # synthetic (month + 80)
OTHER_PATIENT = "02886512345"
ACCESS = AccessContext(basis="SAMTYKKE", event_id=str(uuid.uuid4()), source_system="pjd-portal-test")
TOKEN = "test-access-token"

# Short timeouts so the fault tests are quick; the budget is what the merge may spend.
CONNECT_TIMEOUT = 0.5
READ_TIMEOUT = 0.7
BUDGET = 2.5
MARGIN = 0.5


def _post(base_url: str, resource: dict[str, Any]) -> str:
    answer = requests.post(
        f"{base_url}/{resource['resourceType']}",
        data=json.dumps(resource),
        headers={"content-type": "application/fhir+json"},
        timeout=10,
    )
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


def _binary(base_url: str, content_type: str, data: bytes) -> str:
    answer = requests.post(
        f"{base_url}/Binary", data=data, headers={"content-type": content_type}, timeout=10
    )
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


@dataclass(frozen=True)
class Seeded:
    ids: dict[str, str]  # our label -> DocumentReference id
    pdf: bytes


BIG_PDF = b"%PDF-1.4\n" + bytes(range(256)) * 1200 + b"\n%%EOF\n"  # ~300 KB: several chunks


def _seed(base_url: str) -> Seeded:
    patients = {
        pid: _post(
            base_url,
            {"resourceType": "Patient", "identifier": [{"system": NATIONAL_ID_SYSTEM, "value": pid}]},
        )
        for pid in (PATIENT, OTHER_PATIENT)
    }
    specs = [
        # label, patient, category, type, service date, confidentiality, content type, status, bytes
        ("epikrise", PATIENT, "A00-1", ("A03-2", "Epikrise"), "2025-03-10", "N", "application/pdf", "current", BIG_PDF),
        ("provesvar", PATIENT, "C00-1", ("C03-1", "Prøvesvar"), "2025-06-01", "N", "application/xml", "current", b"<svar/>"),
        ("henvisning", PATIENT, "I00-1", ("I03-1", "Henvisning"), "2024-11-20", "R", "application/pdf", "current", b"%PDF-1.4 h"),
        ("blocked", PATIENT, "A00-1", ("A03-2", "Epikrise"), "2025-01-05", "NORS", "application/pdf", "current", b"%PDF-1.4 b"),
        ("old_version", PATIENT, "A00-1", ("A03-2", "Epikrise"), "2025-02-01", "N", "application/pdf", "superseded", b"%PDF-1.4 o"),
        ("other_patient", OTHER_PATIENT, "A00-1", ("A03-2", "Epikrise"), "2025-04-01", "N", "application/pdf", "current", b"%PDF-1.4 x"),
        # Announced as a PDF, served as HTML: retrieval must refuse it.
        ("liar", PATIENT, "E00-1", ("E03-1", "Røntgen"), "2023-05-05", "N", "application/pdf", "current", b"<html>"),
    ]  # fmt: skip
    ids = {}
    for label, pid, category, (type_code, type_name), day, code, ctype, status, data in specs:
        served_type = "text/html" if label == "liar" else ctype
        binary_id = _binary(base_url, served_type, data)
        created = datetime.date.fromisoformat(day) + datetime.timedelta(days=1)
        system = "urn:oid:2.16.578.1.12.4.1.1.9603"
        if code in ("N", "R", "V"):
            system = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
        ids[label] = _post(
            base_url,
            {
                "resourceType": "DocumentReference",
                "status": status,
                "subject": {"reference": f"Patient/{patients[pid]}"},
                "date": f"{created.isoformat()}T09:00:00+01:00",
                "description": f"{type_name} ({label})",
                "type": {"coding": [{"code": type_code, "display": type_name}]},
                "category": [{"coding": [{"system": CATEGORY_SYSTEM, "code": category}]}],
                "securityLabel": [{"coding": [{"system": system, "code": code}]}],
                "author": [{"display": "Overlege Anne Berg"}],
                "custodian": {
                    "display": "Helse Bergen HF",
                    "identifier": {"system": "urn:oid:2.16.578.1.12.4.1.4.101", "value": "983974724"},
                },
                "context": {"period": {"start": day}},
                "content": [
                    {"attachment": {"contentType": ctype, "url": f"Binary/{binary_id}", "size": len(data)}}
                ],
            },
        )
    return Seeded(ids, BIG_PDF)


@pytest.fixture(scope="session")
def fhir_servers(tmp_path_factory: Any) -> Iterator[tuple[FhirServer, FhirServer, Seeded]]:
    """Two servers: a healthy one, and one the fault tests break (seeded alike)."""

    log_dir = tmp_path_factory.mktemp("fhirserver")
    healthy = start_fhir_server(log_dir, "healthy")
    try:
        faulty = start_fhir_server(log_dir, "faulty")
    except BaseException:
        healthy.process.kill()
        raise
    try:
        seeded = _seed(healthy.base_url)
        _seed(faulty.base_url)
        yield healthy, faulty, seeded
    finally:
        for server in (healthy, faulty):
            server.stop()


@pytest.fixture
def healthy(fhir_servers: tuple[FhirServer, FhirServer, Seeded]) -> Iterator[FhirServer]:
    server = fhir_servers[0]
    yield server
    server.reset()


@pytest.fixture
def seeded(fhir_servers: tuple[FhirServer, FhirServer, Seeded]) -> Seeded:
    return fhir_servers[2]


@pytest.fixture
def faulty(fhir_servers: tuple[FhirServer, FhirServer, Seeded]) -> Iterator[FhirServer]:
    server = fhir_servers[1]
    yield server
    server.reset()


def client(
    base_url: str,
    *,
    source_id: int = 1,
    name: str = "Helse Bergen",
    breaker: CircuitBreaker | None = None,
    read_timeout: float = READ_TIMEOUT,
) -> MhdSourceClient:
    return MhdSourceClient(
        source_id=source_id,
        name=name,
        base_url=base_url,
        token_provider=StaticTokenProvider(TOKEN),
        connect_timeout=CONNECT_TIMEOUT,
        read_timeout=read_timeout,
        retries=1,
        count=50,
        breaker=breaker,
    )


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/fhir/R4"


# --- ITI-67 search ---------------------------------------------------------------------


def test_search_by_patient_identifier_parses_document_references(healthy: FhirServer, seeded: Seeded) -> None:
    documents = client(healthy.base_url).search(PATIENT, access=ACCESS).documents

    ids = seeded.ids
    # Current documents of this patient only, newest first; the NORS one comes back
    # (the source lists it; the policy hides it), the superseded one does not.
    assert [d.document_id for d in documents] == [
        ids["provesvar"],
        ids["epikrise"],
        ids["blocked"],
        ids["henvisning"],
        ids["liar"],
    ]
    epikrise = documents[1]
    assert epikrise == RemoteDocument(
        source_id=1,
        source_name="Helse Bergen",
        document_id=ids["epikrise"],
        category="A00-1",
        type_code="A03-2",
        type_name="Epikrise",
        title="Epikrise (epikrise)",
        service_date=datetime.date(2025, 3, 10),
        author="Overlege Anne Berg",
        institution_name="Helse Bergen HF",
        institution_orgnr="983974724",
        confidentiality_code="N",
        content_type="application/pdf",
        size=len(seeded.pdf),
        url=f"{healthy.base_url}/Binary/{epikrise.url.rsplit('/', 1)[1]}",
    )
    assert documents[2].confidentiality_code == "NORS"
    assert documents[3].confidentiality_code == "R"
    facts = epikrise.facts(patient_id=7)
    assert (facts.category, facts.service_date, facts.source_id, facts.patient_id) == (
        "A00-1",
        datetime.date(2025, 3, 10),
        1,
        7,
    )


def test_search_filters_by_category_and_date(healthy: FhirServer, seeded: Seeded) -> None:
    source = client(healthy.base_url)
    by_category = source.search(PATIENT, access=ACCESS, categories=["A00-1", "C00-1"]).documents
    assert {d.document_id for d in by_category} == {
        seeded.ids["epikrise"],
        seeded.ids["blocked"],
        seeded.ids["provesvar"],
    }
    recent = source.search(PATIENT, access=ACCESS, date_from=datetime.date(2025, 2, 1)).documents
    assert {d.document_id for d in recent} == {seeded.ids["epikrise"], seeded.ids["provesvar"]}
    assert source.search("01010199999", access=ACCESS).documents == []


def test_requests_carry_access_headers_and_bearer_token(healthy: FhirServer, seeded: Seeded) -> None:
    event_id = str(uuid.uuid4())
    access = AccessContext(basis="AKUTT", event_id=event_id, source_system="pjd-portal-test")
    source = client(healthy.base_url)
    document = source.search(PATIENT, access=access, categories=["C00-1"]).documents[0]
    _, _, chunks = source.retrieve(document, access=access)
    b"".join(chunks)

    seen = [r for r in healthy.requests_seen() if r["headers"].get("nhn-event-id") == event_id]
    assert [(r["method"], r["path"].rsplit("/", 2)[-2]) for r in seen] == [
        ("POST", "DocumentReference"),
        ("GET", "Binary"),
    ]
    for request in seen:
        headers = request["headers"]
        assert headers["nhn-access-basis"] == "AKUTT"
        assert headers["nhn-source-system"] == "pjd-portal-test"
        assert headers["authorization"] == f"Bearer {TOKEN}"
    search = seen[0]
    assert search["path"].endswith("/DocumentReference/_search")
    assert search["headers"]["content-type"] == "application/x-www-form-urlencoded"


# --- ITI-68 retrieval ------------------------------------------------------------------


def test_retrieve_streams_the_document(healthy: FhirServer, seeded: Seeded) -> None:
    source = client(healthy.base_url)
    document = next(
        d for d in source.search(PATIENT, access=ACCESS).documents if d.document_id == seeded.ids["epikrise"]
    )
    content_type, size, chunks = source.retrieve(document, access=ACCESS)
    received = list(chunks)
    assert content_type == "application/pdf"
    assert size == len(seeded.pdf)
    assert len(received) > 1  # streamed in chunks, not read whole
    assert b"".join(received) == seeded.pdf


def test_retrieve_refuses_another_content_type_than_announced(healthy: FhirServer, seeded: Seeded) -> None:
    source = client(healthy.base_url)
    liar = next(
        d for d in source.search(PATIENT, access=ACCESS).documents if d.document_id == seeded.ids["liar"]
    )
    with pytest.raises(SourceError) as raised:
        source.retrieve(liar, access=ACCESS)
    assert raised.value.reason_code == base.WRONG_CONTENT_TYPE


def test_retrieve_only_from_the_sources_own_base_url(healthy: FhirServer, seeded: Seeded) -> None:
    source = client(healthy.base_url)
    document = source.search(PATIENT, access=ACCESS).documents[0]
    for url in ("http://attacker.example/fhir/R4/Binary/1", closed_port_url() + "/Binary/1"):
        with pytest.raises(SourceError) as raised:
            source.retrieve(replace(document, url=url), access=ACCESS)
        assert raised.value.reason_code == FOREIGN_URL


# --- Failing sources -------------------------------------------------------------------

FAULTS = [
    ("slow", base.TIMEOUT),
    ("malformed", base.MALFORMED_RESPONSE),
    ("garbage", base.MALFORMED_RESPONSE),
    ("content-type", base.WRONG_CONTENT_TYPE),
    ("error", base.HTTP_ERROR),
]


@pytest.mark.parametrize(("mode", "reason"), FAULTS)
def test_a_failing_source_is_a_failure_entry_and_the_others_still_show(
    healthy: FhirServer, faulty: FhirServer, mode: str, reason: str
) -> None:
    faulty.set_fault(mode)
    good = client(healthy.base_url, source_id=1, name="Helse Bergen")
    bad = client(faulty.base_url, source_id=2, name="Helse Vest")

    started = time.monotonic()
    result = merge.search_sources([good, bad], PATIENT, access=ACCESS, budget_seconds=BUDGET)
    elapsed = time.monotonic() - started

    assert result.failures == [merge.SourceFailure(2, "Helse Vest", reason)]
    assert len(result.documents) == 5
    assert {d.source_id for d in result.documents} == {1}
    assert elapsed < BUDGET + MARGIN


def test_a_source_that_refuses_connections(healthy: FhirServer) -> None:
    good = client(healthy.base_url, source_id=1)
    down = client(closed_port_url(), source_id=2, name="Helse Vest")
    result = merge.search_sources([good, down], PATIENT, access=ACCESS, budget_seconds=BUDGET)
    assert result.failures == [merge.SourceFailure(2, "Helse Vest", base.UNREACHABLE)]
    assert len(result.documents) == 5
    assert result.elapsed_seconds < BUDGET + MARGIN


def test_the_budget_bounds_a_source_slower_than_its_own_timeouts(
    healthy: FhirServer, faulty: FhirServer
) -> None:
    faulty.set_fault("slow")
    good = client(healthy.base_url, source_id=1)
    slow = client(faulty.base_url, source_id=2, name="Helse Vest", read_timeout=30)
    budget = 1.0
    result = merge.search_sources([good, slow], PATIENT, access=ACCESS, budget_seconds=budget)
    assert result.failures == [merge.SourceFailure(2, "Helse Vest", base.BUDGET_EXCEEDED)]
    assert len(result.documents) == 5
    assert result.elapsed_seconds < budget + MARGIN


def test_the_breaker_answers_at_once_after_n_failures_then_tries_again(faulty: FhirServer) -> None:
    now = [1000.0]
    breaker = CircuitBreaker("helse-vest", failure_threshold=2, cooldown_seconds=30, clock=lambda: now[0])
    source = client(faulty.base_url, source_id=2, name="Helse Vest", breaker=breaker)
    faulty.set_fault("slow")
    for _ in range(2):
        with pytest.raises(SourceError) as raised:
            source.search(PATIENT, access=ACCESS)
        assert raised.value.reason_code == base.TIMEOUT
    assert breaker.state == OPEN

    started = time.monotonic()
    result = merge.search_sources([source], PATIENT, access=ACCESS, budget_seconds=BUDGET)
    elapsed = time.monotonic() - started
    assert result.failures == [merge.SourceFailure(2, "Helse Vest", base.BREAKER_OPEN)]
    assert elapsed < 0.05

    # After the cool-down one trial goes through; the source is back, so it closes.
    faulty.set_fault("none")
    now[0] += 31
    assert breaker.state == HALF_OPEN
    assert len(source.search(PATIENT, access=ACCESS).documents) == 5
    assert breaker.state == CLOSED


def test_half_open_trial_that_fails_opens_again() -> None:
    now = [0.0]
    breaker = CircuitBreaker("x", failure_threshold=1, cooldown_seconds=10, clock=lambda: now[0])
    breaker.record_failure()
    assert not breaker.allow()
    now[0] = 10
    assert breaker.allow()
    assert not breaker.allow()  # one trial at a time
    breaker.record_failure()
    assert breaker.state == OPEN
    assert not breaker.allow()


def test_time_to_answer_with_one_source_down(healthy: FhirServer, faulty: FhirServer) -> None:
    """Measured, printed with `-s`: the list's wait when one of two sources is down."""

    good = client(healthy.base_url, source_id=1)
    timings = {}
    faulty.set_fault("slow")
    slow = client(faulty.base_url, source_id=2, name="Helse Vest")
    timings["slow source (read timeout, one retry)"] = merge.search_sources(
        [good, slow], PATIENT, access=ACCESS, budget_seconds=BUDGET
    ).elapsed_seconds
    down = client(closed_port_url(), source_id=2, name="Helse Vest")
    timings["source refusing connections"] = merge.search_sources(
        [good, down], PATIENT, access=ACCESS, budget_seconds=BUDGET
    ).elapsed_seconds
    breaker = CircuitBreaker("down", failure_threshold=1, cooldown_seconds=60)
    breaker.record_failure()
    known_down = client(faulty.base_url, source_id=2, name="Helse Vest", breaker=breaker)
    timings["source behind an open breaker"] = merge.search_sources(
        [good, known_down], PATIENT, access=ACCESS, budget_seconds=BUDGET
    ).elapsed_seconds
    baseline = merge.search_sources([good], PATIENT, access=ACCESS, budget_seconds=BUDGET).elapsed_seconds
    print(
        f"\ntime-to-answer, connect {CONNECT_TIMEOUT}s / read {READ_TIMEOUT}s / 1 retry / budget {BUDGET}s:"
    )
    print(f"  both sources up: {baseline * 1000:.0f} ms")
    for label, seconds in timings.items():
        print(f"  {label}: {seconds * 1000:.0f} ms")
    assert timings["slow source (read timeout, one retry)"] < BUDGET + MARGIN
    assert timings["source behind an open breaker"] < baseline + 0.1


# --- Token provider --------------------------------------------------------------------


def test_client_credentials_token_with_private_key_jwt() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    received: list[dict[str, str]] = []

    class TokenEndpoint(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers["content-length"])
            form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
            received.append(form)
            body = json.dumps({"access_token": f"token-{len(received)}", "expires_in": 300}).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), TokenEndpoint)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{server.server_address[1]}/token"
    try:
        provider = ClientCredentialsTokenProvider(
            token_endpoint=endpoint, client_id="pjd-portal", private_key=lambda: pem, scope="nhn:mhd/read"
        )
        assert provider.access_token() == "token-1"
        assert provider.access_token() == "token-1"  # cached until shortly before expiry
    finally:
        server.shutdown()
    assert len(received) == 1
    form = received[0]
    assert form["grant_type"] == "client_credentials"
    assert form["scope"] == "nhn:mhd/read"
    assert form["client_assertion_type"] == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    claims = jwt.decode(form["client_assertion"], key.public_key(), algorithms=["RS256"], audience=endpoint)
    assert claims["iss"] == claims["sub"] == "pjd-portal"


def test_token_endpoint_down_is_a_source_failure() -> None:
    provider = ClientCredentialsTokenProvider(
        token_endpoint=closed_port_url() + "/token",
        client_id="pjd-portal",
        private_key=lambda: rsa.generate_private_key(65537, 2048).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
        timeout=1,
    )
    source = MhdSourceClient(
        source_id=3,
        name="Helse Nord",
        base_url=closed_port_url(),
        token_provider=provider,
        connect_timeout=CONNECT_TIMEOUT,
        read_timeout=READ_TIMEOUT,
    )
    result = merge.search_sources([source], PATIENT, access=ACCESS, budget_seconds=BUDGET)
    assert result.failures == [merge.SourceFailure(3, "Helse Nord", base.TOKEN_UNAVAILABLE)]


# --- The local store behind the same interface -----------------------------------------


def test_local_source_searches_and_retrieves(world: Any) -> None:
    from tests.builders import add_document

    epikrise = add_document(world, days_ago=10, data=b"%PDF-1.4 local")
    add_document(world, category="C00-1", days_ago=400, title="Gammelt prøvesvar")
    add_document(world, world.other_patient)
    source = LocalSourceClient(world.source)

    documents = source.search(world.patient.national_id, access=ACCESS).documents
    assert [d.document_id for d in documents][0] == str(epikrise.document_id)
    assert len(documents) == 2
    assert (
        source.search(world.patient.national_id, access=ACCESS, categories=["A00-1"]).documents
        == documents[:1]
    )

    content_type, size, chunks = source.retrieve(documents[0], access=ACCESS)
    assert (content_type, size, b"".join(chunks)) == ("application/pdf", 14, b"%PDF-1.4 local")
    facts = documents[0].facts(world.patient.pk)
    assert facts.source_id == world.source.pk


def test_merge_with_local_and_remote_sources(world: Any, healthy: FhirServer) -> None:
    from tests.builders import add_document

    add_document(world, days_ago=1)
    remote = client(healthy.base_url, source_id=world.source.pk + 1, name="Helse Bergen")
    down = client(closed_port_url(), source_id=world.source.pk + 2, name="Helse Vest")
    local = LocalSourceClient(world.source)
    result = merge.search_sources([local, remote, down], PATIENT, access=ACCESS, budget_seconds=BUDGET)
    # The world's patient is not the FHIR server's patient: the local store has none of
    # PATIENT's documents; the remote source has five; the down source is a failure.
    assert len(result.documents) == 5
    assert [f.reason_code for f in result.failures] == [base.UNREACHABLE]
    assert result.documents == sorted(result.documents, key=lambda d: d.service_date, reverse=True)


def test_assertion_is_signed_with_a_key_id() -> None:
    key = rsa.generate_private_key(65537, 2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    provider = ClientCredentialsTokenProvider(
        token_endpoint="http://x/token", client_id="c", private_key=lambda: pem
    )
    header = json.loads(base64.urlsafe_b64decode(provider.client_assertion().split(".")[0] + "=="))
    assert header["alg"] == "RS256"
    assert header["kid"]


# --- through the clinician's pages: remote sources in the list and the document view ---


@pytest.fixture
def remote_world(world: Any, healthy: FhirServer, faulty: FhirServer, settings: Any) -> Any:
    """The portal with two MHD sources (Helse Bergen healthy, UNN the fault source) and a
    list patient whose national id the FHIR servers know."""
    from pjd_portal.accounts.models import Organisation, OrganisationKind
    from pjd_portal.documents.models import DocumentSource
    from pjd_portal.documents.sources.breaker import reset_breakers
    from pjd_portal.patients.models import Gender, Patient

    reset_breakers()
    bergen = Organisation.objects.create(
        orgnr="310400009", name="Helse Bergen HF", kind=OrganisationKind.HELSEFORETAK
    )
    unn = Organisation.objects.create(
        orgnr="310500003", name="Helse Nord (UNN)", kind=OrganisationKind.HELSEFORETAK
    )
    DocumentSource.objects.create(organisation=bergen, name="Helse Bergen HF", kind="mhd")
    DocumentSource.objects.create(organisation=unn, name="Helse Nord (UNN)", kind="mhd")
    settings.MHD_SOURCES = {
        "310400009": {"base_url": healthy.base_url, "token": False},
        "310500003": {"base_url": faulty.base_url, "token": False},
    }
    settings.DOCUMENT_SOURCE_CONNECT_TIMEOUT = CONNECT_TIMEOUT
    settings.DOCUMENT_SOURCE_READ_TIMEOUT = READ_TIMEOUT
    settings.DOCUMENT_SOURCE_SEARCH_BUDGET = BUDGET
    Patient.objects.create(
        national_id=PATIENT,
        national_id_kind="synthetic",
        given_name="Fjern",
        family_name="Kildesen",
        birth_date=datetime.date(1970, 5, 13),
        gender=Gender.FEMALE,
        fastlege_hpr_number="910000011",
    )
    yield world
    reset_breakers()


def _open_list(client: Any, *, wait: bool = True) -> tuple[str, str, float]:
    """Look the patient up, state UNNTAK, open the list. `wait`: the list as a browser
    without JavaScript gets it (every source asked in the page's own request)."""

    from tests.builders import lookup_and_attest

    handle = lookup_and_attest(client, national_id=PATIENT)
    started = time.monotonic()
    page = client.get(f"/pasient/{handle}/" + ("?wait=1" if wait else "")).content.decode()
    return handle, page, time.monotonic() - started


@pytest.mark.django_db
def test_remote_documents_are_listed_and_a_slow_source_does_not_hold_the_page(
    remote_world: Any, as_fastlege: Any, faulty: FhirServer, seeded: Seeded
) -> None:
    faulty.set_fault("slow")
    _handle, page, elapsed = _open_list(as_fastlege)
    print(f"\nlist page with one source slow: {elapsed * 1000:.0f} ms (budget {BUDGET} s)")
    assert elapsed < BUDGET + MARGIN
    assert f"/dokument/{seeded.ids['epikrise']}/" in page
    # Outside the windows (prøvesvar, henvisning) or superseded: not listed; NORS: counted.
    for label in ("provesvar", "henvisning", "old_version", "blocked", "other_patient"):
        assert seeded.ids[label] not in page, label
    assert 'data-count="1"' in page
    assert 'data-testid="source-not-answering"' in page and "Helse Nord (UNN) svarer ikke" in page


@pytest.mark.django_db
def test_a_remote_pdf_opens_streamed_after_its_event_is_committed(
    remote_world: Any, as_fastlege: Any, seeded: Seeded, healthy: FhirServer
) -> None:
    from pjd_portal.auditlog.models import AccessEvent

    handle, _page, _ = _open_list(as_fastlege)
    source_id = _source_id("310400009")
    response = as_fastlege.get(f"/pasient/{handle}/kilde/{source_id}/dokument/{seeded.ids['epikrise']}/")
    assert response.status_code == 200 and response["Content-Type"] == "application/pdf"
    assert response["Content-Security-Policy"].startswith("sandbox")
    assert b"".join(response.streaming_content) == seeded.pdf
    [event] = AccessEvent.objects.filter(event_type="document_open", outcome="granted")
    assert event.source_orgnr == "310400009" and event.details["remote_document_id"] == seeded.ids["epikrise"]
    # What the patient's log will show of it, as the source described it at the open.
    assert event.details["confidentiality_code"] and event.details["title"]
    # The source was told the basis and the event id.
    retrieval = [r for r in healthy.requests_seen() if "/Binary/" in r.get("path", "")][-1]
    headers = {k.lower(): v for k, v in retrieval["headers"].items()}
    assert (
        headers["nhn-access-basis"] == "UNNTAK" and headers["nhn-event-id"] == event.details["nhn_event_id"]
    )


@pytest.mark.django_db
def test_remote_refusals_look_like_missing_documents_and_are_logged(
    remote_world: Any, as_fastlege: Any, seeded: Seeded
) -> None:
    from pjd_portal.auditlog.models import AccessEvent
    from tests.builders import comparable

    handle, _page, _ = _open_list(as_fastlege)
    source_id = _source_id("310400009")
    blocked = as_fastlege.get(f"/pasient/{handle}/kilde/{source_id}/dokument/{seeded.ids['blocked']}/")
    missing = as_fastlege.get(f"/pasient/{handle}/kilde/{source_id}/dokument/no-such-id/")
    other = as_fastlege.get(f"/pasient/{handle}/kilde/{source_id}/dokument/{seeded.ids['other_patient']}/")
    assert blocked.status_code == missing.status_code == other.status_code == 404
    assert comparable(blocked) == comparable(missing)
    reasons = list(
        # In writing order: without order_by, PostgreSQL's partitioned table may answer in any.
        AccessEvent.objects.filter(event_type="access_denied")
        .order_by("id")
        .values_list("reason_code", flat=True)
    )
    assert reasons[-3:] == ["document_blocked", "unknown_document", "unknown_document"]
    # Announced as a PDF, served as HTML: the page says the source failed, nothing is shown.
    liar = as_fastlege.get(f"/pasient/{handle}/kilde/{source_id}/dokument/{seeded.ids['liar']}/")
    assert liar.status_code == 503 and b"<html>" not in liar.content
    assert AccessEvent.objects.filter(event_type="document_open", outcome="not_found").exists()


def _source_id(orgnr: str) -> int:
    from pjd_portal.documents.models import DocumentSource

    return DocumentSource.objects.get(organisation__orgnr=orgnr).pk


# --- DPoP, when the source asks for it -------------------------------------------------------


def test_a_source_that_asks_for_dpop_gets_proofs(faulty: FhirServer, seeded: Seeded) -> None:
    import jwt as pyjwt

    from pjd_portal.documents.sources import dpop

    dpop.reset()
    requests.delete(f"{faulty.control_url}/requests", timeout=5)
    faulty.set_fault("dpop")
    source = client(faulty.base_url)
    documents = source.search(PATIENT, access=ACCESS).documents
    assert documents, "the search succeeds once the proof is sent"
    seen = faulty.requests_seen()
    # The first try (a bearer token) is asked for DPoP; the retry carries a proof.
    assert "dpop" not in {k.lower() for k in seen[0]["headers"]}
    proof = seen[1]["headers"]["dpop"]
    assert seen[1]["headers"]["authorization"] == f"DPoP {TOKEN}"
    header = pyjwt.get_unverified_header(proof)
    claims = pyjwt.decode(proof, options={"verify_signature": False})
    assert header["typ"] == "dpop+jwt" and header["alg"] == "ES256" and "d" not in header["jwk"]
    assert claims["htm"] == "POST" and claims["htu"].endswith("/DocumentReference/_search")
    # From then on every request goes with a fresh proof at once, the download too.
    # (the fault server is seeded alike, under its own ids)
    epikrise = next(d for d in documents if d.title == "Epikrise (epikrise)")
    _content_type, _size, chunks = source.retrieve(epikrise, access=ACCESS)
    assert b"".join(chunks) == seeded.pdf
    later = faulty.requests_seen()[2:]
    assert later and all("dpop" in r["headers"] for r in later)
    proofs = [r["headers"]["dpop"] for r in faulty.requests_seen() if "dpop" in r["headers"]]
    assert len(set(proofs)) == len(proofs)  # never the same proof twice
    dpop.reset()


def test_a_source_that_asks_for_dpop_without_a_token_is_a_clear_failure(faulty: FhirServer) -> None:
    from pjd_portal.documents.sources import dpop
    from pjd_portal.documents.sources.base import SourceError

    dpop.reset()
    faulty.set_fault("dpop")
    source = MhdSourceClient(
        source_id=2,
        name="Uten token",
        base_url=faulty.base_url,
        token_provider=StaticTokenProvider(None),
        connect_timeout=CONNECT_TIMEOUT,
        read_timeout=READ_TIMEOUT,
        retries=0,
        count=50,
    )
    with pytest.raises(SourceError) as refused:
        source.search(PATIENT, access=ACCESS)
    assert refused.value.reason_code == "unauthorized"
    dpop.reset()


@pytest.mark.django_db
def test_local_and_remote_documents_are_one_sorted_list(
    remote_world: Any, as_fastlege: Any, seeded: Seeded
) -> None:
    import re

    from pjd_portal.patients.models import Patient
    from tests.builders import add_document

    local = add_document(
        remote_world, patient=Patient.objects.get(national_id=PATIENT), title="Lokalt notat", days_ago=3
    )
    _handle, page, _ = _open_list(as_fastlege)
    rows = re.findall(r'data-testid="document-row">\s*<td>(\d\d\.\d\d\.\d{4})</td>', page)
    assert len(rows) >= 2
    as_dates = [datetime.datetime.strptime(d, "%d.%m.%Y").date() for d in rows]
    assert as_dates == sorted(as_dates, reverse=True)  # newest first, across sources
    assert f"/dokument/{local.document_id}/" in page and f"/dokument/{seeded.ids['epikrise']}/" in page


@pytest.mark.django_db
def test_a_blocked_clinician_never_reaches_the_remote_source(
    remote_world: Any, as_fastlege: Any, seeded: Seeded, healthy: FhirServer
) -> None:
    from pjd_portal.auditlog.models import AccessEvent
    from pjd_portal.patients.models import Patient, PrivacyChoice, PrivacyChoiceKind

    handle, _page, _ = _open_list(as_fastlege)
    PrivacyChoice.objects.create(
        patient=Patient.objects.get(national_id=PATIENT),
        kind=PrivacyChoiceKind.BLOCKED_CLINICIAN,
        blocked_hpr_number="910000011",
    )
    requests.delete(f"{healthy.control_url}/requests", timeout=5)
    response = as_fastlege.get(
        f"/pasient/{handle}/kilde/{_source_id('310400009')}/dokument/{seeded.ids['epikrise']}/"
    )
    assert response.status_code == 404
    assert healthy.requests_seen() == []  # the source was not asked, nor told of an access
    assert (
        AccessEvent.objects.filter(event_type="access_denied").latest("id").reason_code == "clinician_blocked"
    )


# --- answers a source must not get away with ------------------------------------------------


def test_a_deeply_nested_answer_is_a_malformed_source_not_a_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    from pjd_portal.documents.sources.base import SourceError

    source = client("http://127.0.0.1:9/fhir/R4")
    fake_source_answers(
        monkeypatch, source, b'{"resourceType":"Bundle","x":' + b"[" * 100000 + b"]" * 100000 + b"}"
    )
    with pytest.raises(SourceError) as refused:
        source.search(PATIENT, access=ACCESS)
    assert refused.value.reason_code == "malformed_response"


@pytest.mark.parametrize(
    ("subject", "kept"),
    [
        ({"identifier": {"system": NATIONAL_ID_SYSTEM, "value": PATIENT}}, True),
        ({"identifier": {"system": NATIONAL_ID_SYSTEM, "value": OTHER_PATIENT}}, False),
        ({"reference": "Patient/unknown"}, False),
    ],
)
def test_only_documents_about_the_patient_asked_for_are_kept(
    monkeypatch: pytest.MonkeyPatch, subject: dict[str, Any], kept: bool
) -> None:
    source = client("http://127.0.0.1:9/fhir/R4")
    bundle = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [{"resource": document_reference(subject)}],
    }
    fake_source_answers(monkeypatch, source, json.dumps(bundle).encode())
    assert bool(source.search(PATIENT, access=ACCESS).documents) is kept


@pytest.mark.parametrize(
    ("url", "own"),
    [
        ("{base}/Binary/b1", True),
        ("{base}/../../evil/steal", False),
        ("{base}/Binary/%2e%2e/%2e%2e/evil", False),
        ("{base}//Binary/b1", False),
        ("http://127.0.0.1:10/fhir/R4/Binary/b1", False),
    ],
)
def test_only_urls_under_the_source_get_the_token(url: str, own: bool) -> None:
    base = "http://127.0.0.1:9/fhir/R4"
    assert client(base)._own_url(url.format(base=base)) is own


@pytest.mark.django_db
def test_an_open_from_a_hanging_source_answers_within_the_budget(
    remote_world: Any, as_fastlege: Any, faulty: FhirServer
) -> None:
    from pjd_portal.auditlog.models import AccessEvent

    handle, _page, _ = _open_list(as_fastlege)
    faulty.set_fault("slow")
    started = time.monotonic()
    response = as_fastlege.get(f"/pasient/{handle}/kilde/{_source_id('310500003')}/dokument/any-id/")
    elapsed = time.monotonic() - started
    assert response.status_code == 404 and elapsed < BUDGET + MARGIN, elapsed
    assert (
        AccessEvent.objects.filter(event_type="access_denied").latest("id").reason_code.startswith("source_")
    )
