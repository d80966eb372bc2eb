"""SMART on FHIR EHR launch against the real stand-in EHR: the dev identity provider's
launches and authorization (devidp/smart.mjs) and the test FHIR server as the EHR's FHIR
server (smart-configuration, Patient reads that need the token).

The portal runs in the Django test client; the provider is driven over HTTP as a browser
would (as tests/test_devidp_login.py does for the login). The clinician is logged in to
the portal already; at the provider they log in once more, as at the EHR's HelseID.
"""

from __future__ import annotations

import re
import socket
from html import unescape
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import pytest
import requests
from django.test import Client

from pjd_portal.auditlog import events as kinds
from pjd_portal.auditlog.models import AccessEvent
from pjd_portal.clinic import smart
from tests.builders import LIST_PATIENT_ID, World, login
from tests.conftest import DEVIDP_PORT, SMART_FHIR_BASE

pytestmark = pytest.mark.django_db(transaction=True)

IDP = f"http://127.0.0.1:{DEVIDP_PORT}"


@pytest.fixture
def portal(settings: Any, use_devidp: dict[str, Any], smart_ehr: Any, world: World) -> Client:
    """The portal with the EHR configured, the fastlege logged in."""

    server, _ = smart_ehr
    server.reset()
    settings.SMART_EHRS = {SMART_FHIR_BASE: {"name": "Test-EPJ", "client_id": "pjd-portal-smart"}}
    settings.SMART_TIMEOUT = 3.0
    return login(Client(), world.fastlege, world.gp_office)


def _launch(patient_id: str) -> str:
    answer = requests.post(f"{IDP}/ehr/launches", json={"patient": patient_id}, timeout=5)
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert body["iss"] == SMART_FHIR_BASE
    return str(body["launch"])


class Flow:
    """One browser's way through a launch; every URL it sees is kept."""

    def __init__(self, portal: Client, username: str = "fastlege") -> None:
        self.portal = portal
        self.username = username
        self.browser = requests.Session()
        self.urls: list[str] = []

    def start(self, launch: str, iss: str = SMART_FHIR_BASE) -> Any:
        self.urls.append(f"/smart/launch?iss={iss}&launch={launch}")
        return self.portal.get("/smart/launch", {"iss": iss, "launch": launch})

    def at_provider(self, location: str) -> str:
        """Through the provider's pages (its login page once): where it sends us back."""

        response = self.browser.get(location, allow_redirects=False, timeout=5)
        for _ in range(12):
            self.urls.append(response.url)
            if response.status_code in (302, 303):
                target = urljoin(response.url, response.headers["Location"])
                if target.startswith("http://testserver/"):
                    self.urls.append(target)
                    return target
                response = self.browser.get(target, allow_redirects=False, timeout=5)
                continue
            assert response.status_code == 200, response.text[:500]
            form = re.search(r'<form[^>]*method="post"[^>]*action="([^"]+)"', response.text)
            assert form and 'name="username"' in response.text, response.text[:500]
            response = self.browser.post(
                urljoin(response.url, unescape(form.group(1))),
                data={"username": self.username, "password": "test"},
                allow_redirects=False,
                timeout=5,
            )
        raise AssertionError("too many redirects")

    def back(self, url: str) -> Any:
        parts = urlsplit(url)
        assert parts.path == "/smart/callback/"
        response = self.portal.get(f"{parts.path}?{parts.query}")
        if response.status_code in (301, 302):
            self.urls.append(response["Location"])
        return response

    def run(self, launch: str) -> Any:
        started = self.start(launch)
        assert started.status_code == 302, started.content[:500]
        self.urls.append(started["Location"])
        return self.back(self.at_provider(started["Location"]))


def _refusals() -> list[tuple[str, dict[str, Any]]]:
    return [
        (e.reason_code, e.details)
        for e in AccessEvent.objects.filter(event_type=kinds.EPJ_LAUNCH_REFUSED.name).order_by("id")
    ]


