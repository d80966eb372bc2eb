"""The dev identity provider as HelseID is for an EPJ (docs/epj.md): DPoP-bound JWT access
tokens for the portal's API carrying the attest, and the test EPJ page's launch into the
portal, tried against a stand-in for the portal's `POST /api/launch`."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import jwt
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import rsa

from pjd_portal.accounts.keys import ensure_client_key, key_id
from tests.conftest import ROOT, _wait_for
from tests.epj_tokens import (
    API_AUDIENCE,
    API_SCOPE,
    ATTEST_TYPE,
    EPJ_CLIENT_ID,
    JWT_BEARER,
    attest_for,
    dpop_key,
    dpop_proof,
    epj_client_assertion,
    epj_token,
    epj_token_response,
    jwk_thumbprint,
)

PATIENT = "13116900216"
OTHER_PATIENT = "12119000465"
EPJ_DATA = json.loads((ROOT / "devidp" / "epj-data.json").read_text(encoding="utf-8"))
USERS = json.loads((ROOT / "devidp" / "users.json").read_text(encoding="utf-8"))["users"]


def _verified(devidp: dict[str, Any], token: str) -> dict[str, Any]:
    """The token's claims, verified as the portal verifies them (signature, typ, iss, aud)."""

    header = jwt.get_unverified_header(token)
    assert header["typ"] == "at+jwt" and header["alg"] == "RS256"
    key = jwt.PyJWKClient(devidp["config"]["jwks_uri"]).get_signing_key_from_jwt(token)
    claims: dict[str, Any] = jwt.decode(
        token,
        key,
        algorithms=["RS256"],
        audience=API_AUDIENCE,
        issuer=devidp["config"]["issuer"],
        options={"require": ["exp", "iat", "nbf", "iss", "aud"]},
    )
    return claims


def _error(response: requests.Response) -> str:
    error: str = response.json()["error"]
    return error


# --- the token -----------------------------------------------------------------------


def test_the_epj_gets_a_dpop_bound_jwt_with_the_attest(devidp: dict[str, Any]) -> None:
    private, public = dpop_key()
    attest = attest_for("fastlege", [PATIENT], reason="Kontroll etter innleggelse")
    response = epj_token_response(devidp, attest, private, public)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "DPoP" and body["expires_in"] == 300
    assert body["scope"] == API_SCOPE

    claims = _verified(devidp, body["access_token"])
    assert claims["aud"] == API_AUDIENCE
    assert claims["scope"] == API_SCOPE
    assert claims["client_id"] == EPJ_CLIENT_ID
    assert claims["cnf"] == {"jkt": jwk_thumbprint(public)}
    assert claims["authorization_details"] == [attest]
    assert claims["exp"] - claims["iat"] == 300 and claims["nbf"] == claims["iat"]
    assert claims["helseid://claims/client/claims/orgnr_parent"] == USERS["fastlege"]["orgnr_parent"]


def test_the_resource_may_be_left_out_and_defaults_to_the_api(devidp: dict[str, Any]) -> None:
    private, public = dpop_key()
    response = epj_token_response(devidp, attest_for("legevakt", [PATIENT]), private, public, resource=None)
    assert response.status_code == 200, response.text
    assert _verified(devidp, response.json()["access_token"])["aud"] == API_AUDIENCE


def test_another_resource_is_refused(devidp: dict[str, Any]) -> None:
    private, public = dpop_key()
    response = epj_token_response(
        devidp, attest_for("fastlege", [PATIENT]), private, public, resource="urn:other"
    )
    assert response.status_code == 400 and _error(response) == "invalid_target"


def test_without_dpop_there_is_no_token(devidp: dict[str, Any]) -> None:
    """The EPJ client is registered with dpop_bound_access_tokens: oidc-provider answers
    400 invalid_grant, never a bearer token."""

    response = epj_token_response(devidp, attest_for("fastlege", [PATIENT]), None, None)
    assert response.status_code == 400 and _error(response) == "invalid_grant"
    assert "access_token" not in response.json()


