"""Remote sources as the standard allows them to behave, not as our test double happens to.

The test FHIR server (fhirserver/server.mjs) pages the way HAPI FHIR does (`_getpages`
links on the base itself) and can page under the base, relatively, to another host, or not
at all; it can refuse a parameter with a 400 OperationOutcome, serve Binary as FHIR JSON,
write subject references absolute or versioned, and spell the DPoP scheme in lower case.
Each test sets the behaviour it needs. The second half walks the clinician's list: it
answers at once, and each remote source's documents arrive through their own fragment.
"""

from __future__ import annotations

import datetime
import io
import json
import logging
import os
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from django.test import Client
from django.utils import timezone

from pjd_portal.access import policy
from pjd_portal.accounts.caller import caller_of
from pjd_portal.documents import demo_remote
from pjd_portal.documents.sources import base, dpop
from pjd_portal.documents.sources.base import AccessContext, SourceError
from pjd_portal.documents.sources.breaker import CLOSED, CircuitBreaker, reset_breakers
from pjd_portal.documents.sources.mhd import MhdSourceClient
from pjd_portal.documents.sources.tokens import StaticTokenProvider
from pjd_portal.lib.redact import redact_national_ids
from tests.builders import (
    FAKE_PDF,
    LIST_PATIENT_ID,
    OTHER_PATIENT_ID,
    events,
    lookup_and_attest,
    synthetic_id,
)
from tests.fhirserver import FhirServer
from tests.fhirserver import start as start_fhir_server

PAGED_PATIENT = synthetic_id(9, 9, 59, 130)  # 260 documents at the source
PAGED = 260
ACCESS = AccessContext(basis="UNNTAK", event_id=str(uuid.uuid4()), source_system="pjd-portal-test")
CONNECT_TIMEOUT = 0.5
READ_TIMEOUT = 1.5  # generous: CI machines are loaded; the tests of timeouts use faults far beyond it
BUDGET = 4.0
# The MHD client's own tests (paging, refusals, subjects) are not about timeouts: a loaded
# CI machine must not turn a slow page of the test server into a failure.
CLIENT_READ_TIMEOUT = 5.0
BERGEN, NORD = "310400009", "310500003"
TODAY = timezone.localdate()


def _document(national_id: str, label: str, days_ago: int, **overrides: Any) -> demo_remote.SeedDocument:
    values: dict[str, Any] = {
        "national_id": national_id,
        "category": "A00-1",
        "type_code": "A03-2",
        "type_name": "Epikrise",
        "title": f"Epikrise ({label})",
        "service_date": TODAY - datetime.timedelta(days=days_ago),
        "author": "Overlege Anne Berg",
        "custodian_name": "Helse Bergen HF",
        "custodian_orgnr": BERGEN,
        "data": FAKE_PDF,
    }
    values.update(overrides)
    return demo_remote.SeedDocument(**values)


# The list patient's documents at each source (labels in the titles).
BERGEN_DOCUMENTS = [
    _document(LIST_PATIENT_ID, "bergen-epikrise", 3, department="Hjerteavdelingen"),
    _document(
        LIST_PATIENT_ID,
        "bergen-provesvar",
        20,
        category="C00-1",
        type_code="C03-1",
        type_name="Prøvesvar",
        content_type="application/xml",
        data=b"<svar/>",
    ),
    # No content type in the reference: listed, and opened as what arrives, if showable.
    _document(LIST_PATIENT_ID, "bergen-uten-type", 30, content_type="", served_type="application/pdf"),
    _document(LIST_PATIENT_ID, "bergen-uten-type-html", 31, content_type="", served_type="text/html"),
    _document(LIST_PATIENT_ID, "bergen-sperret", 40, confidentiality="NORS"),
    _document(LIST_PATIENT_ID, "bergen-eldre", 50),
]
NORD_DOCUMENTS = [
    _document(LIST_PATIENT_ID, "nord-epikrise", 5, custodian_name="UNN HF", custodian_orgnr=NORD),
    _document(LIST_PATIENT_ID, "nord-notat", 6, custodian_name="UNN HF", custodian_orgnr=NORD),
]


def _seed_file(path: Path, documents: list[demo_remote.SeedDocument]) -> Path:
    patients = [demo_remote.SeedPatient(n) for n in sorted({d.national_id for d in documents})]
    path.write_text(json.dumps(demo_remote.seed_bundle(patients, documents)), encoding="utf-8")
    return path


@dataclass(frozen=True)
class Servers:
    bergen: FhirServer
    nord: FhirServer


@pytest.fixture(scope="session")
def servers(tmp_path_factory: Any) -> Iterator[Servers]:
    folder = tmp_path_factory.mktemp("remote-sources")
    paged = [_document(PAGED_PATIENT, f"side-{i:03d}", i) for i in range(PAGED)]
    other = [_document(OTHER_PATIENT_ID, "annen-pasient", 2)]
    bergen = start_fhir_server(
        folder, "bergen", seed_file=_seed_file(folder / "bergen.json", BERGEN_DOCUMENTS + paged + other)
    )
    try:
        nord = start_fhir_server(folder, "nord", seed_file=_seed_file(folder / "nord.json", NORD_DOCUMENTS))
    except BaseException:
        bergen.stop()
        raise
    try:
        yield Servers(bergen, nord)
    finally:
        bergen.stop()
        nord.stop()


@pytest.fixture(autouse=True)
def _cache_not_resting(monkeypatch: pytest.MonkeyPatch) -> None:
    """A cache failure in one test makes the process leave the cache alone for a while
    (remote._cached): not into the next test."""

    from pjd_portal.clinic import remote

    monkeypatch.setattr(remote, "_cache_down_until", 0.0)


@pytest.fixture
def bergen(servers: Servers) -> Iterator[FhirServer]:
    servers.bergen.reset()
    yield servers.bergen
    servers.bergen.reset()


@pytest.fixture
def nord(servers: Servers) -> Iterator[FhirServer]:
    servers.nord.reset()
    yield servers.nord
    servers.nord.reset()


def client(
    server: FhirServer, *, count: int = 100, max_documents: int = 2000, breaker: CircuitBreaker | None = None
) -> MhdSourceClient:
    return MhdSourceClient(
        source_id=1,
        name="Helse Bergen HF",
        base_url=server.base_url,
        token_provider=StaticTokenProvider("test-token"),
        connect_timeout=CONNECT_TIMEOUT,
        read_timeout=CLIENT_READ_TIMEOUT,
        count=count,
        max_documents=max_documents,
        breaker=breaker,
    )


def _offline(base_url: str = "http://127.0.0.1:9/fhir/R4") -> MhdSourceClient:
    """A client for answers the test makes up (`_fake`); nothing listens at its base."""

    return MhdSourceClient(
        source_id=1,
        name="x",
        base_url=base_url,
        token_provider=StaticTokenProvider(None),
        connect_timeout=CONNECT_TIMEOUT,
        read_timeout=READ_TIMEOUT,
    )


def _pages(
    monkeypatch: pytest.MonkeyPatch, source: MhdSourceClient, pages: list[Any]
) -> list[dict[str, Any]]:
    """Answer the client's requests with these Bundles in turn (read as from a socket);
    returns the requests made."""

    made: list[dict[str, Any]] = []

    def answer(method: str, url: str, **kwargs: Any) -> requests.Response:
        made.append({"method": method, "url": url, "data": kwargs.get("data")})
        response = requests.Response()
        response.status_code = 200
        response.headers["Content-Type"] = "application/fhir+json"
        response.raw = io.BytesIO(json.dumps(pages[len(made) - 1]).encode())
        return response

    monkeypatch.setattr(source.session, "request", answer)
    return made