def _assert_refused(response: Any, reason: str, status: int) -> None:
    assert response.status_code == status, response.content[:500]
    page = response.content.decode()
    assert f'data-reason="{reason}"' in page
    assert 'href="/"' in page  # a way back
    [(code, details)] = _refusals()
    assert code == reason
    assert details["channel"] == "smart"


def test_a_launch_lands_on_the_patient_card_of_the_ehr_patient(
    portal: Client, smart_ehr: Any, world: World
) -> None:
    server, ids = smart_ehr
    flow = Flow(portal)
    started = flow.start(_launch(ids["list"]))
    assert started.status_code == 302
    query = parse_qs(urlsplit(started["Location"]).query)
    assert started["Location"].startswith(f"{IDP}/auth?")
    assert query["client_id"] == ["pjd-portal-smart"]
    assert query["aud"] == [SMART_FHIR_BASE]
    assert query["code_challenge_method"] == ["S256"]
    assert {"launch", "launch/patient", "openid", "fhirUser", "patient/Patient.read"} <= set(
        query["scope"][0].split()
    )
    flow.urls.append(started["Location"])
    response = flow.back(flow.at_provider(started["Location"]))

    assert response.status_code == 302, response.content[:500]
    assert re.fullmatch(r"/pasient/[0-9a-f-]{36}/grunnlag/", response["Location"])
    card = portal.get(response["Location"])
    assert card.status_code == 200
    assert "Ingrid" in card.content.decode() and "Testesen" in card.content.decode()
    [lookup] = AccessEvent.objects.filter(event_type=kinds.PATIENT_LOOKUP.name)
    assert lookup.patient_id == world.patient.pk and lookup.outcome == "granted"
    assert lookup.actor_pid == world.fastlege.pid
    assert _refusals() == []
    # The Patient was read with the access token, by its FHIR id.
    [read] = [r for r in server.requests_seen() if r["path"].endswith(f"/Patient/{ids['list']}")]
    assert read["headers"]["authorization"].startswith("Bearer ")
    # No national id in any URL of the flow.
    for url in flow.urls:
        for national_id in (LIST_PATIENT_ID, world.fastlege.pid):
            assert national_id not in url, url


def test_a_d_number_is_read_too(portal: Client, smart_ehr: Any, world: World) -> None:
    _, ids = smart_ehr
    response = Flow(portal).run(_launch(ids["other"]))
    assert response.status_code == 302, response.content[:500]
    [lookup] = AccessEvent.objects.filter(event_type=kinds.PATIENT_LOOKUP.name)
    assert lookup.patient_id == world.other_patient.pk


def test_a_patient_the_portal_does_not_have_gets_the_lookup_answer(portal: Client, smart_ehr: Any) -> None:
    _, ids = smart_ehr
    response = Flow(portal).run(_launch(ids["stranger"]))
    assert response.status_code == 404
    assert 'data-testid="lookup-error"' in response.content.decode()
    [lookup] = AccessEvent.objects.filter(event_type=kinds.PATIENT_LOOKUP.name)
    assert lookup.outcome == "not_found"
    assert _refusals() == []


def test_a_patient_without_a_national_id(portal: Client, smart_ehr: Any) -> None:
    _, ids = smart_ehr
    response = Flow(portal).run(_launch(ids["anonymous"]))
    _assert_refused(response, smart.NO_NATIONAL_ID, 422)
    assert not AccessEvent.objects.filter(event_type=kinds.PATIENT_LOOKUP.name).exists()


def test_an_iss_not_configured_is_refused_without_contacting_it(portal: Client, smart_ehr: Any) -> None:
    server, _ = smart_ehr
    response = Flow(portal).start("some-launch", iss="http://127.0.0.1:9/fhir/R4")
    _assert_refused(response, smart.ISS_UNKNOWN, 403)
    assert _refusals()[0][1]["iss"] == "http://127.0.0.1:9/fhir/R4"


def test_launch_without_parameters(portal: Client) -> None:
    _assert_refused(portal.get("/smart/launch"), smart.INCOMPLETE, 400)


