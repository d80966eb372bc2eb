"""The MHD API against clients it did not write: a remote source merged into its answer
(the test FHIR server), an independent FHIR client library (fhirclient) and the portal's
own MHD consumer on a live server, and schemathesis against the OpenAPI description."""

from __future__ import annotations

import datetime
import json
import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from django.core.cache import cache
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from django.test import Client
from django.utils import timezone
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings

from pjd_portal.accounts.helseid_tokens import fresh_nonce, jwk_thumbprint
from pjd_portal.accounts.models import Organisation, OrganisationKind
from pjd_portal.documents import demo_remote
from pjd_portal.documents.models import DocumentSource
from pjd_portal.documents.sources import dpop as consumer_dpop
from pjd_portal.documents.sources.base import AccessContext
from pjd_portal.documents.sources.breaker import reset_breakers
from pjd_portal.documents.sources.mhd import MhdSourceClient
from tests.builders import FAKE_PDF, LIST_PATIENT_ID, World, add_document, build_world, events
from tests.conftest import LIVE_SERVER_ADDRESS
from tests.fhirserver import FhirServer
from tests.fhirserver import start as start_fhir_server
from tests.mhd_api_tokens import DpopAuth, DpopKey, access_token, attest_for, trust_provider
from tests.test_mhd_api import Epj, _json, _matches, _outcome_issues

os.environ.setdefault("DJANGO_LIVE_TEST_SERVER_ADDRESS", LIVE_SERVER_ADDRESS)
BERGEN = "310400009"
TODAY = timezone.localdate()


# --- a remote source, merged ------------------------------------------------------------


@pytest.fixture(scope="module")
def bergen(tmp_path_factory: Any) -> Iterator[FhirServer]:
    folder = tmp_path_factory.mktemp("mhd-api-remote")
    documents = [
        demo_remote.SeedDocument(
            national_id=LIST_PATIENT_ID,
            category="A00-1",
            type_code="A03-2",
            type_name="Epikrise",
            title=f"Bergen {label}",
            service_date=TODAY - datetime.timedelta(days=days),
            author="Overlege Anne Berg",
            custodian_name="Helse Bergen HF",
            custodian_orgnr=BERGEN,
            data=FAKE_PDF,
            confidentiality=code,
        )
        for label, days, code in (("epikrise", 2, "N"), ("sperret", 8, "NORS"), ("eldre", 20, "N"))
    ]
    seed = folder / "bergen.json"
    seed.write_text(
        json.dumps(demo_remote.seed_bundle([demo_remote.SeedPatient(LIST_PATIENT_ID)], documents))
    )
    server = start_fhir_server(folder, "bergen", seed_file=seed)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def remote_epj(
    world: World, bergen: FhirServer, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Epj]:
    bergen.reset()
    reset_breakers()
    cache.clear()
    org = Organisation.objects.create(
        orgnr=BERGEN, name="Helse Bergen HF", kind=OrganisationKind.HELSEFORETAK
    )
    DocumentSource.objects.create(organisation=org, name="Helse Bergen HF", kind="mhd")
    settings.MHD_SOURCES = {BERGEN: {"base_url": bergen.base_url, "token": False}}
    settings.DOCUMENT_SOURCE_CONNECT_TIMEOUT = 0.5
    settings.DOCUMENT_SOURCE_READ_TIMEOUT = 2.0
    settings.DOCUMENT_SOURCE_SEARCH_BUDGET = 4.0
    trust_provider(monkeypatch, settings)
    yield Epj(Client(), world.fastlege, world.gp_office)
    bergen.reset()
    reset_breakers()
    cache.clear()


@pytest.mark.django_db
def test_a_remote_sources_documents_are_merged_in_the_lists_order_and_retrieved(
    remote_epj: Epj, world: World
) -> None:
    add_document(world, title="Lokal", days_ago=5)
    bundle = _json(remote_epj.search({"_include": "DocumentReference:subject"}))
    titles = [d["description"] for d in _matches(bundle)]
    assert titles == ["Bergen epikrise", "Lokal", "Bergen eldre"]
    assert bundle["total"] == 3
    remote = _matches(bundle)[0]
    source_id = DocumentSource.objects.get(organisation__orgnr=BERGEN).pk
    assert remote["id"].startswith(f"{source_id}.")
    codes = [i["details"]["coding"][0]["code"] for i in _outcome_issues(bundle)]
    assert codes == ["blocked"]  # Bergen's NORS document: counted, by source
    # The list events: one for Bergen's answer, one for the page.
    listed = events("document_list")
    assert [e.source_orgnr for e in listed] == [BERGEN, ""]
    assert all(e.details["channel"] == "api" for e in listed)
    # ITI-68 of the remote document: the portal's remote open, its event first.
    response = remote_epj.call("GET", remote["content"][0]["attachment"]["url"], accept="application/pdf")
    assert response.status_code == 200 and b"".join(response.streaming_content) == FAKE_PDF
    [opened] = events("document_open")
    assert opened.source_orgnr == BERGEN and opened.details["channel"] == "api"