def _urls(source: MhdSourceClient, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every URL the client asks for, in order."""

    asked: list[str] = []
    real = source.session.request

    def request(method: str, url: str, **kwargs: Any) -> requests.Response:
        asked.append(url)
        return real(method, url, **kwargs)

    monkeypatch.setattr(source.session, "request", request)
    return asked


def _titles(result: base.SearchResult) -> list[str]:
    return [d.title for d in result.documents]


ALL_PAGED = [f"Epikrise (side-{i:03d})" for i in range(PAGED)]  # newest first


# --- paging ---------------------------------------------------------------------------


@pytest.mark.parametrize("paging", ["hapi", "under-base", "relative"])
def test_every_page_arrives_in_order_when_next_links_stay_on_the_source(
    bergen: FhirServer, monkeypatch: pytest.MonkeyPatch, paging: str
) -> None:
    bergen.set_behaviour(paging=paging)
    source = client(bergen)
    asked = _urls(source, monkeypatch)

    result = source.search(PAGED_PATIENT, access=ACCESS)

    assert _titles(result) == ALL_PAGED  # all of them, newest first, none twice
    assert (result.total, result.received, result.incomplete, result.ceiling) == (PAGED, PAGED, "", None)
    assert result.missing == 0
    assert len(asked) == 3 and all("_getpages=" in url for url in asked[1:])
    if paging == "hapi":  # HAPI's own form: the base itself, a query on it
        assert asked[1].startswith(f"{bergen.base_url}?_getpages=")


def test_a_next_link_to_another_host_is_not_followed_and_the_rest_is_said_missing(
    bergen: FhirServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    bergen.set_behaviour(paging="foreign")
    source = client(bergen)
    asked = _urls(source, monkeypatch)

    result = source.search(PAGED_PATIENT, access=ACCESS)

    assert asked == [f"{bergen.base_url}/DocumentReference/_search"]  # nothing to other.invalid
    assert _titles(result) == ALL_PAGED[:100]
    assert (result.incomplete, result.missing) == (base.NEXT_OUTSIDE, PAGED - 100)


def test_a_total_larger_than_what_came_without_a_next_link_is_said_missing(bergen: FhirServer) -> None:
    bergen.set_behaviour(paging="none")  # Medplum's own behaviour: one page, the true total
    result = client(bergen).search(PAGED_PATIENT, access=ACCESS)
    assert len(result.documents) == 100
    assert (result.total, result.received, result.incomplete) == (PAGED, 100, base.SHORT_ANSWER)
    assert result.missing == PAGED - 100


def test_the_ceiling_keeps_the_newest_and_says_so(
    bergen: FhirServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = client(bergen, max_documents=150)
    asked = _urls(source, monkeypatch)
    result = source.search(PAGED_PATIENT, access=ACCESS)
    assert _titles(result) == ALL_PAGED[:150]
    assert (result.ceiling, result.total, result.incomplete) == (150, PAGED, "")
    assert len(asked) == 2  # no page beyond the ceiling is asked for

    exactly = client(bergen, max_documents=PAGED).search(PAGED_PATIENT, access=ACCESS)
    assert len(exactly.documents) == PAGED and exactly.ceiling is None  # nothing more existed


def test_a_search_that_expires_while_paging_keeps_what_came_and_says_the_rest_is_missing(
    bergen: FhirServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = client(bergen)
    real = source.session.request

    def request(method: str, url: str, **kwargs: Any) -> requests.Response:
        if "_getpages=" in url:  # the server forgets the search between two pages
            requests.delete(f"{bergen.control_url}/snapshots", timeout=5)
        return real(method, url, **kwargs)

    monkeypatch.setattr(source.session, "request", request)
    result = source.search(PAGED_PATIENT, access=ACCESS)
    assert len(result.documents) == 100
    assert (result.incomplete, result.missing) == (base.PAGING_STALLED, PAGED - 100)


def test_a_next_link_that_brings_nothing_new_stops_the_paging(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.builders import document_reference, fake_source_answers

    source = _offline()
    page = {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": 5,
        "link": [{"relation": "next", "url": "http://127.0.0.1:9/fhir/R4?_getpages=same"}],
        "entry": [
            {
                "resource": document_reference(
                    {"identifier": {"system": "urn:oid:2.16.578.1.12.4.1.4.1", "value": PAGED_PATIENT}}
                )
            }
        ],
    }
    made = fake_source_answers(monkeypatch, source, json.dumps(page).encode())
    result = source.search(PAGED_PATIENT, access=ACCESS)
    assert len(made) == 2  # the first page, and the same page again: then no more
    assert len(result.documents) == 1
    assert (result.incomplete, result.missing) == (base.PAGING_STALLED, 4)


@pytest.mark.parametrize(
    ("link", "followed"),
    [
        ("{base}?_getpages=a&_getpagesoffset=100", True),  # HAPI: the base itself
        ("{base}/?_getpages=a", True),
        ("{base}/DocumentReference?_getpages=a", True),
        ("DocumentReference?_getpages=a", True),  # relative to the base
        ("?_getpages=a", True),
        ("HTTP://127.0.0.1:8103/fhir/R4?_getpages=a", True),  # scheme and host are case-insensitive
        ("http://127.0.0.1:80/fhir/R4?x", False),  # another port
        ("https://127.0.0.1:8103/fhir/R4?x", False),  # another scheme
        ("http://other.example:8103/fhir/R4?x", False),
        ("http://user@127.0.0.1:8103/fhir/R4?x", False),
        ("http://127.0.0.1:8103/fhir?x", False),  # above the base
        ("http://127.0.0.1:8103/fhir/R4x?x", False),  # a sibling path
        ("{base}/../R5?x", False),
        ("/fhir/R4/%2e%2e/x", False),
        ("{base}//x", False),
        ("//other.example/fhir/R4?x", False),
    ],
)
def test_which_next_links_are_followed(link: str, followed: bool) -> None:
    base_url = "http://127.0.0.1:8103/fhir/R4"
    source = _offline(base_url)
    assert (source._next_url(link.format(base=base_url)) is not None) is followed


# --- a search the source refuses ---------------------------------------------------------


def test_a_refused_search_is_said_as_such_logged_without_the_national_id_and_no_breaker_failure(
    bergen: FhirServer, caplog: pytest.LogCaptureFixture
) -> None:
    bergen.set_behaviour(rejectParams=["_include"])
    breaker = CircuitBreaker("bergen", failure_threshold=1, cooldown_seconds=60)
    source = client(bergen, breaker=breaker)
    with caplog.at_level(logging.INFO), pytest.raises(SourceError) as refused:
        source.search(LIST_PATIENT_ID, access=ACCESS)
    assert refused.value.reason_code == base.SEARCH_REFUSED
    assert breaker.state == CLOSED  # it answered: not down
    logged = caplog.text
    assert "refused the search (400)" in logged and "HAPI-0524" in logged
    # The server echoed the request, national id and all (as HAPI does): the redaction is
    # what kept it out.
    assert LIST_PATIENT_ID not in logged and "Request: patient.identifier=" in logged
    assert "[fnr fjernet]" in logged


@pytest.mark.parametrize(
    ("text", "redacted"),
    [
        ("patient.identifier=x|13116900216&y", "patient.identifier=x|[fnr fjernet]&y"),
        ("fnr 131169 00216.", "fnr [fnr fjernet]."),
        ("131169-00216", "[fnr fjernet]"),
        ("131169%2000216", "[fnr fjernet]"),
        ("131169+00216", "[fnr fjernet]"),
        ("1311 6900 216", "[fnr fjernet]"),
        ("urn:oid:2.16.578.1.12.4.1.4.1%7C13116900216", "urn:oid:[fnr fjernet]%7C[fnr fjernet]"),
        ("…4.1.4.113116900216", "…[fnr fjernet]"),  # run together with the system
        ("013116900216", "[fnr fjernet]"),  # inside a longer run of digits
        # What is no national id stays: dates, times, org.nr and HPR numbers, short counts.
        ("2026-12-02 04:40:09, total 260", "2026-12-02 04:40:09, total 260"),
        ("HPR 910000011, org.nr 310600008", "HPR 910000011, org.nr 310600008"),
    ],
)
def test_national_ids_are_taken_out_of_log_text(text: str, redacted: str) -> None:
    assert redact_national_ids(text) == redacted


# --- content types and the Binary resource's JSON form -------------------------------------


def _by_title(result: base.SearchResult, label: str) -> Any:
    return next(d for d in result.documents if d.title == f"Epikrise ({label})" or label in d.title)


def test_a_reference_without_content_type_asks_for_what_can_be_shown_and_takes_only_that(
    bergen: FhirServer,
) -> None:
    source = client(bergen)
    result = source.search(LIST_PATIENT_ID, access=ACCESS)
    untyped = _by_title(result, "bergen-uten-type")
    assert untyped.content_type == ""
    assert _by_title(result, "bergen-epikrise").department == "Hjerteavdelingen"  # practiceSetting
    assert policy.document_listable(untyped.facts(1), TODAY)

    content_type, size, chunks = source.retrieve(untyped, access=ACCESS)
    assert (content_type, size, b"".join(chunks)) == ("application/pdf", len(FAKE_PDF), FAKE_PDF)
    accept = bergen.requests_seen()[-1]["headers"]["accept"]
    assert {a.strip() for a in accept.split(",")} == policy.SHOWABLE_CONTENT_TYPES

    html = _by_title(result, "bergen-uten-type-html")
    with pytest.raises(SourceError) as refused:
        source.retrieve(html, access=ACCESS)
    assert refused.value.reason_code == base.WRONG_CONTENT_TYPE


def test_a_binary_in_its_fhir_json_form_is_the_document(
    bergen: FhirServer, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = client(bergen)
    result = source.search(LIST_PATIENT_ID, access=ACCESS)
    bergen.set_behaviour(binaryForm="json")
    for label in ("bergen-epikrise", "bergen-uten-type"):
        content_type, size, chunks = source.retrieve(_by_title(result, label), access=ACCESS)
        assert (content_type, size, b"".join(chunks)) == ("application/pdf", len(FAKE_PDF), FAKE_PDF)
    # The JSON form is read whole, so it is bounded by the size limit of what is shown.
    settings.MAX_PDF_BYTES = settings.MAX_XML_BYTES = 10
    monkeypatch.setattr("pjd_portal.documents.sources.mhd.BINARY_JSON_OVERHEAD", 100)
    with pytest.raises(SourceError) as refused:
        source.retrieve(_by_title(result, "bergen-epikrise"), access=ACCESS)
    assert refused.value.reason_code == base.TOO_LARGE


def test_a_binary_json_of_another_type_than_announced_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from dataclasses import replace

    from tests.builders import fake_source_answers

    source = _offline()
    document = replace(BERGEN_AS_REMOTE, url="http://127.0.0.1:9/fhir/R4/Binary/b1")
    body = {"resourceType": "Binary", "contentType": "text/html", "data": "PGh0bWw+"}
    fake_source_answers(monkeypatch, source, json.dumps(body).encode())
    with pytest.raises(SourceError) as refused:
        source.retrieve(document, access=ACCESS)
    assert refused.value.reason_code == base.WRONG_CONTENT_TYPE


BERGEN_AS_REMOTE = base.RemoteDocument(
    source_id=1,
    source_name="x",
    document_id="d1",
    category="A00-1",
    type_code="A03-2",
    type_name="Epikrise",
    title="Epikrise",
    service_date=TODAY,
    author="",
    institution_name="",
    institution_orgnr="",
    confidentiality_code="N",
    content_type="application/pdf",
    size=None,
    url="",
)


# --- subjects in every form, and DPoP in any case -------------------------------------------


@pytest.mark.parametrize("form", ["absolute", "versioned", "absolute-versioned"])
def test_subject_references_in_any_form_name_the_patient(bergen: FhirServer, form: str) -> None:
    expected = _titles(client(bergen).search(LIST_PATIENT_ID, access=ACCESS))
    bergen.set_behaviour(subjectForm=form)
    result = client(bergen).search(LIST_PATIENT_ID, access=ACCESS)
    assert _titles(result) == expected and len(expected) == len(BERGEN_DOCUMENTS)
    assert result.unverified == 0
    seen = json.dumps(bergen.requests_seen())
    assert "DocumentReference/_search" in seen


@pytest.mark.parametrize(
    ("reference", "kept"),
    [
        ("Patient/p1", True),
        ("Patient/p1/_history/7", True),
        ("http://127.0.0.1:9/fhir/R4/Patient/p1", True),
        ("http://127.0.0.1:9/fhir/R4/Patient/p1/_history/7", True),
        ("http://elsewhere.example/fhir/R4/Patient/p1", False),  # the same id on another server
        ("Patient/p2", False),  # another patient, included
        ("Patient/p9", False),  # not included: cannot be checked
        ("Group/p1", False),
    ],
)
def test_a_subject_is_compared_by_type_and_id(
    monkeypatch: pytest.MonkeyPatch, reference: str, kept: bool
) -> None:
    from tests.builders import document_reference, fake_source_answers

    source = _offline()
    system = "urn:oid:2.16.578.1.12.4.1.4.1"
    bundle = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [
            {"resource": document_reference({"reference": reference}), "search": {"mode": "match"}},
            {
                "resource": {
                    "resourceType": "Patient",
                    "id": "p1",
                    "identifier": [{"system": system, "value": PAGED_PATIENT}],
                },
                "search": {"mode": "include"},
            },
            {
                "resource": {
                    "resourceType": "Patient",
                    "id": "p2",
                    "identifier": [{"system": system, "value": OTHER_PATIENT_ID}],
                },
                "search": {"mode": "include"},
            },
        ],
    }
    fake_source_answers(monkeypatch, source, json.dumps(bundle).encode())
    result = source.search(PAGED_PATIENT, access=ACCESS)
    assert bool(result.documents) is kept
    # Only what cannot be checked is counted for the list; another patient's is not theirs.
    assert result.unverified == (0 if kept or reference == "Patient/p2" else 1)


def test_a_lower_case_dpop_challenge_is_answered_with_proofs(bergen: FhirServer) -> None:
    dpop.reset()
    bergen.set_fault("dpop")
    bergen.set_behaviour(dpopScheme="dpop")
    try:
        result = client(bergen).search(LIST_PATIENT_ID, access=ACCESS)
    finally:
        dpop.reset()
    assert len(result.documents) == len(BERGEN_DOCUMENTS)
    seen = bergen.requests_seen()
    assert seen[-1]["headers"]["authorization"].startswith("DPoP ") and "dpop" in seen[-1]["headers"]


# --- the clinician's list: at once, and each source on its own --------------------------------


@pytest.fixture
def remote_world(world: Any, bergen: FhirServer, nord: FhirServer, settings: Any) -> Iterator[Any]:
    """The portal with two MHD sources for the list patient: Helse Bergen HF and UNN HF."""

    from django.core.cache import cache

    from pjd_portal.accounts.models import Organisation, OrganisationKind
    from pjd_portal.documents.models import DocumentSource

    reset_breakers()
    cache.clear()
    for orgnr, name in ((BERGEN, "Helse Bergen HF"), (NORD, "UNN HF")):
        org = Organisation.objects.create(orgnr=orgnr, name=name, kind=OrganisationKind.HELSEFORETAK)
        DocumentSource.objects.create(organisation=org, name=name, kind="mhd")
    settings.MHD_SOURCES = {
        BERGEN: {"base_url": bergen.base_url, "token": False},
        NORD: {"base_url": nord.base_url, "token": False},
    }
    settings.DOCUMENT_SOURCE_CONNECT_TIMEOUT = CONNECT_TIMEOUT
    settings.DOCUMENT_SOURCE_READ_TIMEOUT = READ_TIMEOUT
    settings.DOCUMENT_SOURCE_SEARCH_BUDGET = BUDGET
    yield world
    reset_breakers()
    cache.clear()


def _source_pk(orgnr: str) -> int:
    from pjd_portal.documents.models import DocumentSource

    return DocumentSource.objects.get(organisation__orgnr=orgnr).pk


HX: dict[str, Any] = {"HTTP_HX_REQUEST": "true"}  # WSGI headers for Client.get(**HX)


def _fetch_urls(page: str) -> dict[int, str]:
    """The per-source fragment URLs the page asks for (hx-get with hx-trigger=load)."""

    found = re.findall(
        r'data-testid="source-loading" data-source="(\d+)"\s+hx-get="([^"]+)" hx-trigger="load" hx-swap="none"',
        page,
    )
    return {int(source): url.replace("&amp;", "&") for source, url in found}


def _refresh_url(page: str) -> str:
    match = re.search(r'id="document-list"[^>]*?hx-get="([^"]+)"', page, re.S)
    assert match, "the list refreshes itself when a source has answered"
    return match.group(1).replace("&amp;", "&")


@pytest.mark.django_db
def test_the_list_answers_at_once_and_each_source_arrives_on_its_own(
    remote_world: Any, as_fastlege: Client, nord: FhirServer
) -> None:
    from tests.builders import add_document, lookup_and_attest

    add_document(remote_world, title="Lokal epikrise", days_ago=1)
    nord.set_fault("slow", delay_ms=4000)  # hangs beyond its own timeouts
    handle = lookup_and_attest(as_fastlege)

    started = time.monotonic()
    response = as_fastlege.get(f"/pasient/{handle}/")
    first_page = time.monotonic() - started
    page = response.content.decode()
    print(f"\nlist page with one source hanging, before any source: {first_page * 1000:.0f} ms")
    assert first_page < 1.0
    assert "Lokal epikrise" in page and "bergen-epikrise" not in page
    assert page.count('data-testid="source-loading"') == 2
    assert "Henter fra Helse Bergen HF" in page and "Henter fra UNN HF" in page
    fetches = _fetch_urls(page)
    assert set(fetches) == {_source_pk(BERGEN), _source_pk(NORD)}
    # Without JavaScript the page asks again and waits (<noscript> is inert with JavaScript on).
    assert re.search(r'<noscript><meta http-equiv="refresh" content="0; url=\?wait=1"></noscript>', page)
    [page_event] = events(event_type="document_list")
    assert page_event.details["sources_pending"] == sorted(fetches)
    view_id = response["X-Request-ID"]

    # Helse Bergen's fragment: answers nothing but "source-arrived"; its own list event.
    fragment = as_fastlege.get(fetches[_source_pk(BERGEN)], **HX)
    assert fragment.status_code == 200 and fragment["HX-Trigger"] == "source-arrived"
    bergen_event = events(event_type="document_list")[-1]
    assert bergen_event.source_orgnr == BERGEN and bergen_event.outcome == "granted"
    assert bergen_event.details["list_request_id"] == view_id
    assert bergen_event.details["source_answer"] == "answered" and bergen_event.details["listed"] == 5

    # The list refreshes itself: Helse Bergen's rows merged in, UNN still on its way.
    refreshed = as_fastlege.get(_refresh_url(page), **HX).content.decode()
    assert "bergen-epikrise" in refreshed and "Lokal epikrise" in refreshed
    assert "Henter fra UNN HF" in refreshed and "Henter fra Helse Bergen HF" not in refreshed
    assert "hx-swap-oob" not in refreshed  # UNN's fragment is on its way: not asked twice
    assert events(event_type="document_list")[-1].details["list_request_id"] == view_id

    # UNN hangs: its fragment answers at its own timeout (within the budget), as a failure.
    started = time.monotonic()
    as_fastlege.get(fetches[_source_pk(NORD)], **HX)
    assert time.monotonic() - started < BUDGET + 0.5
    nord_event = events(event_type="document_list")[-1]
    assert (nord_event.outcome, nord_event.reason_code) == ("not_found", "source_timeout")
    assert nord_event.details["list_request_id"] == view_id
    final = as_fastlege.get(_refresh_url(page), **HX).content.decode()
    assert "UNN HF svarer ikke akkurat nå" in final and "bergen-epikrise" in final
    assert 'data-testid="source-loading"' not in final


@pytest.mark.django_db
def test_what_a_source_did_not_show_is_counted_from_its_answer_and_named_by_source(
    remote_world: Any, as_fastlege: Client
) -> None:
    """Issue 13 item 4: the counts come from the answer already fetched (no request per
    document), per source, into the fragment's and the page's list events."""

    from tests.builders import lookup_and_attest

    handle = lookup_and_attest(as_fastlege)
    page = as_fastlege.get(f"/pasient/{handle}/").content.decode()
    as_fastlege.get(_fetch_urls(page)[_source_pk(BERGEN)], **HX)
    bergen_event = events(event_type="document_list")[-1]
    assert bergen_event.source_orgnr == BERGEN
    assert bergen_event.details["not_shown"] == {"blocked": 1}  # bergen-sperret (NORS)
    refreshed = as_fastlege.get(_refresh_url(page), **HX).content.decode()
    assert "Fra Helse Bergen HF: 1 dokument er sperret og vises ikke." in refreshed
    assert "bergen-sperret" not in refreshed
    page_event = events(event_type="document_list")[-1]
    assert page_event.details["not_shown"] == {"blocked": 1}
    assert page_event.details["not_shown_by_source"] == {str(_source_pk(BERGEN)): {"blocked": 1}}


@pytest.mark.django_db
def test_an_answer_is_kept_for_sorting_filtering_and_paging(
    remote_world: Any, as_fastlege: Client, bergen: FhirServer
) -> None:
    from tests.builders import lookup_and_attest

    handle = lookup_and_attest(as_fastlege)
    page = as_fastlege.get(f"/pasient/{handle}/").content.decode()
    for url in _fetch_urls(page).values():
        as_fastlege.get(url, **HX)
    searches = [r for r in bergen.requests_seen() if r["method"] == "POST"]
    assert len(searches) == 1

    by_title = as_fastlege.get(f"/pasient/{handle}/?sort=title&size=10", **HX).content.decode()
    rows = re.findall(r"Epikrise \((nord|bergen)-[a-z-]+\)", by_title)
    assert rows and "bergen-epikrise" in by_title and "nord-epikrise" in by_title
    second = as_fastlege.get(f"/pasient/{handle}/?sort=title&size=10&page=2", **HX)
    assert second.status_code == 200
    assert [r for r in bergen.requests_seen() if r["method"] == "POST"] == searches  # not asked again
    # Another fragment for the same source, with the answer kept, does not ask it either.
    as_fastlege.get(_fetch_urls(page)[_source_pk(BERGEN)], **HX)
    assert [r for r in bergen.requests_seen() if r["method"] == "POST"] == searches


@pytest.mark.django_db
def test_a_refused_search_shows_as_could_not_answer_and_is_logged_as_the_outcome(
    remote_world: Any, as_fastlege: Client, bergen: FhirServer, caplog: pytest.LogCaptureFixture
) -> None:
    from pjd_portal.documents.sources.breaker import breaker_for
    from tests.builders import lookup_and_attest

    bergen.set_behaviour(rejectParams=["_include"])
    handle = lookup_and_attest(as_fastlege)
    page = as_fastlege.get(f"/pasient/{handle}/").content.decode()
    with caplog.at_level(logging.INFO):
        for _ in range(3):  # three patients' worth would open the breaker if it counted
            as_fastlege.get(_fetch_urls(page)[_source_pk(BERGEN)], **HX)
            from django.core.cache import cache

            cache.clear()
    refused = events(event_type="document_list", source_orgnr=BERGEN)[-1]
    assert (refused.outcome, refused.reason_code) == ("not_found", "source_search_refused")
    assert breaker_for(bergen.base_url).state == CLOSED
    as_fastlege.get(_fetch_urls(page)[_source_pk(BERGEN)], **HX)
    shown = as_fastlege.get(_refresh_url(page), **HX).content.decode()
    assert "Helse Bergen HF kunne ikke svare på søket" in shown
    assert "Helse Bergen HF svarer ikke" not in shown
    assert LIST_PATIENT_ID not in caplog.text


@pytest.mark.django_db
def test_the_list_says_what_a_source_did_not_send(
    remote_world: Any, as_fastlege: Client, bergen: FhirServer, settings: Any
) -> None:
    from tests.builders import lookup_and_attest

    handle = lookup_and_attest(as_fastlege)
    settings.DOCUMENT_SOURCE_SEARCH_COUNT = 2
    bergen.set_behaviour(paging="none")  # a total of 6, two sent, no next page
    page = as_fastlege.get(f"/pasient/{handle}/?wait=1").content.decode()
    assert re.search(r'data-testid="source-incomplete"[^>]*data-missing="4"', page)
    assert "4 dokumenter fra Helse Bergen HF mangler i listen" in page
    assert "kilden oppga 6 treff, men sendte bare 2" in page

    from django.core.cache import cache

    cache.clear()
    bergen.set_behaviour(paging="hapi")
    settings.DOCUMENT_SOURCE_MAX_DOCUMENTS = 3
    page = as_fastlege.get(f"/pasient/{handle}/?wait=1").content.decode()
    assert "Viser de 3 nyeste dokumentene fra Helse Bergen HF." in page
    assert "Kilden har 6." in page


@pytest.mark.django_db
def test_without_javascript_the_page_waits_for_every_source(
    remote_world: Any, as_fastlege: Client, nord: FhirServer
) -> None:
    from tests.builders import lookup_and_attest

    handle = lookup_and_attest(as_fastlege)
    page = as_fastlege.get(f"/pasient/{handle}/?wait=1").content.decode()
    assert "bergen-epikrise" in page and "nord-epikrise" in page
    assert "<noscript>" not in page and 'data-testid="source-loading"' not in page
    # The document without a content type is listed; its HTML twin too (decided at the open).
    assert "bergen-uten-type" in page
    # Each source asked is logged as from its fragment, then the page; one request id.
    bergen_event, nord_event, page_event = events(event_type="document_list")
    assert (bergen_event.source_orgnr, nord_event.source_orgnr, page_event.source_orgnr) == (BERGEN, NORD, "")
    assert page_event.details["sources_pending"] == []
    view = {e.details["list_request_id"] for e in (bergen_event, nord_event, page_event)}
    assert len(view) == 1 and bergen_event.details["nhn_event_id"]


@pytest.mark.django_db
def test_a_refused_search_without_javascript_is_logged_per_source_too(
    remote_world: Any, as_fastlege: Client, bergen: FhirServer
) -> None:
    from tests.builders import lookup_and_attest

    bergen.set_behaviour(rejectParams=["_include"])
    handle = lookup_and_attest(as_fastlege)
    page = as_fastlege.get(f"/pasient/{handle}/?wait=1").content.decode()
    assert "Helse Bergen HF kunne ikke svare på søket" in page
    [refused] = events(event_type="document_list", source_orgnr=BERGEN)
    assert (refused.outcome, refused.reason_code) == ("not_found", "source_search_refused")


# Committed: the answer is kept from another thread, through the cache every process shares
# (the database cache here, which another connection sees only once written).
@pytest.mark.django_db(transaction=True)
def test_a_request_already_asking_a_source_is_waited_for_not_repeated(
    remote_world: Any, as_fastlege: Client, bergen: FhirServer
) -> None:
    """A reload, a second tab or a list shown again while a source answers: the fragment
    waits for the request already asking it, and the source is asked once."""

    import threading

    from pjd_portal.access.services import access_patient_by_handle
    from pjd_portal.clinic import remote
    from pjd_portal.documents.models import DocumentSource
    from tests.builders import lookup_and_attest

    handle = lookup_and_attest(as_fastlege)
    page = as_fastlege.get(f"/pasient/{handle}/").content.decode()
    request = as_fastlege.get(f"/pasient/{handle}/").wsgi_request
    access = access_patient_by_handle(caller=caller_of(request), handle=uuid.UUID(handle))
    source = DocumentSource.objects.select_related("organisation").get(organisation__orgnr=BERGEN)
    assert remote._claim(access, source.pk)  # as if another request were asking it now
    answer = remote.ask_sources(access, [source])[0]
    asked_before = len([r for r in bergen.requests_seen() if r["method"] == "POST"])
    threading.Timer(0.4, remote.keep, args=(access, answer)).start()

    started = time.monotonic()
    response = as_fastlege.get(_fetch_urls(page)[source.pk], **HX)
    assert response["HX-Trigger"] == "source-arrived"
    assert 0.3 < time.monotonic() - started < BUDGET
    assert len([r for r in bergen.requests_seen() if r["method"] == "POST"]) == asked_before
    assert not events(event_type="document_list", source_orgnr=BERGEN)  # it asked nobody
    refreshed = as_fastlege.get(_refresh_url(page), **HX).content.decode()
    assert "bergen-epikrise" in refreshed


@pytest.mark.django_db
def test_an_answer_whose_event_cannot_be_written_is_never_shown(
    remote_world: Any, as_fastlege: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pjd_portal.auditlog.services import AuditWriteFailed
    from pjd_portal.clinic import document_views as views
    from tests.builders import lookup_and_attest

    handle = lookup_and_attest(as_fastlege)
    page = as_fastlege.get(f"/pasient/{handle}/").content.decode()
    real = views.record_event_committed  # type: ignore[attr-defined]  # the name the view calls, patched below

    def failing(event: Any, **kwargs: Any) -> Any:
        if event.source_orgnr == BERGEN:
            raise AuditWriteFailed("test")
        return real(event, **kwargs)

    # The answers' recorder lives in clinic/listing.py (the MHD API shares it).
    from pjd_portal.clinic import listing

    monkeypatch.setattr(listing, "record_event_committed", failing)
    response = as_fastlege.get(_fetch_urls(page)[_source_pk(BERGEN)], **HX)
    assert response.status_code == 503
    monkeypatch.setattr(listing, "record_event_committed", real)
    shown = as_fastlege.get(_refresh_url(page), **HX).content.decode()
    assert "bergen-epikrise" not in shown and "Henter fra Helse Bergen HF" in shown
    # The claim was let go: the next fragment asks again (and this time it is logged).
    as_fastlege.get(_fetch_urls(shown)[_source_pk(BERGEN)], **HX)
    assert events(event_type="document_list", source_orgnr=BERGEN)


@pytest.mark.django_db
def test_a_source_the_clinician_may_not_list_is_denied_and_logged_as_such(
    remote_world: Any, as_fastlege: Client
) -> None:
    from pjd_portal.documents.models import DocumentSource
    from tests.builders import lookup_and_attest

    DocumentSource.objects.filter(organisation__orgnr=NORD).update(list_authorizations=["SP"])
    handle = lookup_and_attest(as_fastlege)
    page = as_fastlege.get(f"/pasient/{handle}/").content.decode()
    # Not this clinician's to see, not even pending, nor asked; only named, without a count,
    # as a source that does not show its list to this authorization (issue 13 item 4).
    assert "Henter fra UNN HF" not in page
    assert _source_pk(NORD) not in _fetch_urls(page)
    assert "nord-epikrise" not in page
    assert "UNN HF viser ikke dokumentlisten til helsepersonell med din autorisasjon." in page
    assert page.count("UNN HF") == 1
    denied = as_fastlege.get(f"/pasient/{handle}/kilde/{_source_pk(NORD)}/liste/", **HX)
    missing = as_fastlege.get(f"/pasient/{handle}/kilde/99999/liste/", **HX)
    assert denied.status_code == missing.status_code == 404
    reasons = [(e.outcome, e.reason_code) for e in events(event_type="access_denied")]
    assert reasons[-2:] == [("denied", "source_rule_list"), ("not_found", "unknown_source")]


@pytest.mark.django_db
def test_a_sources_fragment_obeys_the_policys_list_rule(
    remote_world: Any, as_fastlege: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fragment asks `policy.may_list_source` and does what it says: no source asked."""

    handle = lookup_and_attest(as_fastlege)
    monkeypatch.setattr(policy, "may_list_source", lambda *a, **k: policy.Decision(False, "source_rule_list"))
    response = as_fastlege.get(f"/pasient/{handle}/kilde/{_source_pk(BERGEN)}/liste/", **HX)
    assert response.status_code == 404
    assert [(e.outcome, e.reason_code) for e in events("access_denied")][-1:] == [
        ("denied", "source_rule_list")
    ]
    assert not events("document_list")


@pytest.mark.django_db
def test_a_list_refresh_that_is_now_refused_reloads_the_page(remote_world: Any, as_fastlege: Client) -> None:
    from pjd_portal.patients.models import PrivacyChoice, PrivacyChoiceKind
    from tests.builders import lookup_and_attest

    handle = lookup_and_attest(as_fastlege)
    page = as_fastlege.get(f"/pasient/{handle}/").content.decode()
    PrivacyChoice.objects.create(
        patient=remote_world.patient, kind=PrivacyChoiceKind.BLOCKED_CLINICIAN, blocked_hpr_number="910000011"
    )
    refreshed = as_fastlege.get(_refresh_url(page), **HX)
    assert refreshed["HX-Refresh"] == "true" and b"document-row" not in refreshed.content


# --- paging within the time budget, and next links that would carry the national id ---------


def test_paging_stops_at_the_budget_and_keeps_what_came(
    bergen: FhirServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pjd_portal.documents.sources import merge

    source = client(bergen, count=20)
    real = source.session.request
    asked: list[str] = []

    def slow(method: str, url: str, **kwargs: Any) -> requests.Response:
        asked.append(url)
        time.sleep(0.3)  # a source that answers, slowly, page after page
        return real(method, url, **kwargs)

    monkeypatch.setattr(source.session, "request", slow)
    found = merge.search_sources([source], PAGED_PATIENT, access=ACCESS, budget_seconds=2.0)
    assert found.failures == []  # it answered: not "svarer ikke"
    result = found.results[1]
    assert 0 < len(result.documents) < PAGED and result.incomplete == base.PAGING_TIMED_OUT
    assert result.missing == PAGED - result.received
    assert _titles(result) == ALL_PAGED[: len(result.documents)]
    pages = len(asked)
    time.sleep(0.5)
    assert len(asked) == pages  # and it asks for no more pages afterwards


def test_a_next_link_that_repeats_the_search_is_asked_by_post(monkeypatch: pytest.MonkeyPatch) -> None:
    """Some servers (not HAPI) build the next link by repeating the search in its query:
    following it by GET would put the national id into a URL (and a proxy's log)."""

    from tests.builders import document_reference

    system = "urn:oid:2.16.578.1.12.4.1.4.1"
    source = _offline()
    pages = []
    for n in range(2):
        entry = document_reference({"identifier": {"system": system, "value": PAGED_PATIENT}})
        entry["id"] = f"d{n}"
        link = [
            {
                "relation": "next",
                "url": f"DocumentReference?patient.identifier={system}%7C{PAGED_PATIENT}&_offset=1",
            }
        ]
        pages.append(
            {
                "resourceType": "Bundle",
                "type": "searchset",
                "total": 2,
                "entry": [{"resource": entry}],
                "link": link if n == 0 else [],
            }
        )
    made = _pages(monkeypatch, source, pages)
    result = source.search(PAGED_PATIENT, access=ACCESS)
    assert [d.document_id for d in result.documents] == ["d0", "d1"] and result.incomplete == ""
    assert [m["method"] for m in made] == ["POST", "POST"]
    assert made[1]["url"] == "http://127.0.0.1:9/fhir/R4/DocumentReference/_search"
    assert ("_offset", "1") in made[1]["data"]
    assert all(PAGED_PATIENT not in m["url"] for m in made)


@pytest.mark.parametrize(
    ("base_url", "link", "followed"),
    [
        ("http://127.0.0.1:8103", "/?_getpages=a", True),  # a source at the host's root
        ("http://127.0.0.1:8103/", "?_getpages=a", True),
        ("http://127.0.0.1:8103", "DocumentReference?_getpages=a", True),
        ("http://127.0.0.1:8103/fhir/R4", "{base}/..;/x", False),  # servlet path parameters
        ("http://127.0.0.1:8103/fhir/R4", "{base}/\\..\\..\\x", False),
        ("http://127.0.0.1:8103/fhir/R4", "{base}/%5c..%5c..", False),
        ("http://127.0.0.1:8103/fhir/R4", "{base}/%252e%252e/x", False),
        ("http://127.0.0.1:8103/fhir/R4", "http://[::1/fhir/R4?x", False),  # malformed: no crash
        ("http://127.0.0.1:8103/fhir/R4", "{base}/$binary-access-read?x=1", True),
    ],
)
def test_paths_that_a_server_reads_otherwise_are_not_followed(
    base_url: str, link: str, followed: bool
) -> None:
    source = _offline(base_url)
    assert (source._next_url(link.format(base=base_url.rstrip("/"))) is not None) is followed


@pytest.mark.parametrize(
    ("subject", "verdict"),
    [
        (
            {
                "identifier": {"system": "urn:oid:2.16.578.1.12.4.1.4.2", "value": "x"},
                "reference": "Patient/p1",
            },
            "kept",
        ),
        ({"identifier": {"system": "urn:oid:2.16.578.1.12.4.1.4.2", "value": "x"}}, "unverified"),
        ({"identifier": {"value": "x"}}, "unverified"),  # no system: cannot be checked
        ({"reference": "Patient/p3"}, "unverified"),  # included twice, with two national ids
        ({"reference": "http://[x/Patient/1"}, "unverified"),  # malformed: no crash
    ],
)
def test_a_subject_that_cannot_be_checked_is_counted_not_dropped(
    monkeypatch: pytest.MonkeyPatch, subject: dict[str, Any], verdict: str
) -> None:
    from tests.builders import document_reference, fake_source_answers

    system = "urn:oid:2.16.578.1.12.4.1.4.1"
    source = _offline()
    patients = [("p1", PAGED_PATIENT), ("p3", PAGED_PATIENT), ("p3", OTHER_PATIENT_ID)]
    bundle = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [{"resource": document_reference(subject), "search": {"mode": "match"}}]
        + [
            {
                "resource": {
                    "resourceType": "Patient",
                    "id": pid,
                    "identifier": [{"system": system, "value": value}],
                },
                "search": {"mode": "include"},
            }
            for pid, value in patients
        ],
    }
    fake_source_answers(monkeypatch, source, json.dumps(bundle).encode())
    result = source.search(PAGED_PATIENT, access=ACCESS)
    assert (len(result.documents), result.unverified) == ((1, 0) if verdict == "kept" else (0, 1))


def test_an_unverifiable_document_on_two_pages_is_counted_once(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.builders import document_reference

    source = _offline()
    unknown = document_reference({"reference": "Patient/nobody"})
    other = document_reference({"reference": "Patient/nobody"})
    other["id"] = "d2"
    pages = [
        {
            "resourceType": "Bundle",
            "type": "searchset",
            "entry": [{"resource": unknown}],
            "link": [{"relation": "next", "url": "?_getpages=a&_getpagesoffset=1"}],
        },
        {
            "resourceType": "Bundle",
            "type": "searchset",
            "entry": [{"resource": unknown}, {"resource": other}],
        },
    ]
    _pages(monkeypatch, source, pages)
    result = source.search(PAGED_PATIENT, access=ACCESS)
    assert result.unverified == 2 and result.received == 2


# --- the answers are shared by every instance (a real Redis, two processes) ------------------

REDIS_URL = os.environ.get("PJD_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
CHILD = """
import sys, types, uuid
import django
django.setup()
from pjd_portal.clinic import remote
from pjd_portal.documents.sources.base import SearchResult
handle = uuid.UUID(sys.argv[1])
access = types.SimpleNamespace(lookup=types.SimpleNamespace(handle=handle), attest=types.SimpleNamespace(pk=7))
assert remote._claim(access, 3)
print("claimed", flush=True)
sys.stdin.readline()
remote.keep(access, remote.SourceAnswer(3, "Helse Bergen HF", SearchResult([], total=0), nhn_event_id="e1"))
print("kept", flush=True)
"""


def _redis_cache(settings: Any, url: str = REDIS_URL) -> None:
    settings.CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": url,
            "KEY_PREFIX": "pjd",
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 1, "SOCKET_TIMEOUT": 1},
        }
    }