def test_a_replayed_dpop_proof_is_refused(devidp: dict[str, Any]) -> None:
    private, public = dpop_key()
    endpoint = devidp["config"]["token_endpoint"]
    proof = dpop_proof(private, public, "POST", endpoint)
    key = json.loads(Path(devidp["epj_key"]).read_text(encoding="utf-8"))
    answers = []
    for _ in range(2):
        data = {
            "grant_type": "client_credentials",
            "client_id": EPJ_CLIENT_ID,
            "client_assertion_type": JWT_BEARER,
            "client_assertion": epj_client_assertion(key, EPJ_CLIENT_ID, endpoint),
            "resource": API_AUDIENCE,
            "scope": API_SCOPE,
            "authorization_details": json.dumps([attest_for("fastlege", [PATIENT])]),
        }
        answers.append(requests.post(endpoint, data=data, headers={"DPoP": proof}, timeout=10))
    assert answers[0].status_code == 200
    assert answers[1].status_code == 400 and "access_token" not in answers[1].json()


def test_a_client_assertion_signed_with_another_key_is_refused(devidp: dict[str, Any]) -> None:
    real = json.loads(Path(devidp["epj_key"]).read_text(encoding="utf-8"))
    # Another key under the EPJ's kid: the signature cannot verify.
    forged = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(rsa.generate_private_key(65537, 2048)))
    forged.update(kid=real["kid"], alg=real["alg"])
    private, public = dpop_key()
    response = epj_token_response(devidp, attest_for("fastlege", [PATIENT]), private, public, key_jwk=forged)
    assert response.status_code == 401 and _error(response) == "invalid_client"


def test_an_attest_of_another_type_is_refused(devidp: dict[str, Any]) -> None:
    private, public = dpop_key()
    attest = {**attest_for("fastlege", [PATIENT]), "type": "urn:example:other"}
    response = epj_token_response(devidp, attest, private, public)
    assert response.status_code == 400 and _error(response) == "invalid_authorization_details"


@pytest.mark.parametrize(
    "path",
    [
        ("practitioner", "identifier", "id"),
        ("practitioner", "legal_entity", "id"),
        ("practitioner", "point_of_care", "id"),
        ("care_relationship", "purpose_of_use", "code"),
    ],
)
@pytest.mark.parametrize("how", ["missing", "empty"])
def test_an_attest_without_a_required_field_is_refused(
    devidp: dict[str, Any], path: tuple[str, str, str], how: str
) -> None:
    attest = attest_for("fastlege", [PATIENT])
    holder = attest[path[0]][path[1]]
    if how == "missing":
        del holder[path[2]]
    else:
        holder[path[2]] = ""
    private, public = dpop_key()
    response = epj_token_response(devidp, attest, private, public)
    assert response.status_code == 400 and _error(response) == "invalid_authorization_details"
    assert ".".join(path) in response.json()["error_description"]


@pytest.mark.parametrize("patients", [[], [PATIENT, OTHER_PATIENT]])
def test_the_number_of_patients_is_left_to_the_portal(devidp: dict[str, Any], patients: list[str]) -> None:
    """HelseID does not count the patients; the portal refuses zero or two (attest_patient_count)."""

    attest = attest_for("fastlege", patients)
    private, public = dpop_key()
    claims = _verified(devidp, epj_token(devidp, attest, private, public))
    assert [p["identifier"]["id"] for p in claims["authorization_details"][0]["patients"]] == patients