def test_an_ehr_that_does_not_answer(portal: Client, settings: Any) -> None:
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{free.getsockname()[1]}/fhir/R4"
    settings.SMART_EHRS = {dead: {"name": "Borte", "client_id": "pjd-portal-smart"}}
    response = Flow(portal).start("x", iss=dead)
    _assert_refused(response, smart.EHR_UNREACHABLE, 503)


def test_a_smart_configuration_for_another_authorization_server(portal: Client, settings: Any) -> None:
    settings.SMART_EHRS = {
        SMART_FHIR_BASE: {
            "name": "Test-EPJ",
            "client_id": "pjd-portal-smart",
            "issuer": "https://helseid.example",
        }
    }
    _assert_refused(Flow(portal).start("x"), smart.CONFIGURATION_INVALID, 502)


def test_an_unknown_launch_id_is_refused_by_the_ehr(portal: Client) -> None:
    response = Flow(portal).run("no-such-launch")
    _assert_refused(response, smart.AUTHORIZATION_REFUSED, 403)


def test_a_callback_with_a_state_the_portal_did_not_make(portal: Client) -> None:
    response = portal.get("/smart/callback/", {"state": "forged", "code": "x"})
    _assert_refused(response, smart.STATE_MISMATCH, 400)


def test_a_code_the_token_endpoint_refuses(portal: Client, smart_ehr: Any) -> None:
    _, ids = smart_ehr
    flow = Flow(portal)
    started = flow.start(_launch(ids["list"]))
    back = flow.at_provider(started["Location"])
    session = portal.session
    for entry in session[smart.SESSION_KEY].values():
        entry["verifier"] = "not-the-verifier-" + "x" * 40  # PKCE fails at the token endpoint
    session.save()
    _assert_refused(flow.back(back), smart.TOKEN_FAILED, 502)


def test_a_token_response_without_a_patient(portal: Client, smart_ehr: Any, monkeypatch: Any) -> None:
    _, ids = smart_ehr
    real_post = requests.post

    class WithoutPatient:
        def __init__(self, answer: requests.Response) -> None:
            self.status_code = answer.status_code
            self._body = {k: v for k, v in answer.json().items() if k != "patient"}

        def json(self) -> dict[str, Any]:
            return self._body

    def post(url: str, **kwargs: Any) -> Any:
        return WithoutPatient(real_post(url, **kwargs))

    flow = Flow(portal)
    started = flow.start(_launch(ids["list"]))
    back = flow.at_provider(started["Location"])
    monkeypatch.setattr(requests, "post", post)
    _assert_refused(flow.back(back), smart.NO_PATIENT, 502)


def test_another_person_logged_in_at_the_ehr(portal: Client, smart_ehr: Any) -> None:
    _, ids = smart_ehr
    response = Flow(portal, username="legevakt").run(_launch(ids["list"]))
    _assert_refused(response, smart.PERSON_MISMATCH, 403)
    assert not AccessEvent.objects.filter(event_type=kinds.PATIENT_LOOKUP.name).exists()


def test_the_patient_read_fails(portal: Client, smart_ehr: Any) -> None:
    server, ids = smart_ehr
    flow = Flow(portal)
    started = flow.start(_launch(ids["list"]))
    back = flow.at_provider(started["Location"])
    server.set_fault("error")  # the FHIR server answers 503 from now on
    _assert_refused(flow.back(back), smart.PATIENT_READ_FAILED, 502)


def test_the_ehr_fhir_server_wants_the_token(smart_ehr: Any) -> None:
    server, ids = smart_ehr
    server.reset()
    url = f"{server.base_url}/Patient/{ids['list']}"
    assert requests.get(url, timeout=5).status_code == 401
    assert requests.get(url, headers={"Authorization": "Bearer forged"}, timeout=5).status_code == 401
    config = requests.get(f"{server.base_url}/.well-known/smart-configuration", timeout=5).json()
    assert config["issuer"] == f"http://127.0.0.1:{DEVIDP_PORT}"
    assert "launch-ehr" in config["capabilities"] and config["code_challenge_methods_supported"] == ["S256"]
    assert config["token_endpoint_auth_methods_supported"] == ["private_key_jwt"]