def test_an_answer_and_a_claim_in_one_process_are_seen_by_another(settings: Any) -> None:
    import subprocess
    import sys
    import types

    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
    except redis.RedisError:
        message = f"Redis is not reachable at {REDIS_URL} (.ci/run starts it)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    from pjd_portal.clinic import remote

    _redis_cache(settings)
    handle = uuid.uuid4()
    access: Any = types.SimpleNamespace(
        lookup=types.SimpleNamespace(handle=handle), attest=types.SimpleNamespace(pk=7)
    )
    env = {
        **os.environ,
        "PJD_CACHE_URL": REDIS_URL,
        "DJANGO_SETTINGS_MODULE": "pjd_portal.settings",
        "DEBUG": "true",
    }
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(handle)],
        cwd=Path(__file__).resolve().parent.parent,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None and child.stdin is not None
        assert child.stdout.readline().strip() == "claimed"
        assert not remote._claim(access, 3)  # the other process is asking this source
        assert remote.cached_answer(access, 3) is None
        child.stdin.write("go\n")
        child.stdin.flush()
        assert child.stdout.readline().strip() == "kept"
        answer = remote.cached_answer(access, 3)
        assert answer is not None and answer.nhn_event_id == "e1"  # kept there, read here
        assert remote._claim(access, 3)  # and its claim was let go
        remote.release(access, 3)
    finally:
        child.wait(timeout=10)
    assert child.returncode == 0