def test_the_portals_own_client_may_not_ask_for_the_attest(devidp: dict[str, Any]) -> None:
    pem = Path(devidp["client_key"]).read_bytes()
    endpoint = devidp["config"]["token_endpoint"]
    now = int(time.time())
    claims = {
        "iss": "pjd-portal",
        "sub": "pjd-portal",
        "aud": endpoint,
        "jti": os.urandom(8).hex(),
        "iat": now,
        "exp": now + 60,
    }
    assertion = jwt.encode(claims, pem, algorithm="RS256", headers={"kid": key_id(pem)})
    response = requests.post(
        endpoint,
        data={
            "grant_type": "client_credentials",
            "client_id": "pjd-portal",
            "client_assertion_type": JWT_BEARER,
            "client_assertion": assertion,
            "resource": API_AUDIENCE,
            "authorization_details": json.dumps([attest_for("fastlege", [PATIENT])]),
        },
        timeout=10,
    )
    assert response.status_code == 400 and _error(response) == "invalid_authorization_details"


def test_the_epj_key_file_is_a_private_jwk_readable_only_by_its_owner(devidp: dict[str, Any]) -> None:
    path = Path(devidp["epj_key"])
    key = json.loads(path.read_text(encoding="utf-8"))
    assert key["kty"] in {"RSA", "EC"} and key["d"] and key["kid"] and key["alg"]
    assert path.stat().st_mode & 0o077 == 0


# --- the test EPJ page ---------------------------------------------------------------


class _Page(HTMLParser):
    """Forms, labels and controls of a page, as a user (or a screen reader) meets them."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict[str, Any]] = []
        self.label_for: set[str] = set()
        self.controls: list[dict[str, str]] = []
        self.options: dict[str, list[str]] = {}
        self._select: str | None = None
        self.html_lang: str | None = None
        self.headings = 0
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "html":
            self.html_lang = a.get("lang")
        elif tag in {"h1", "h2"}:
            self.headings += 1
        elif tag == "form":
            self.forms.append({**a, "fields": {}})
        elif tag == "label" and a.get("for"):
            self.label_for.add(a["for"])
        elif tag in {"input", "select"}:
            self.controls.append(a)
            if self.forms and a.get("name"):
                self.forms[-1]["fields"][a["name"]] = a.get("value", "")
            if tag == "select":
                self._select = a.get("name")
                self.options[a.get("name", "")] = []
        elif tag == "option" and self._select is not None:
            self.options[self._select].append(a.get("value", ""))
        elif tag == "script":
            self._in_script = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "select":
            self._select = None
        elif tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.scripts.append(data)


def _parse(text: str) -> _Page:
    page = _Page()
    page.feed(text)
    return page


def test_the_epj_page_offers_clinicians_patients_and_purposes(devidp: dict[str, Any]) -> None:
    response = requests.get(f"{devidp['config']['issuer']}/epj", timeout=5)
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("text/html")
    page = _parse(response.text)
    assert page.html_lang == "nb" and page.headings >= 2
    assert "Åpne i PJD" in response.text
    (form,) = page.forms
    assert form["method"] == "post" and form["action"] == "/epj/launch"
    # Every visible control has its label.
    for control in page.controls:
        if control.get("type") != "hidden":
            assert control["id"] in page.label_for, control
    assert set(page.options["user"]) == {name for name, u in USERS.items() if u["hpr"]}
    assert page.options["patient"] == [p["id"] for p in EPJ_DATA["patients"]]
    assert page.options["purpose"] == ["TREAT", "ETREAT", "BTG"]
    assert page.options["scenario"] == ["one", "none", "two"]
    assert "patient_other" in form["fields"]


def test_the_epj_pages_patients_are_the_demo_patients_in_the_readme() -> None:
    """The README's table is kept true to seed_demo by tests/test_seed_demo.py."""

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = re.findall(r"^\| `(\d{11})` \| .+? \|$", readme, flags=re.M)
    assert [p["id"] for p in EPJ_DATA["patients"]] == table


