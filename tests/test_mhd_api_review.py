"""The MHD API's answers to a hostile review: each test states what the API must do where
the review found it did otherwise (docs/epj.md, "2. The MHD API")."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from pjd_portal.documents.sources import base as source_base
from pjd_portal.documents.sources.mhd import MhdSourceClient
from pjd_portal.epj_api import search
from tests.builders import LIST_PATIENT_ID, World, add_document, events, login, lookup_and_attest
from tests.fhirserver import FhirServer
from tests.mhd_api_tokens import CLIENT_ID
from tests.test_mhd_api import BASE, Epj, _assert_outcome, _json, _matches, epj  # noqa: F401
from tests.test_mhd_api_clients import bergen, remote_epj  # noqa: F401

pytestmark = pytest.mark.django_db

D_NUMBER_SYSTEM = "urn:oid:2.16.578.1.12.4.1.4.2"
H_NUMBER_SYSTEM = "urn:oid:2.16.578.1.12.4.1.4.3"
FNR_SYSTEM = "urn:oid:2.16.578.1.12.4.1.4.1"


def _remote_match(remote_epj: Epj) -> dict[str, Any]:  # noqa: F811
    return next(d for d in _matches(_json(remote_epj.search())) if "." in d["id"])


def _post_json(epj: Epj, body: str) -> Any:  # noqa: F811
    """A JSON body as written (the test client's dict would never repeat a member)."""

    token = epj.token()
    url = f"{BASE}/DocumentReference/_search"
    epj.call("GET", "metadata")
    proof = epj.key.proof("POST", url, access_token=token, nonce=epj.nonce)
    return epj.client.post(
        url, body, content_type="application/json", HTTP_AUTHORIZATION=f"DPoP {token}", HTTP_DPOP=proof
    )


# --- 1. the list event records what was answered ---------------------------------------


def test_an_id_search_logs_the_one_document_answered(epj: Epj, world: World) -> None:  # noqa: F811
    wanted = add_document(world, title="A", days_ago=1)
    for i in range(4):
        add_document(world, title=f"other {i}", days_ago=i + 2)
    bundle = _json(epj.search({"_id": str(wanted.document_id)}))
    assert [d["id"] for d in _matches(bundle)] == [str(wanted.document_id)]
    [listed] = events("document_list")
    assert listed.details["shown"] == 1
    assert listed.details["document_ids"] == [str(wanted.document_id)]
    assert listed.details["remote_document_ids"] == []
    assert listed.details["page"] == 1


def test_an_id_search_of_a_remote_document_logs_only_it(remote_epj: Epj, world: World) -> None:  # noqa: F811
    add_document(world, title="Lokal", days_ago=5)
    remote = _remote_match(remote_epj)
    one = _json(remote_epj.search({"_id": remote["id"]}))
    assert [d["id"] for d in _matches(one)] == [remote["id"]]
    page_event = events("document_list")[-1]
    assert page_event.details["shown"] == 1
    source_id, _, remote_id = remote["id"].partition(".")
    assert page_event.details["remote_document_ids"] == [f"{source_id}/{remote_id}"]
    assert page_event.details["document_ids"] == [remote_id]


def test_a_page_past_the_end_logs_nothing_shown(epj: Epj, world: World) -> None:  # noqa: F811
    for i in range(2):
        add_document(world, title=f"d{i}", days_ago=i + 1)
    past = search.cursor(search.Search(count=1), page=5, client_id=CLIENT_ID, national_id=LIST_PATIENT_ID)
    bundle = _json(epj.call("GET", f"DocumentReference?_cursor={past}"))
    assert _matches(bundle) == [] and bundle["total"] == 2
    [listed] = events("document_list")
    assert listed.details["shown"] == 0 and listed.details["document_ids"] == []
    assert listed.details["page"] == 5


# --- 2. a remote document that breaks off mid-stream -----------------------------------


def _breaking_stream(self: MhdSourceClient, response: Any) -> Any:
    response.close()
    yield b"%PDF-1."
    raise source_base.SourceError(source_base.UNREACHABLE)


def test_a_source_breaking_off_under_a_binary_resource_is_a_503_and_logged(
    remote_epj: Epj,  # noqa: F811
    world: World,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    remote = _remote_match(remote_epj)
    monkeypatch.setattr(MhdSourceClient, "_stream", _breaking_stream)
    response = remote_epj.call("GET", remote["content"][0]["attachment"]["url"])  # Accept fhir+json
    _assert_outcome(response, 503, "transient")
    opened = events("document_open")
    assert [(e.outcome, e.reason_code) for e in opened] == [
        ("granted", ""),
        ("not_found", f"source_{source_base.UNREACHABLE}"),
    ]


def test_a_source_breaking_off_while_streamed_ends_the_answer_and_is_logged(
    remote_epj: Epj,  # noqa: F811
    world: World,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    remote = _remote_match(remote_epj)
    monkeypatch.setattr(MhdSourceClient, "_stream", _breaking_stream)
    response = remote_epj.call("GET", remote["content"][0]["attachment"]["url"], accept="application/pdf")
    assert response.status_code == 200  # the answer had started: it can only end early
    assert b"".join(response.streaming_content) == b"%PDF-1."
    outcomes = [(e.outcome, e.reason_code) for e in events("document_open")]
    assert outcomes == [("granted", ""), ("not_found", f"source_{source_base.UNREACHABLE}")]


# --- 3. too large for a Binary resource --------------------------------------------------


def test_a_document_known_too_large_for_a_resource_is_refused_before_the_open(
    epj: Epj,  # noqa: F811
    world: World,
    settings: Any,
) -> None:
    doc = add_document(world)
    settings.MAX_PDF_BYTES = 10  # smaller than FAKE_PDF
    response = epj.call("GET", f"Binary/{doc.document_id}", accept="application/fhir+json")
    _assert_outcome(response, 422, "too-costly")
    # Not opened, nothing asked of the store; the refusal is in the log.
    assert [(e.outcome, e.reason_code) for e in events("document_open")] == [("invalid", "content_too_large")]


def test_a_document_found_too_large_once_read_is_logged_as_not_sent(
    remote_epj: Epj,  # noqa: F811
    world: World,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pjd_portal.clinic import opening

    remote = _remote_match(remote_epj)
    # The source did not say the size: only reading it shows it is too large.
    real = opening.remote_opening
    monkeypatch.setattr(
        opening,
        "remote_opening",
        lambda *a, **k: dataclasses.replace(real(*a, **k), size=None),
    )
    settings.MAX_PDF_BYTES = 10
    response = remote_epj.call("GET", remote["content"][0]["attachment"]["url"])
    _assert_outcome(response, 422, "too-costly")
    outcomes = [(e.outcome, e.reason_code) for e in events("document_open")]
    assert outcomes == [("granted", ""), ("invalid", "content_too_large")]


# --- 4. a body over Django's own limit ---------------------------------------------------


def test_a_body_over_djangos_upload_limit_is_a_413(epj: Epj, world: World) -> None:  # noqa: F811
    response = epj.search({"category": "A00-1," * 500_000})
    _assert_outcome(response, 413, "too-long")
    assert events("api_call_refused")[-1].reason_code == "bad_request_too-long"


def test_a_body_over_the_apis_limit_is_a_413(epj: Epj, world: World) -> None:  # noqa: F811
    response = epj.search({"category": "A00-1," * 4000})
    _assert_outcome(response, 413, "too-long")


# --- 7. a failing source on ITI-68 --------------------------------------------------------


def test_binary_of_a_failing_source_is_transient_and_logged_with_the_source_reason(
    remote_epj: Epj,  # noqa: F811
    world: World,
    bergen: FhirServer,  # noqa: F811
) -> None:
    remote = _remote_match(remote_epj)
    bergen.set_fault("error")
    response = remote_epj.call("GET", remote["content"][0]["attachment"]["url"], accept="application/pdf")
    _assert_outcome(response, 503, "transient")
    [denied] = events("access_denied")
    assert denied.reason_code.startswith("source_"), denied.reason_code
    assert events("document_open") == []


# --- 8. the attest's id in another accepted spelling --------------------------------------


SPACED = f"{LIST_PATIENT_ID[:6]} {LIST_PATIENT_ID[6:]}"


def test_paging_works_when_the_attest_spells_the_id_with_a_space(epj: Epj, world: World) -> None:  # noqa: F811
    for i in range(3):
        add_document(world, title=f"d{i}", days_ago=i + 1)
    first = epj.search({"_count": "1"}, token=epj.token([SPACED]))
    assert first.status_code == 200, first.content[:300]
    next_url = {link["relation"]: link["url"] for link in _json(first)["link"]}["next"]
    second = epj.call("GET", next_url, token=epj.token([SPACED]))
    assert second.status_code == 200, second.content[:300]
    assert [d["description"] for d in _matches(_json(second))] == ["d1"]


def test_patient_identifier_matches_the_attests_patient_in_another_spelling(
    epj: Epj,  # noqa: F811
    world: World,
) -> None:
    add_document(world)
    for asked, attested in ((LIST_PATIENT_ID, SPACED), (SPACED, LIST_PATIENT_ID)):
        response = epj.search({"patient.identifier": asked}, token=epj.token([attested]))
        assert response.status_code == 200, response.content[:300]


# --- 11. absolute fullUrls ------------------------------------------------------------------


def test_bundle_full_urls_are_absolute(epj: Epj, world: World) -> None:  # noqa: F811
    add_document(world)
    bundle = _json(epj.search({"_include": "DocumentReference:subject"}))
    urls = {e["search"]["mode"]: e["fullUrl"] for e in bundle["entry"]}
    document = _matches(bundle)[0]
    patient = next(e["resource"] for e in bundle["entry"] if e["search"]["mode"] == "include")
    assert urls["match"] == f"{BASE}/DocumentReference/{document['id']}"
    assert urls["include"] == f"{BASE}/Patient/{patient['id']}"


# --- 12. a JSON member named twice ------------------------------------------------------------


def test_a_json_body_naming_a_parameter_twice_is_refused(epj: Epj, world: World) -> None:  # noqa: F811
    add_document(world)
    response = _post_json(epj, '{"_count": "1", "_count": "100"}')
    _assert_outcome(response, 400, "structure")
    assert events("document_list") == []
    assert _post_json(epj, json.dumps({"_count": "1"})).status_code == 200


# --- 13. D-nummer and H-nummer ----------------------------------------------------------------


@pytest.mark.parametrize("system", [FNR_SYSTEM, D_NUMBER_SYSTEM, H_NUMBER_SYSTEM])
def test_patient_identifier_takes_every_national_id_system(
    epj: Epj,  # noqa: F811
    world: World,
    system: str,
) -> None:
    add_document(world)
    response = epj.search({"patient.identifier": f"{system}|{LIST_PATIENT_ID}"})
    assert response.status_code == 200, response.content[:300]
    other = epj.search({"patient.identifier": f"urn:oid:2.16.578.1.12.4.1.4.4|{LIST_PATIENT_ID}"})
    _assert_outcome(other, 400, "value")


@pytest.mark.parametrize(
    ("kind", "system"),
    [("synthetic", FNR_SYSTEM), ("fnr", FNR_SYSTEM), ("dnr", D_NUMBER_SYSTEM), ("hnr", H_NUMBER_SYSTEM)],
)
def test_the_subject_is_written_in_the_system_of_the_patients_id(
    epj: Epj,  # noqa: F811
    world: World,
    kind: str,
    system: str,
) -> None:
    world.patient.national_id_kind = kind
    world.patient.save(update_fields=["national_id_kind"])
    add_document(world)
    bundle = _json(epj.search({"_include": "DocumentReference:subject"}))
    [document] = _matches(bundle)
    assert document["subject"]["identifier"] == {"system": system, "value": LIST_PATIENT_ID}
    patient = next(e["resource"] for e in bundle["entry"] if e["search"]["mode"] == "include")
    assert patient["identifier"] == [{"system": system, "value": LIST_PATIENT_ID}]


# --- 14. HEAD is no retrieve ---------------------------------------------------------------------


def test_head_of_binary_is_a_405_and_no_open(epj: Epj, world: World) -> None:  # noqa: F811
    doc = add_document(world)
    epj.call("GET", "metadata")
    token = epj.token()
    url = f"{BASE}/Binary/{doc.document_id}"
    proof = epj.key.proof("HEAD", url, access_token=token, nonce=epj.nonce)
    response = epj.client.head(url, HTTP_AUTHORIZATION=f"DPoP {token}", HTTP_DPOP=proof)
    assert response.status_code == 405
    assert response["Allow"] == "GET"
    assert events("document_open") == [] and events("access_denied") == []


def test_the_portals_own_open_of_a_remote_pdf_that_breaks_off_is_logged(
    remote_epj: Epj,  # noqa: F811
    world: World,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The page's open streams as the API's does: a source that breaks off mid-document
    ends the answer early, and the second event says so."""

    source_id, remote_id = _remote_match(remote_epj)["id"].split(".", 1)
    clinician = login(Client(), world.fastlege, world.gp_office)
    handle = lookup_and_attest(clinician)
    first = b"%PDF-1.4\n" + b"0" * 200_000  # past what the page reads before it answers

    def late_break(self: MhdSourceClient, response: Any) -> Any:
        response.close()
        yield first
        raise source_base.SourceError(source_base.UNREACHABLE)

    monkeypatch.setattr(MhdSourceClient, "_stream", late_break)
    response = clinician.get(reverse("documents:open_remote", args=[handle, int(source_id), remote_id]))
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == first  # type: ignore[attr-defined]
    # (The API's search above opened nothing: every document_open is the page's.)
    assert [(e.outcome, e.reason_code) for e in events("document_open")] == [
        ("granted", ""),
        ("not_found", f"source_{source_base.UNREACHABLE}"),
    ]