@pytest.mark.django_db
def test_a_cache_that_does_not_answer_makes_the_list_ask_its_sources_itself(
    remote_world: Any, as_fastlege: Client
) -> None:
    from django.test import override_settings

    from tests.builders import lookup_and_attest

    handle = lookup_and_attest(as_fastlege)
    nothing_listens = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": "redis://127.0.0.1:9/0",
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 1, "SOCKET_TIMEOUT": 1},
        }
    }
    with override_settings(CACHES=nothing_listens):
        response = as_fastlege.get(f"/pasient/{handle}/")
    page = response.content.decode()
    assert response.status_code == 200
    assert "bergen-epikrise" in page and "nord-epikrise" in page
    assert 'data-testid="source-loading"' not in page


# --- second review: what a healthy but slow source, and a half-broken cache, do -------------


def test_a_slow_search_does_not_stop_the_paging_of_a_healthy_source(
    bergen: FhirServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pjd_portal.documents.sources import merge

    source = client(bergen, count=100)
    real = source.session.request

    def fanning_out(method: str, url: str, **kwargs: Any) -> requests.Response:
        if method == "POST":
            time.sleep(1.6)  # the search fans out at the source; its pages are quick
        return real(method, url, **kwargs)

    monkeypatch.setattr(source.session, "request", fanning_out)
    # The first page took 1.6 s of a 4 s budget: that says nothing of how long a page takes.
    found = merge.search_sources([source], PAGED_PATIENT, access=ACCESS, budget_seconds=4.0)
    result = found.results[1]
    assert (len(result.documents), result.incomplete) == (PAGED, "")


def test_a_later_page_that_stalls_keeps_the_pages_before_it_within_the_budget(
    bergen: FhirServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pjd_portal.documents.sources import merge

    source = MhdSourceClient(
        source_id=1,
        name="Helse Bergen HF",
        base_url=bergen.base_url,
        token_provider=StaticTokenProvider(None),
        connect_timeout=CONNECT_TIMEOUT,
        read_timeout=5.0,  # production's ratio to the budget: a stalled page outlives it
        count=100,
    )
    real = source.session.request
    waits: list[float] = []

    def stalling(method: str, url: str, **kwargs: Any) -> requests.Response:
        if "_getpages=" in url:
            waits.append(kwargs["timeout"][1])
            time.sleep(kwargs["timeout"][1])  # no answer within the read timeout given
            raise requests.ReadTimeout("stalled")
        return real(method, url, **kwargs)

    monkeypatch.setattr(source.session, "request", stalling)
    started = time.monotonic()
    found = merge.search_sources([source], PAGED_PATIENT, access=ACCESS, budget_seconds=2.5)
    assert time.monotonic() - started < 2.5
    assert found.failures == []
    result = found.results[1]
    assert len(result.documents) == 100 and result.incomplete == base.PAGING_TIMED_OUT
    assert waits and sum(waits) < 2.5  # no wait (nor retry) past the deadline


def test_next_links_that_carry_the_id_on_search_or_base_paths_are_posted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tests.builders import document_reference

    system = "urn:oid:2.16.578.1.12.4.1.4.1"
    query = f"patient.identifier={system}%7C{PAGED_PATIENT}&_page=2"
    for link, posted_to in (
        (f"DocumentReference/_search?{query}", "/fhir/R4/DocumentReference/_search"),  # IBM FHIR
        (f"http://127.0.0.1:9/fhir/R4?{query}", "/fhir/R4/DocumentReference/_search"),  # on the base
    ):
        source = _offline()
        pages = []
        for n in range(2):
            entry = document_reference({"identifier": {"system": system, "value": PAGED_PATIENT}})
            entry["id"] = f"d{n}"
            links = [{"relation": "next", "url": link}] if n == 0 else []
            pages.append(
                {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": entry}], "link": links}
            )
        made = _pages(monkeypatch, source, pages)
        result = source.search(PAGED_PATIENT, access=ACCESS)
        assert len(result.documents) == 2, link
        assert (made[1]["method"], made[1]["url"]) == ("POST", f"http://127.0.0.1:9{posted_to}")


@pytest.mark.parametrize(
    "link",
    [
        "Binary/1/",
        "DocumentReference/?_page_token=abc",
        "Binary/urn:oid:1.2.3",
        "Binary/a%5Eb",
        "Binary/abc/_history/1",
    ],
)
def test_ordinary_fhir_urls_stay_on_the_source(link: str) -> None:
    assert _offline()._next_url(link) is not None


def test_the_total_is_the_latest_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    """Some servers estimate Bundle.total until the last page (Google's FHIR store)."""

    from tests.builders import document_reference

    system = "urn:oid:2.16.578.1.12.4.1.4.1"
    pages = []
    for n, total in ((0, 5), (1, 2)):
        entry = document_reference({"identifier": {"system": system, "value": PAGED_PATIENT}})
        entry["id"] = f"d{n}"
        links = [{"relation": "next", "url": "?_getpages=a&_getpagesoffset=1"}] if n == 0 else []
        pages.append(
            {
                "resourceType": "Bundle",
                "type": "searchset",
                "total": total,
                "entry": [{"resource": entry}],
                "link": links,
            }
        )
    source = _offline()
    _pages(monkeypatch, source, pages)
    result = source.search(PAGED_PATIENT, access=ACCESS)
    assert (result.total, result.incomplete, result.missing) == (2, "", 0)


@pytest.mark.django_db
def test_a_cache_that_reads_but_cannot_write_makes_the_list_ask_its_sources_itself(
    remote_world: Any, as_fastlege: Client, bergen: FhirServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from django.core.cache import cache

    from pjd_portal.clinic import remote
    from tests.builders import lookup_and_attest

    handle = lookup_and_attest(as_fastlege)

    def read_only(*args: Any, **kwargs: Any) -> None:
        raise ConnectionError("READONLY You can't write against a read only replica.")

    monkeypatch.setattr(cache, "set", read_only)
    page = as_fastlege.get(f"/pasient/{handle}/").content.decode()
    assert "bergen-epikrise" in page and 'data-testid="source-loading"' not in page
    assert len(events(event_type="document_list", source_orgnr=BERGEN)) == 1  # asked once, logged
    assert remote._cache_down_until > time.monotonic()  # and the cache is left alone a while


@pytest.mark.django_db
def test_a_fragment_for_a_patient_now_refused_reloads_the_page(
    remote_world: Any, as_fastlege: Client
) -> None:
    from pjd_portal.patients.models import PrivacyChoice, PrivacyChoiceKind
    from tests.builders import lookup_and_attest

    handle = lookup_and_attest(as_fastlege)
    page = as_fastlege.get(f"/pasient/{handle}/").content.decode()
    PrivacyChoice.objects.create(
        patient=remote_world.patient, kind=PrivacyChoiceKind.BLOCKED_CLINICIAN, blocked_hpr_number="910000011"
    )
    fragment = as_fastlege.get(_fetch_urls(page)[_source_pk(BERGEN)], **HX)
    assert fragment["HX-Refresh"] == "true"
    assert events(event_type="access_denied")[-1].reason_code == "clinician_blocked"
    assert not events(event_type="document_list", source_orgnr=BERGEN)  # the source was not asked


@pytest.mark.django_db
def test_a_request_that_dies_while_asking_leaves_a_warning_not_a_spinner(
    remote_world: Any, as_fastlege: Client, bergen: FhirServer, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another request claimed the source and never kept an answer (it died): the waiting
    fragment gives up at the budget, asks nobody, and the list then says the source did
    not answer instead of showing it as on its way again."""

    from pjd_portal.access.services import access_patient_by_handle
    from pjd_portal.clinic import remote
    from tests.builders import lookup_and_attest

    settings.DOCUMENT_SOURCE_SEARCH_BUDGET = 0.5
    handle = lookup_and_attest(as_fastlege)
    page = as_fastlege.get(f"/pasient/{handle}/").content.decode()
    access = access_patient_by_handle(
        caller=caller_of(as_fastlege.get(f"/pasient/{handle}/").wsgi_request), handle=uuid.UUID(handle)
    )
    # Claimed by a request that will never come back, and held past the budget.
    assert remote._claim(access, _source_pk(BERGEN))
    with monkeypatch.context() as patched:
        patched.setattr(remote, "_claim", lambda access, source_id: False)
        response = as_fastlege.get(_fetch_urls(page)[_source_pk(BERGEN)], **HX)
    assert response["HX-Trigger"] == "source-arrived"
    assert not [r for r in bergen.requests_seen() if r["method"] == "POST"]  # nobody asked it
    shown = as_fastlege.get(_refresh_url(page), **HX).content.decode()
    assert "Helse Bergen HF svarer ikke akkurat nå" in shown
    assert _source_pk(BERGEN) not in _fetch_urls(shown)  # no line left on its way