def test_a_launch_the_portal_cannot_be_reached_for_is_a_clear_error_page(tmp_path_factory: Any) -> None:
    # Nothing listens on that port: the portal cannot be reached.
    with _devidp_launching_into(tmp_path_factory, f"http://127.0.0.1:{_free_port()}") as issuer:
        response = requests.post(
            f"{issuer}/epj/launch",
            data={"user": "fastlege", "patient": PATIENT, "purpose": "TREAT"},
            timeout=30,
        )
    assert response.status_code == 502
    assert 'role="alert"' in response.text and "Fikk ikke kontakt med" in response.text
    assert PATIENT not in response.text


def test_a_launch_for_a_user_without_hpr_number_is_refused(devidp: dict[str, Any]) -> None:
    response = requests.post(
        f"{devidp['config']['issuer']}/epj/launch",
        data={"user": "revisor", "patient": PATIENT, "purpose": "TREAT"},
        timeout=10,
    )
    assert response.status_code == 400 and "HPR-nummer" in response.text


# --- the launch against a stand-in for the portal's POST /api/launch -------------------

START_CODE = "c" * 43


class _PortalStub:
    """POST /api/launch as docs/epj.md describes it: a nonce challenge first, then the
    token and proof checked, then 201 with a code (or the answer `refuse` says)."""

    def __init__(self) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.jwks_uri = ""
        self.issuer = ""
        self.nonce = base64.urlsafe_b64encode(os.urandom(16)).rstrip(b"=").decode()
        self.requests: list[dict[str, Any]] = []
        self.seen_jti: set[str] = set()
        self.refuse: tuple[int, dict[str, Any]] | None = None
        self.failures: list[str] = []

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0"))).decode()
                status, headers, answer = stub.answer(self.path, dict(self.headers.items()), body)
                data = json.dumps(answer).encode()
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler

    def answer(
        self, path: str, headers: dict[str, str], body: str
    ) -> tuple[int, dict[str, str], dict[str, Any]]:
        record: dict[str, Any] = {"path": path, "headers": headers, "form": parse_qs(body)}
        self.requests.append(record)
        try:
            proof = headers["DPoP"]
            proof_header = jwt.get_unverified_header(proof)
            claims = jwt.decode(proof, jwt.PyJWK(proof_header["jwk"]), algorithms=["ES256", "RS256", "PS256"])
            record["proof"] = {"header": proof_header, "claims": claims}
            if claims.get("nonce") != self.nonce:
                return 401, {"WWW-Authenticate": 'DPoP error="use_dpop_nonce"', "DPoP-Nonce": self.nonce}, {}
            self.check(path, headers, proof_header, claims, record)
        except (AssertionError, KeyError, jwt.PyJWTError) as exc:
            self.failures.append(repr(exc))
            return (
                401,
                {"WWW-Authenticate": 'DPoP error="invalid_token"'},
                {"resourceType": "OperationOutcome"},
            )
        if self.refuse:
            return self.refuse[0], {}, self.refuse[1]
        return 201, {}, {"code": START_CODE, "expires_in": 60, "start_url": f"{self.base}/start/"}

    def check(
        self,
        path: str,
        headers: dict[str, str],
        proof_header: dict[str, Any],
        claims: dict[str, Any],
        record: dict[str, Any],
    ) -> None:
        assert path == "/api/launch"
        assert proof_header["typ"] == "dpop+jwt"
        scheme, _, token = headers["Authorization"].partition(" ")
        assert scheme == "DPoP"
        key = jwt.PyJWKClient(self.jwks_uri).get_signing_key_from_jwt(token)
        assert jwt.get_unverified_header(token)["typ"] == "at+jwt"
        access = jwt.decode(token, key, algorithms=["RS256"], audience=API_AUDIENCE, issuer=self.issuer)
        record["access"] = access
        assert API_SCOPE in access["scope"].split()
        assert access["cnf"]["jkt"] == jwk_thumbprint(proof_header["jwk"])
        assert claims["htm"] == "POST" and claims["htu"] == f"{self.base}/api/launch"
        assert (
            claims["ath"]
            == base64.urlsafe_b64encode(hashlib.sha256(token.encode()).digest()).rstrip(b"=").decode()
        )
        assert abs(time.time() - claims["iat"]) < 60
        assert claims["jti"] not in self.seen_jti
        self.seen_jti.add(claims["jti"])
        form = record["form"]
        assert form["ehr_code_challenge_method"] == ["S256"]
        assert re.fullmatch(r"[A-Za-z0-9_-]{43}", form["ehr_code_challenge"][0])


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def portal_stub() -> Iterator[_PortalStub]:
    stub = _PortalStub()
    thread = threading.Thread(target=stub.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield stub
    finally:
        stub.server.shutdown()
        stub.server.server_close()


@contextlib.contextmanager
def _devidp_launching_into(tmp_path_factory: Any, portal_base: str) -> Iterator[str]:
    """A provider of its own whose test EPJ page launches into `portal_base`; its issuer."""

    node = shutil.which("node")
    assert node
    folder = tmp_path_factory.mktemp("epj-devidp")
    ensure_client_key(folder / "client-key.pem", folder / "client-jwks.json")
    port = _free_port()
    env = {
        **os.environ,
        "IDP_PORT": str(port),
        "RP_BASES": "http://testserver",
        "IDP_PORTAL_BASE": portal_base,
        "IDP_CLIENT_JWKS": str(folder / "client-jwks.json"),
        "IDP_SIGNING_KEY_FILE": str(folder / "signing-key.json"),
        "IDP_EPJ_KEY_FILE": str(folder / "epj-key.json"),
    }
    with (folder / "devidp.log").open("wb") as log:
        proc = subprocess.Popen(
            [node, "server.mjs"], cwd=ROOT / "devidp", env=env, stdout=log, stderr=subprocess.STDOUT
        )
        issuer = f"http://127.0.0.1:{port}"
        try:
            _wait_for(f"{issuer}/.well-known/openid-configuration")
            yield issuer
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.fixture(scope="module")
def epj_devidp(tmp_path_factory: Any, portal_stub: _PortalStub) -> Iterator[dict[str, Any]]:
    """A provider of its own whose test EPJ page launches into the stub (IDP_PORTAL_BASE);
    the session's provider launches into the live server."""

    with _devidp_launching_into(tmp_path_factory, portal_stub.base) as issuer:
        portal_stub.issuer = issuer
        portal_stub.jwks_uri = f"{issuer}/jwks"
        yield {"issuer": issuer}


def _launch(epj_devidp: dict[str, Any], stub: _PortalStub, **form: str) -> requests.Response:
    stub.requests.clear()
    stub.failures.clear()
    data = {"user": "fastlege", "patient": PATIENT, "purpose": "TREAT", **form}
    return requests.post(f"{epj_devidp['issuer']}/epj/launch", data=data, timeout=30)


def test_the_launch_answers_the_browser_with_a_form_that_posts_code_and_verifier(
    epj_devidp: dict[str, Any], portal_stub: _PortalStub
) -> None:
    portal_stub.refuse = None
    response = _launch(epj_devidp, portal_stub, reason="Time hos fastlegen")
    assert response.status_code == 200, response.text
    assert portal_stub.failures == []
    # The nonce challenge, then the call with the nonce: two calls, the second accepted.
    first, second = portal_stub.requests
    assert "nonce" not in first["proof"]["claims"] and second["proof"]["claims"]["nonce"] == portal_stub.nonce

    page = _parse(response.text)
    (form,) = page.forms
    assert form["method"] == "post" and form["action"] == f"{portal_stub.base}/start/"
    assert form["fields"]["code"] == START_CODE
    verifier = form["fields"]["code_verifier"]
    assert 43 <= len(verifier) <= 128
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    assert second["form"]["ehr_code_challenge"] == [challenge]
    assert any(".submit()" in script for script in page.scripts)
    assert 'type="submit"' in response.text  # for a browser without JavaScript

    # The attest is the chosen clinician's, for the chosen patient and purpose.
    (attest,) = second["access"]["authorization_details"]
    assert attest["type"] == ATTEST_TYPE
    assert attest["practitioner"]["identifier"]["id"] == USERS["fastlege"]["pid"]
    assert attest["practitioner"]["hpr_nr"]["id"] == USERS["fastlege"]["hpr"]
    assert attest["practitioner"]["authorization"]["code"] == "LE"
    assert attest["practitioner"]["legal_entity"]["id"] == USERS["fastlege"]["orgnr_parent"]
    assert attest["practitioner"]["point_of_care"]["id"] == USERS["fastlege"]["orgnr_child"]
    relation = attest["care_relationship"]
    assert relation["purpose_of_use"]["code"] == "TREAT"
    assert relation["purpose_of_use_details"]["code"] == "BEHANDLER"
    assert (
        relation["decision_ref"]["id"].startswith("test-epj-")
        and relation["decision_ref"]["user_selected"] is True
    )
    assert relation["decision_ref"]["reason"] == "Time hos fastlegen"
    assert [p["identifier"]["id"] for p in attest["patients"]] == [PATIENT]

    # No national id in any URL: not the proofs' htu, not the request lines, not the form's target.
    urls = [
        form["action"],
        *(r["path"] for r in portal_stub.requests),
        *(r["proof"]["claims"]["htu"] for r in portal_stub.requests),
    ]
    assert all(PATIENT not in url and USERS["fastlege"]["pid"] not in url for url in urls)


def test_the_nurse_is_attested_as_a_nurse_with_her_purpose_and_reason(
    epj_devidp: dict[str, Any], portal_stub: _PortalStub
) -> None:
    portal_stub.refuse = None
    reason = "Akutt forverring, fastlege utilgjengelig"
    response = _launch(
        epj_devidp, portal_stub, user="sykepleier", purpose="BTG", reason=reason, patient_other=OTHER_PATIENT
    )
    assert response.status_code == 200, response.text
    (attest,) = portal_stub.requests[-1]["access"]["authorization_details"]
    assert attest["practitioner"]["authorization"]["code"] == "SP"
    assert attest["practitioner"]["legal_entity"]["id"] == USERS["sykepleier"]["orgnr_parent"]
    assert attest["care_relationship"]["purpose_of_use"]["code"] == "BTG"
    assert attest["care_relationship"]["decision_ref"]["reason"] == reason
    # The free text field wins over the list.
    assert [p["identifier"]["id"] for p in attest["patients"]] == [OTHER_PATIENT]


@pytest.mark.parametrize(("scenario", "count"), [("none", 0), ("two", 2)])
def test_the_scenario_knob_sends_an_attest_the_portal_must_refuse(
    epj_devidp: dict[str, Any], portal_stub: _PortalStub, scenario: str, count: int
) -> None:
    portal_stub.refuse = None
    response = _launch(epj_devidp, portal_stub, scenario=scenario)
    assert response.status_code == 200, response.text
    (attest,) = portal_stub.requests[-1]["access"]["authorization_details"]
    assert len(attest["patients"]) == count


def test_a_refusal_by_the_portal_shows_its_diagnostics(
    epj_devidp: dict[str, Any], portal_stub: _PortalStub
) -> None:
    outcome = {
        "resourceType": "OperationOutcome",
        "issue": [
            {
                "severity": "error",
                "code": "forbidden",
                "diagnostics": "Attesten må gjelde nøyaktig én pasient.",
            }
        ],
    }
    portal_stub.refuse = (403, outcome)
    try:
        response = _launch(epj_devidp, portal_stub, scenario="two")
    finally:
        portal_stub.refuse = None
    assert response.status_code == 502
    assert "Attesten må gjelde nøyaktig én pasient." in response.text and "HTTP 403" in response.text
    assert "<form" not in response.text.split("<body>")[1].split("Tilbake")[0]
    assert PATIENT not in response.text