@pytest.mark.django_db
def test_a_failing_source_is_an_issue_of_the_answer_never_a_silent_gap(
    remote_epj: Epj, world: World, bergen: FhirServer
) -> None:
    add_document(world, title="Lokal")
    bergen.set_fault("error")
    bundle = _json(remote_epj.search())
    assert [d["description"] for d in _matches(bundle)] == ["Lokal"]
    [issue] = [i for i in _outcome_issues(bundle) if i["severity"] == "warning"]
    assert "Helse Bergen HF" in issue["diagnostics"] and issue["code"] == "transient"
    assert events("document_list")[0].outcome == "not_found"


# --- live clients ---------------------------------------------------------------------


@pytest.fixture
def live_world(live_server: Any, monkeypatch: pytest.MonkeyPatch, settings: Any) -> dict[str, Any]:
    trust_provider(monkeypatch, settings)
    world = build_world()
    documents = [add_document(world, title=f"Dokument {i}", days_ago=i + 1) for i in range(3)]
    add_document(world, title="Prøvesvar", category="C00-1", days_ago=2)
    return {"world": world, "documents": documents, "base": f"{live_server.url}/api/fhir"}


def test_an_independent_fhir_client_searches_and_retrieves(live_world: dict[str, Any]) -> None:
    from fhirclient import client as fhir_client
    from fhirclient.models.documentreference import DocumentReference

    world: World = live_world["world"]
    key = DpopKey()
    token = access_token(attest_for(world.fastlege, world.gp_office, [LIST_PATIENT_ID]), jkt=key.thumbprint)
    smart = fhir_client.FHIRClient(settings={"app_id": "pjd-test-epj", "api_base": live_world["base"] + "/"})
    smart.server.session.auth = DpopAuth(token, key)
    found = DocumentReference.where(struct={"category": "A00-1", "status": "current"}).perform_resources(
        smart.server
    )
    assert [d.description for d in found] == ["Dokument 0", "Dokument 1", "Dokument 2"]
    assert all(d.subject.identifier.value == LIST_PATIENT_ID for d in found)
    data = smart.server.request_data(
        found[0].content[0].attachment.url, headers={"Accept": "application/pdf"}
    )
    assert data == FAKE_PDF
    assert len(events("document_open")) == 1


def test_the_portals_own_mhd_consumer_lists_and_opens_what_the_api_lists(live_world: dict[str, Any]) -> None:
    world: World = live_world["world"]
    consumer_dpop.reset()
    token = access_token(
        attest_for(world.fastlege, world.gp_office, [LIST_PATIENT_ID]),
        jkt=jwk_thumbprint(consumer_dpop.public_jwk()),
    )

    class Tokens:
        def access_token(self) -> str:
            return token

    consumer = MhdSourceClient(
        source_id=99,
        name="PJD Portal (API)",
        base_url=live_world["base"],
        token_provider=Tokens(),
        connect_timeout=2,
        read_timeout=10,
        count=2,  # the consumer pages through the API's next links
    )
    access = AccessContext(basis="UNNTAK", event_id=str(uuid.uuid4()))
    result = consumer.search(LIST_PATIENT_ID, access=access)
    listed = {str(d.document_id) for d in live_world["documents"]}
    assert {d.document_id for d in result.documents} >= listed and result.total == 4
    assert not result.incomplete and not result.unverified
    one = next(d for d in result.documents if d.title == "Dokument 0")
    assert consumer.search(LIST_PATIENT_ID, access=access, document_id=one.document_id).documents == [one]
    content_type, _, chunks = consumer.retrieve(one, access=access)
    assert content_type == "application/pdf" and b"".join(chunks) == FAKE_PDF
    consumer_dpop.reset()


# --- schemathesis against the OpenAPI description ---------------------------------------


@pytest.fixture
def mhd_schema(world: World, monkeypatch: pytest.MonkeyPatch, settings: Any) -> Iterator[Any]:
    trust_provider(monkeypatch, settings)
    add_document(world, title="Schemathesis")
    # The WSGI application called directly, as Django's test client does it: without
    # closing the database connection after each request (on PostgreSQL that would end
    # the test's own transaction).
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield schemathesis.openapi.from_wsgi("/api/openapi.json", get_wsgi_application())
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


# The launch is described too, and tested where it is built (tests/test_epj_launch.py).
schema = schemathesis.pytest.from_fixture("mhd_schema").include(path_regex="^/api/fhir/")
_KEY = DpopKey()


@pytest.mark.django_db
@schema.parametrize()
@hypothesis_settings(
    max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True, database=None
)
def test_the_api_conforms_to_its_openapi_description(case: Any, world: World) -> None:
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    # Not through Django's test client: it connects close_old_connections again after its
    # request, and the next WSGI call would then close the test's connection.
    nonce = fresh_nonce()
    token = access_token(attest_for(world.fastlege, world.gp_office, [LIST_PATIENT_ID]), jkt=_KEY.thumbprint)
    url = f"http://localhost{case.formatted_path}"
    proof = _KEY.proof(case.method.upper(), url, access_token=token, nonce=nonce)
    # identity: the WSGI test client does not undo the portal's gzip.
    headers = {"Authorization": f"DPoP {token}", "DPoP": proof, "Accept-Encoding": "identity"}
    response = case.call(headers=headers)
    assert response.status_code < 500, response.text[:500]
    case.validate_response(
        response,
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
        ],
    )
