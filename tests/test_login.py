"""HelseID login end to end, against a fake identity provider inside the test.

No network: the token and JWKS endpoints are answered by `FakeProvider`, which
monkeypatches `requests.post` / `requests.get` as `pjd_portal.login.oidc` uses them.
Each test asserts on what the user sees and on the access event written.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.conf import settings
from django.test import Client

from pjd_portal.accounts.context import SESSION_ORG_CHOICES_KEY, SESSION_ORG_KEY
from pjd_portal.accounts.models import User
from pjd_portal.auditlog import events as kinds
from pjd_portal.auditlog.events import Outcome
from tests.builders import World, events, grant_role, make_user, provider_logout_form, synthetic_id

CLAIM_PID = "helseid://claims/identity/pid"
CLAIM_SECURITY_LEVEL = "helseid://claims/identity/security_level"
CLAIM_HPR = "helseid://claims/hpr/hpr_number"
CLAIM_ORGNR_PARENT = "helseid://claims/client/claims/orgnr_parent"
CLAIM_ORGNR_CHILD = "helseid://claims/client/claims/orgnr_child"
JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
KID = "helseid-test-key-1"
NEW_PID = synthetic_id(7, 6, 90, 512)

_Missing = object()  # a claim value meaning "leave the claim out"


# --- keys ---------------------------------------------------------------------------


def _new_rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _public_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


# Generating RSA keys is slow: one set per test session.
PROVIDER_KEY = _new_rsa_key()
OTHER_KEY = _new_rsa_key()
CLIENT_KEY = _new_rsa_key()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# --- the fake identity provider -----------------------------------------------------


class FakeResponse:
    def __init__(self, status_code: int, body: Any) -> None:
        self.status_code = status_code
        self._body = body

    def json(self) -> Any:
        return self._body

    def raise_for_status(self) -> None:
        if self.status_code >= 400:
            raise requests.HTTPError(f"{self.status_code}", response=self)


@dataclass
class FakeProvider:
    """HelseID's token and JWKS endpoints, answered in-process.

    `id_token` is what the token endpoint hands out: set it to a string, or leave it
    None to get a good token for `claims` (built per request, with the nonce the portal
    sent to the authorize endpoint).
    """

    world: World
    nonce: str = ""
    claims_overrides: dict[str, Any] = field(default_factory=dict)
    id_token: str | Callable[[FakeProvider], str] | None = None
    token_status: int = 200
    token_error: Exception | None = None
    jwks_error: Exception | None = None
    token_requests: list[dict[str, Any]] = field(default_factory=list)
    jwks_requests: int = 0
    par: bool = True  # whether discovery advertises a PAR endpoint
    par_status: int = 201
    par_requests: list[dict[str, Any]] = field(default_factory=list)
    pushed: dict[str, dict[str, Any]] = field(default_factory=dict)
    jwks_override: dict[str, Any] | None = None

    # claims and tokens

    def claims(self, **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": settings.OIDC_ISSUER,
            "aud": settings.OIDC_RP_CLIENT_ID,
            "sub": "helseid-sub-fastlege",
            "nonce": self.nonce,
            "iat": now,
            "nbf": now,
            "exp": now + 300,
            CLAIM_PID: self.world.fastlege.pid,
            CLAIM_SECURITY_LEVEL: "4",
            CLAIM_HPR: "910000011",
            CLAIM_ORGNR_PARENT: "310000000",
            CLAIM_ORGNR_CHILD: "310000000",
            "name": "Kari Fastlege",
            "given_name": "Kari",
            "family_name": "Fastlege",
        }
        claims.update(self.claims_overrides)
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not _Missing}

    def sign(self, claims: dict[str, Any], key: Any = None, kid: str | None = KID, alg: str = "RS256") -> str:
        headers = {"kid": kid} if kid is not None else {}
        return jwt.encode(
            claims, key if key is not None else _pem(PROVIDER_KEY), algorithm=alg, headers=headers
        )

    def jwks(self) -> dict[str, Any]:
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(PROVIDER_KEY.public_key()))
        jwk.update({"kid": KID, "alg": "RS256", "use": "sig"})
        return {"keys": [jwk]}

    # the endpoints

    @property
    def par_endpoint(self) -> str:
        return f"{settings.OIDC_ISSUER}/request"

    def post(self, url: str, data: dict[str, Any] | None = None, **kwargs: Any) -> FakeResponse:
        if url == self.par_endpoint:
            self.par_requests.append({"url": url, "data": dict(data or {}), **kwargs})
            if self.par_status not in (200, 201):
                return FakeResponse(self.par_status, {"error": "invalid_request"})
            request_uri = f"urn:ietf:params:oauth:request_uri:{len(self.pushed)}"
            self.pushed[request_uri] = dict(data or {})
            return FakeResponse(201, {"request_uri": request_uri, "expires_in": 60})
        self.token_requests.append({"url": url, "data": dict(data or {}), **kwargs})
        if self.token_error is not None:
            raise self.token_error
        if url != settings.OIDC_OP_TOKEN_ENDPOINT:
            return FakeResponse(404, {})
        if self.token_status != 200:
            return FakeResponse(self.token_status, {"error": "invalid_grant"})
        if self.id_token is None:
            token = self.sign(self.claims())
        elif callable(self.id_token):
            token = self.id_token(self)
        else:
            token = self.id_token
        return FakeResponse(200, {"id_token": token, "access_token": "x", "token_type": "Bearer"})

    def get(self, url: str, **kwargs: Any) -> FakeResponse:
        assert kwargs.get("timeout"), "every call to the provider needs a timeout"
        if url == f"{settings.OIDC_ISSUER}/.well-known/openid-configuration":
            document = {
                "issuer": settings.OIDC_ISSUER,
                "authorization_endpoint": settings.OIDC_OP_AUTHORIZATION_ENDPOINT,
                "token_endpoint": settings.OIDC_OP_TOKEN_ENDPOINT,
                "jwks_uri": settings.OIDC_OP_JWKS_ENDPOINT,
            }
            if self.par:
                document["pushed_authorization_request_endpoint"] = self.par_endpoint
            return FakeResponse(200, document)
        self.jwks_requests += 1
        if self.jwks_error is not None:
            raise self.jwks_error
        if url != settings.OIDC_OP_JWKS_ENDPOINT:
            return FakeResponse(404, {})
        return FakeResponse(200, self.jwks_override or self.jwks())

    # the browser side

    def start(self, client: Client) -> dict[str, str]:
        """GET /oidc/authenticate/; return the authorize request's parameters."""

        response = client.get("/oidc/authenticate/")
        assert response.status_code == 302, response.content[:500]
        location = urlsplit(response["Location"])
        assert (
            f"{location.scheme}://{location.netloc}{location.path}" == settings.OIDC_OP_AUTHORIZATION_ENDPOINT
        )
        params = {k: v[0] for k, v in parse_qs(location.query).items()}
        if "request_uri" in params:
            # Pushed: the browser carries only the client id and the request_uri.
            assert set(params) == {"client_id", "request_uri"}, params
            params = {
                k: v
                for k, v in self.pushed[params["request_uri"]].items()
                if not k.startswith("client_assertion")
            }
        self.nonce = params["nonce"]
        return params

    def callback(self, client: Client, state: str, **extra: str) -> Any:
        return client.get("/oidc/callback/", {"code": "abc", "state": state, **extra})

    def login(self, client: Client) -> Any:
        params = self.start(client)
        return self.callback(client, params["state"])


@pytest.fixture
def client_key_file(tmp_path: Path, settings: Any) -> Path:
    path = tmp_path / "oidc_client_key.pem"
    path.write_bytes(_pem(CLIENT_KEY))
    settings.OIDC_RP_CLIENT_PRIVATE_KEY_FILE = path
    return path


@pytest.fixture
def provider(world: World, monkeypatch: pytest.MonkeyPatch, client_key_file: Path) -> FakeProvider:
    fake = FakeProvider(world=world)
    monkeypatch.setattr("pjd_portal.login.oidc.requests.post", fake.post)
    monkeypatch.setattr("pjd_portal.login.oidc.requests.get", fake.get)
    return fake


# --- helpers ------------------------------------------------------------------------


def session_user_id(client: Client) -> int | None:
    value = client.session.get("_auth_user_id")
    return int(value) if value is not None else None


def session_cookie(client: Client) -> str:
    return client.cookies[settings.SESSION_COOKIE_NAME].value


def assert_refused(response: Any, reason: str | None = None, status: int = 403) -> str:
    assert response.status_code == status, response.content[:1000]
    body: str = response.content.decode()
    assert 'data-testid="login-refused"' in body
    if reason is not None:
        assert f'data-reason="{reason}"' in body
    return body


def assert_logged_out(client: Client) -> None:
    assert session_user_id(client) is None
    home = client.get("/")
    assert home.status_code == 200
    assert 'data-testid="login"' in home.content.decode()


# --- 1. a good login ------------------------------------------------------------------


def test_good_login_is_the_existing_user_with_a_new_session(provider: FakeProvider, world: World) -> None:
    client = Client()
    users_before = User.objects.count()
    params = provider.start(client)
    assert params["code_challenge_method"] == "S256"
    assert params["code_challenge"] and params["state"] and params["nonce"]
    assert params["client_id"] == settings.OIDC_RP_CLIENT_ID
    assert params["redirect_uri"] == "http://testserver/oidc/callback/"
    key_before = session_cookie(client)

    response = provider.callback(client, params["state"])

    assert response.status_code == 302, response.content[:1000]
    assert response["Location"] == "/"
    assert session_user_id(client) == world.fastlege.pk
    assert User.objects.count() == users_before
    assert session_cookie(client) != key_before  # session key rotated at login
    assert client.session[SESSION_ORG_KEY] == world.gp_office.pk
    assert client.session["oidc_id_token"]  # kept for id_token_hint at logout

    (event,) = events(kinds.LOGIN.name)
    assert event.outcome == Outcome.GRANTED
    assert event.actor_user_id == world.fastlege.pk
    assert event.actor_pid == world.fastlege.pid
    assert event.actor_hpr_number == "910000011"
    assert event.organisation_orgnr == world.gp_office.orgnr
    assert not events(kinds.LOGIN_REFUSED.name)

    home = client.get("/")
    assert home.status_code == 200
    assert 'data-testid="lookup-form"' in home.content.decode()


def test_token_request_uses_private_key_jwt_and_pkce(provider: FakeProvider, world: World) -> None:
    client = Client()
    response = provider.login(client)
    assert response.status_code == 302

    (request,) = provider.token_requests
    assert request["url"] == settings.OIDC_OP_TOKEN_ENDPOINT
    assert request.get("timeout"), "the token request must have a timeout"
    data = request["data"]
    assert "client_secret" not in data
    assert data["grant_type"] == "authorization_code"
    assert data["code"] == "abc"
    assert data["code_verifier"]
    assert data["client_assertion_type"] == JWT_BEARER

    assertion = data["client_assertion"]
    assert jwt.get_unverified_header(assertion)["alg"] == "RS256"
    claims = jwt.decode(
        assertion,
        _public_pem(CLIENT_KEY),
        algorithms=["RS256"],
        audience=settings.OIDC_OP_TOKEN_ENDPOINT,
        options={"require": ["iss", "sub", "aud", "exp", "iat", "jti"]},
    )
    assert claims["iss"] == claims["sub"] == settings.OIDC_RP_CLIENT_ID
    assert claims["aud"] == settings.OIDC_OP_TOKEN_ENDPOINT
    assert 0 < claims["exp"] - claims["iat"] <= 60
    assert claims["jti"]

    # PKCE: the verifier sent to the token endpoint matches the challenge sent earlier.
    # (checked on a second, fresh flow, since the first one's challenge is gone)
    client2 = Client()
    params = provider.start(client2)
    provider.callback(client2, params["state"])
    verifier = provider.token_requests[-1]["data"]["code_verifier"]
    assert params["code_challenge"] == _b64(hashlib.sha256(verifier.encode()).digest())
    # each assertion is unique
    assert provider.token_requests[-1]["data"]["client_assertion"] != assertion


# --- 2. a new person -------------------------------------------------------------------


def test_new_person_gets_a_user_keyed_on_pid_not_on_email(provider: FakeProvider, world: World) -> None:
    world.auditor.email = "x@example.org"
    world.auditor.save()
    users_before = User.objects.count()
    provider.claims_overrides = {
        CLAIM_PID: NEW_PID,
        CLAIM_HPR: "910000099",
        "email": "x@example.org",
        "name": "Nina Ny",
        "given_name": "Nina",
        "family_name": "Ny",
        "sub": "helseid-sub-new",
    }
    client = Client()

    response = provider.login(client)

    assert response.status_code == 302, response.content[:1000]
    assert User.objects.count() == users_before + 1
    user = User.objects.get(pid=NEW_PID)
    assert session_user_id(client) == user.pk
    assert session_user_id(client) != world.auditor.pk
    assert user.hpr_number == "910000099"
    assert user.display_name == "Nina Ny"
    assert user.username != NEW_PID
    assert NEW_PID not in user.username
    assert not user.has_usable_password()
    (event,) = events(kinds.LOGIN.name)
    assert event.actor_user_id == user.pk and event.outcome == Outcome.GRANTED


def test_new_username_contains_no_digit_run_of_the_pid(provider: FakeProvider, world: World) -> None:
    provider.claims_overrides = {CLAIM_PID: NEW_PID, CLAIM_HPR: "910000099"}
    assert provider.login(Client()).status_code == 302
    username = User.objects.get(pid=NEW_PID).username
    # no 4+ digit run of the pid shows up in the username
    assert not any(NEW_PID[i : i + 4] in username for i in range(len(NEW_PID) - 3)), username


# --- 3. forged tokens ---------------------------------------------------------------


def _unsigned(p: FakeProvider) -> str:
    header = _b64(json.dumps({"alg": "none", "typ": "JWT", "kid": KID}).encode())
    return f"{header}.{_b64(json.dumps(p.claims()).encode())}."


def _hs256_with_public_key(p: FakeProvider) -> str:
    # the classic key-confusion attack; PyJWT refuses PEM keys as HMAC secrets, so sign by hand
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": KID}).encode())
    payload = _b64(json.dumps(p.claims()).encode())
    signature = hmac.new(_public_pem(PROVIDER_KEY), f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64(signature)}"


def _tampered(p: FakeProvider) -> str:
    header, payload, signature = p.sign(p.claims()).split(".")
    claims = p.claims()
    claims[CLAIM_PID] = p.world.other_clinician.pid  # a different person, same signature
    forged_payload = _b64(json.dumps(claims).encode())
    assert forged_payload != payload
    return f"{header}.{forged_payload}.{signature}"


def _flipped_char(p: FakeProvider) -> str:
    header, payload, signature = p.sign(p.claims()).split(".")
    i = len(payload) // 2
    flipped = payload[:i] + ("A" if payload[i] != "A" else "B") + payload[i + 1 :]
    return f"{header}.{flipped}.{signature}"


FORGED_TOKENS: dict[str, Callable[[FakeProvider], str]] = {
    "wrong_aud": lambda p: p.sign(p.claims(aud="someone-else")),
    "wrong_iss": lambda p: p.sign(p.claims(iss="https://evil.example.org")),
    "iss_trailing_slash": lambda p: p.sign(p.claims(iss=settings.OIDC_ISSUER + "/")),
    "expired": lambda p: p.sign(p.claims(iat=int(time.time()) - 600, exp=int(time.time()) - 31 - 30)),
    "iat_in_future": lambda p: p.sign(p.claims(iat=int(time.time()) + 600)),
    "nbf_in_future": lambda p: p.sign(p.claims(nbf=int(time.time()) + 120)),
    "iat_missing": lambda p: p.sign(p.claims(iat=_Missing)),
    "exp_missing": lambda p: p.sign(p.claims(exp=_Missing)),
    "aud_missing": lambda p: p.sign(p.claims(aud=_Missing)),
    "iss_missing": lambda p: p.sign(p.claims(iss=_Missing)),
    "wrong_nonce": lambda p: p.sign(p.claims(nonce="not-the-nonce")),
    "nonce_missing": lambda p: p.sign(p.claims(nonce=_Missing)),
    "alg_none": _unsigned,
    "hs256_with_public_key": _hs256_with_public_key,
    "rs512_instead_of_rs256": lambda p: p.sign(p.claims(), alg="RS512"),
    "other_key_same_kid": lambda p: p.sign(p.claims(), key=_pem(OTHER_KEY)),
    "unknown_kid": lambda p: p.sign(p.claims(), kid="some-other-kid"),
    "not_a_jwt": lambda p: "garbage",
    "empty_token": lambda p: "",
    "aud_list_with_foreign_azp": lambda p: p.sign(
        p.claims(aud=[settings.OIDC_RP_CLIENT_ID, "other-client"], azp="other-client")
    ),
    "single_aud_with_foreign_azp": lambda p: p.sign(p.claims(azp="other-client")),
    "aud_list_without_azp": lambda p: p.sign(p.claims(aud=[settings.OIDC_RP_CLIENT_ID, "other-client"])),
    "payload_swapped_same_signature": _tampered,
    "payload_char_flipped": _flipped_char,
}


@pytest.mark.parametrize("case", sorted(FORGED_TOKENS))
def test_forged_id_token_is_refused(provider: FakeProvider, world: World, case: str) -> None:
    provider.id_token = FORGED_TOKENS[case]
    client = Client()
    users_before = User.objects.count()

    response = provider.login(client)

    assert response.status_code != 500
    body = assert_refused(response)
    assert 'data-reason="provider_unreachable"' not in body
    assert_logged_out(client)
    assert "oidc_id_token" not in client.session
    assert User.objects.count() == users_before
    assert not events(kinds.LOGIN.name)
    (event,) = events(kinds.LOGIN_REFUSED.name)
    assert event.outcome == Outcome.DENIED
    assert event.reason_code
    assert event.actor_user_id is None


def test_good_token_passes_the_same_checks(provider: FakeProvider, world: World) -> None:
    """Control for the matrix: the fake provider's unforged token is accepted."""

    provider.id_token = lambda p: p.sign(p.claims(aud=[settings.OIDC_RP_CLIENT_ID]))
    assert provider.login(Client()).status_code == 302
    provider.id_token = lambda p: p.sign(
        p.claims(aud=[settings.OIDC_RP_CLIENT_ID, "other"], azp=settings.OIDC_RP_CLIENT_ID)
    )
    assert provider.login(Client()).status_code == 302
    # within the 30 s clock leeway
    provider.id_token = lambda p: p.sign(p.claims(exp=int(time.time()) - 5, nbf=int(time.time()) + 5))
    assert provider.login(Client()).status_code == 302
    assert len(events(kinds.LOGIN.name)) == 3


# --- 4. refusals by claims ------------------------------------------------------------


def test_no_hpr_number_and_no_admin_role_is_refused(provider: FakeProvider, world: World) -> None:
    provider.claims_overrides = {CLAIM_PID: NEW_PID, CLAIM_HPR: _Missing}
    client = Client()
    users_before = User.objects.count()

    response = provider.login(client)

    body = assert_refused(response, "no_hpr_number")
    assert "HPR" in body
    assert_logged_out(client)
    assert User.objects.count() == users_before
    (event,) = events(kinds.LOGIN_REFUSED.name)
    assert event.reason_code == "no_hpr_number"
    assert event.actor_pid == NEW_PID
    assert not events(kinds.LOGIN.name)


def test_empty_hpr_number_for_a_clinician_without_admin_role_is_refused(
    provider: FakeProvider, world: World
) -> None:
    provider.claims_overrides = {CLAIM_HPR: ""}
    client = Client()
    assert_refused(provider.login(client), "no_hpr_number")
    assert_logged_out(client)
    world.fastlege.refresh_from_db()
    assert world.fastlege.hpr_number == "910000011"  # a refused login changes nothing


@pytest.mark.parametrize("level", ["3", "", None, 4.0, "44"])
def test_security_level_below_4_is_refused(provider: FakeProvider, world: World, level: Any) -> None:
    provider.claims_overrides = {CLAIM_SECURITY_LEVEL: _Missing if level is None else level}
    client = Client()

    response = provider.login(client)

    assert_refused(response, "security_level_too_low")
    assert_logged_out(client)
    (event,) = events(kinds.LOGIN_REFUSED.name)
    assert event.reason_code == "security_level_too_low"
    assert event.actor_pid == world.fastlege.pid


def test_missing_pid_is_refused(provider: FakeProvider, world: World) -> None:
    provider.claims_overrides = {CLAIM_PID: _Missing}
    client = Client()
    assert_refused(provider.login(client), "missing_pid")
    assert_logged_out(client)
    (event,) = events(kinds.LOGIN_REFUSED.name)
    assert event.reason_code == "missing_pid"


def test_auditor_without_hpr_is_let_in_to_the_no_clinical_role_page(
    provider: FakeProvider, world: World
) -> None:
    provider.claims_overrides = {
        CLAIM_PID: world.auditor.pid,
        CLAIM_HPR: _Missing,
        CLAIM_ORGNR_PARENT: world.hospital.orgnr,
        CLAIM_ORGNR_CHILD: world.hospital.orgnr,
        "name": "Rune Revisor",
    }
    client = Client()

    response = provider.login(client)

    assert response.status_code == 302, response.content[:1000]
    assert response["Location"] == "/"
    assert session_user_id(client) == world.auditor.pk
    (event,) = events(kinds.LOGIN.name)
    assert event.outcome == Outcome.GRANTED
    assert event.actor_user_id == world.auditor.pk
    home = client.get("/")
    body = home.content.decode()
    assert 'data-testid="no-clinical-role"' in body
    assert 'data-testid="lookup-form"' not in body


def test_inactive_user_is_refused(provider: FakeProvider, world: World) -> None:
    world.fastlege.is_active = False
    world.fastlege.save()
    client = Client()
    response = provider.login(client)
    assert_refused(response)
    assert_logged_out(client)
    assert events(kinds.LOGIN_REFUSED.name)
    assert not events(kinds.LOGIN.name)


# --- 5. provider errors ---------------------------------------------------------------


def test_cancelled_at_provider(provider: FakeProvider, world: World) -> None:
    client = Client()
    params = provider.start(client)

    response = client.get("/oidc/callback/", {"error": "access_denied", "state": params["state"]})

    body = assert_refused(response, "cancelled")
    assert "The login was cancelled." in body or "avbrutt" in body.lower()
    assert_logged_out(client)
    refused = events(kinds.LOGIN_REFUSED.name)
    assert refused, "a cancelled login must be audited"
    assert refused[0].reason_code == "provider_access_denied"
    assert not provider.token_requests
    # the state is spent: using it afterwards with a code does not log in
    replay = provider.callback(client, params["state"])
    assert_refused(replay)
    assert_logged_out(client)
    assert not events(kinds.LOGIN.name)


def test_cancelled_login_writes_exactly_one_event(provider: FakeProvider, world: World) -> None:
    client = Client()
    params = provider.start(client)
    client.get("/oidc/callback/", {"error": "access_denied", "state": params["state"]})
    assert [e.reason_code for e in events(kinds.LOGIN_REFUSED.name)] == ["provider_access_denied"]


def test_other_provider_error(provider: FakeProvider, world: World) -> None:
    client = Client()
    params = provider.start(client)
    response = client.get("/oidc/callback/", {"error": "server_error", "state": params["state"]})
    assert_refused(response, "provider_error")
    assert events(kinds.LOGIN_REFUSED.name)[0].reason_code == "provider_server_error"


def test_token_endpoint_unreachable(provider: FakeProvider, world: World) -> None:
    provider.token_error = requests.ConnectionError("connection refused")
    client = Client()

    response = provider.login(client)

    assert_refused(response, "provider_unreachable", status=503)
    assert_logged_out(client)
    (event,) = events(kinds.LOGIN_REFUSED.name)
    assert event.reason_code == "provider_unreachable"


def test_jwks_endpoint_times_out(provider: FakeProvider, world: World) -> None:
    provider.jwks_error = requests.Timeout("read timed out")
    client = Client()

    response = provider.login(client)

    assert_refused(response, "provider_unreachable", status=503)
    assert_logged_out(client)
    (event,) = events(kinds.LOGIN_REFUSED.name)
    assert event.reason_code == "provider_unreachable"


def test_token_endpoint_answers_400(provider: FakeProvider, world: World) -> None:
    provider.token_status = 400
    client = Client()

    response = provider.login(client)

    assert_refused(response, status=403)
    assert_logged_out(client)
    (event,) = events(kinds.LOGIN_REFUSED.name)
    assert event.reason_code == "token_request_failed"


def test_token_response_without_id_token(provider: FakeProvider, world: World) -> None:
    provider.id_token = lambda p: ""
    client = Client()
    assert_refused(provider.login(client))
    assert_logged_out(client)


def test_missing_client_key_is_refused_not_500(
    provider: FakeProvider, world: World, settings: Any, tmp_path: Path
) -> None:
    settings.OIDC_RP_CLIENT_PRIVATE_KEY_FILE = tmp_path / "nope.pem"
    client = Client()
    # With PAR the key is needed to start the login, so the refusal comes at once.
    response = client.get("/oidc/authenticate/")
    assert_refused(response, "client_key_missing")
    assert not provider.token_requests and not provider.par_requests
    assert [e.reason_code for e in events(kinds.LOGIN_REFUSED.name)] == ["client_key_missing"]


# --- 6. replayed or foreign state -----------------------------------------------------


def test_replayed_state_is_refused(provider: FakeProvider, world: World) -> None:
    client = Client()
    params = provider.start(client)
    assert provider.callback(client, params["state"]).status_code == 302
    assert len(events(kinds.LOGIN.name)) == 1

    replay = provider.callback(client, params["state"])

    assert_refused(replay)
    assert len(events(kinds.LOGIN.name)) == 1
    assert len(provider.token_requests) == 1  # the spent code was not redeemed again
    assert events(kinds.LOGIN_REFUSED.name)


def test_callback_in_another_browser_is_refused(provider: FakeProvider, world: World) -> None:
    victim = Client()
    params = provider.start(victim)
    attacker = Client()
    provider.start(attacker)  # the attacker has a session with its own state

    response = provider.callback(attacker, params["state"])

    assert_refused(response)
    assert_logged_out(attacker)
    assert not provider.token_requests
    assert not events(kinds.LOGIN.name)


def test_callback_without_any_login_started(provider: FakeProvider, world: World) -> None:
    client = Client()
    response = provider.callback(client, "made-up-state")
    assert_refused(response)
    assert_logged_out(client)
    assert not provider.token_requests


# --- 7. logout ------------------------------------------------------------------------


def test_logout_ends_the_session_here_and_at_helseid(provider: FakeProvider, world: World) -> None:
    client = Client()
    assert provider.login(client).status_code == 302
    id_token = client.session["oidc_id_token"]

    response = client.post("/logg-ut/")

    # The id token goes to HelseID in a POST body, never in a URL (provider_logout).
    fields = provider_logout_form(response, id_token)
    assert fields["post_logout_redirect_uri"] == "http://testserver/logget-ut/"
    assert_logged_out(client)
    (event,) = events(kinds.LOGOUT.name)
    assert event.outcome == Outcome.GRANTED
    assert event.actor_user_id == world.fastlege.pk

    assert client.get("/logget-ut/").status_code == 200


def test_the_logout_page_is_bokmal_and_english_on_request(provider: FakeProvider, world: World) -> None:
    client = Client()
    assert provider.login(client).status_code == 302
    page = client.post("/logg-ut/").content.decode()
    assert '<html lang="nb"' in page
    assert "Logger ut" in page and "Logg ut av HelseID" in page

    client = Client()
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "en"  # the footer's language choice
    assert provider.login(client).status_code == 302
    page = client.post("/logg-ut/").content.decode()
    assert '<html lang="en"' in page
    assert "Logging out" in page and "Log out of HelseID" in page


def test_logout_without_an_id_token_goes_straight_to_the_logged_out_page(
    provider: FakeProvider, world: World
) -> None:
    client = Client()
    assert provider.login(client).status_code == 302
    session = client.session
    del session["oidc_id_token"]
    session.save()

    response = client.post("/logg-ut/")

    assert response.status_code == 302 and response["Location"] == "http://testserver/logget-ut/"
    assert response["Cache-Control"] == "no-store"
    assert response["Clear-Site-Data"] == '"cache", "storage"'
    assert_logged_out(client)
    assert len(events(kinds.LOGOUT.name)) == 1


def test_logout_needs_post(provider: FakeProvider, world: World) -> None:
    client = Client()
    assert provider.login(client).status_code == 302
    assert client.get("/logg-ut/").status_code == 405
    assert session_user_id(client) == world.fastlege.pk  # still logged in
    assert not events(kinds.LOGOUT.name)


# --- 8. pushed authorization requests, provider keys, the client key ------------------


def test_login_starts_with_a_pushed_authorization_request(provider: FakeProvider, world: World) -> None:
    client = Client()
    response = client.get("/oidc/authenticate/")
    location = urlsplit(response["Location"])
    query = {k: v[0] for k, v in parse_qs(location.query).items()}
    # The browser carries nothing but the client id and the request_uri.
    assert set(query) == {"client_id", "request_uri"}
    (pushed,) = provider.par_requests
    assert pushed.get("timeout"), "the PAR request must have a timeout"
    data = pushed["data"]
    assert "client_secret" not in data
    assert data["code_challenge_method"] == "S256" and data["code_challenge"]
    assert data["state"] and data["nonce"] and data["response_type"] == "code"
    assert data["client_assertion_type"] == JWT_BEARER
    header = jwt.get_unverified_header(data["client_assertion"])
    claims = jwt.decode(
        data["client_assertion"],
        _public_pem(CLIENT_KEY),
        algorithms=["RS256"],
        audience=settings.OIDC_ISSUER,
        options={"require": ["iss", "sub", "aud", "exp", "iat", "jti"]},
    )
    assert 0 < claims["exp"] - claims["iat"] <= 60
    # The kid names the key the portal publishes.
    published = client.get("/.well-known/jwks.json").json()
    assert header["kid"] == published["keys"][0]["kid"]
    # ... and the whole login then completes.
    params = provider.start(Client())
    assert params["code_challenge_method"] == "S256"


def test_without_par_advertised_the_plain_authorize_request_is_used(
    provider: FakeProvider, world: World
) -> None:
    provider.par = False
    client = Client()
    params = provider.start(client)
    assert params["code_challenge_method"] == "S256" and "request_uri" not in params
    assert not provider.par_requests
    assert provider.callback(client, params["state"]).status_code == 302
    assert session_user_id(client) == world.fastlege.pk


def test_par_refused_by_the_provider_gives_a_clear_page(provider: FakeProvider, world: World) -> None:
    provider.par_status = 400
    response = Client().get("/oidc/authenticate/")
    body = assert_refused(response, "par_refused")
    assert "/oidc/authenticate/" in body  # try again
    assert [e.reason_code for e in events(kinds.LOGIN_REFUSED.name)] == ["par_refused"]


@pytest.mark.parametrize("failing", ["discovery", "par"])
def test_provider_unreachable_at_login_start_gives_503_with_try_again(
    provider: FakeProvider, world: World, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    if failing == "discovery":
        monkeypatch.setattr(provider, "get", _raiser(requests.ConnectTimeout("slow")))
        monkeypatch.setattr("pjd_portal.login.oidc.requests.get", provider.get)
    else:
        monkeypatch.setattr("pjd_portal.login.oidc.requests.post", _raiser(requests.ReadTimeout("slow")))
    response = Client().get("/oidc/authenticate/")
    body = assert_refused(response, "provider_unreachable", status=503)
    assert "/oidc/authenticate/" in body
    assert [e.reason_code for e in events(kinds.LOGIN_REFUSED.name)] == ["provider_unreachable"]


def test_discovery_document_for_another_issuer_is_not_trusted(
    provider: FakeProvider, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_get = provider.get

    def foreign_issuer(url: str, **kwargs: Any) -> FakeResponse:
        answer = real_get(url, **kwargs)
        if url.endswith("/.well-known/openid-configuration"):
            answer._body = {**answer._body, "issuer": "https://evil.example"}
        return answer

    monkeypatch.setattr("pjd_portal.login.oidc.requests.get", foreign_issuer)
    assert_refused(Client().get("/oidc/authenticate/"), "provider_unreachable", status=503)
    assert not provider.par_requests


def test_provider_keys_are_cached_between_logins(provider: FakeProvider, world: World) -> None:
    for _ in range(2):
        client = Client()
        assert provider.login(client).status_code == 302
        assert session_user_id(client) == world.fastlege.pk
    assert provider.jwks_requests == 1


def test_rotated_provider_key_is_fetched_once_and_accepted(provider: FakeProvider, world: World) -> None:
    first = Client()
    provider.login(first)  # caches the JWKS with the old key
    new_key = _new_rsa_key()
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(new_key.public_key()))
    jwk.update({"kid": "helseid-test-key-2", "alg": "RS256", "use": "sig"})
    provider.jwks_override = {"keys": [*provider.jwks()["keys"], jwk]}
    provider.id_token = lambda p: p.sign(p.claims(), key=_pem(new_key), kid="helseid-test-key-2")
    client = Client()
    assert provider.login(client).status_code == 302
    assert session_user_id(client) == world.fastlege.pk
    assert provider.jwks_requests == 2  # the cached set, then one refetch


def test_unknown_kid_is_refetched_only_once(provider: FakeProvider, world: World) -> None:
    provider.id_token = lambda p: p.sign(p.claims(), key=_pem(_new_rsa_key()), kid="nobody-knows-me")
    client = Client()
    assert_refused(provider.login(client), "token_unknown_key")
    assert provider.jwks_requests == 2
    assert_logged_out(client)


def test_client_key_can_come_from_the_environment(
    provider: FakeProvider, world: World, monkeypatch: pytest.MonkeyPatch, settings: Any, tmp_path: Path
) -> None:
    env_key = _new_rsa_key()
    settings.OIDC_RP_CLIENT_PRIVATE_KEY_FILE = tmp_path / "absent.pem"
    monkeypatch.setenv("OIDC_CLIENT_PRIVATE_KEY", _pem(env_key).decode())
    client = Client()
    assert provider.login(client).status_code == 302
    assertion = provider.token_requests[-1]["data"]["client_assertion"]
    jwt.decode(
        assertion, _public_pem(env_key), algorithms=["RS256"], audience=settings.OIDC_OP_TOKEN_ENDPOINT
    )
    published = client.get("/.well-known/jwks.json").json()["keys"]
    assert published[0]["n"] == json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(env_key.public_key()))["n"]


def test_published_client_jwks_has_no_private_part(provider: FakeProvider, world: World) -> None:
    response = Client().get("/.well-known/jwks.json")
    assert response.status_code == 200 and response["Content-Type"] == "application/json"
    (key,) = response.json()["keys"]
    assert key["kty"] == "RSA" and key["alg"] == "RS256" and key["use"] == "sig"
    assert not {"d", "p", "q", "dp", "dq", "qi"} & set(key)


def test_published_client_jwks_without_a_key_is_503_not_500(settings: Any, tmp_path: Path, db: Any) -> None:
    settings.OIDC_RP_CLIENT_PRIVATE_KEY_FILE = tmp_path / "absent.pem"
    assert Client().get("/.well-known/jwks.json").status_code == 503


def _raiser(exc: Exception) -> Callable[..., Any]:
    def raise_it(*args: Any, **kwargs: Any) -> Any:
        raise exc

    return raise_it


# --- 9. the organisation the clinician acts for ----------------------------------------


def test_one_organisation_is_taken_from_the_claims_and_shown(provider: FakeProvider, world: World) -> None:
    client = Client()
    assert provider.login(client)["Location"] == "/"
    assert client.session[SESSION_ORG_KEY] == world.gp_office.pk
    home = client.get("/").content.decode()
    assert 'data-testid="current-organisation">Storgata legekontor<' in home
    assert events(kinds.LOGIN.name)[0].organisation_orgnr == world.gp_office.orgnr


def test_several_organisations_choose_at_login_and_the_choice_is_in_every_event(
    provider: FakeProvider, world: World
) -> None:
    from pjd_portal.accounts.models import Role

    grant_role(world.fastlege, world.legevakt, Role.CLINICIAN)
    client = Client()
    response = provider.login(client)
    assert response["Location"] == "/velg-virksomhet/"
    assert SESSION_ORG_KEY not in client.session
    [login] = events(kinds.LOGIN.name)
    assert login.organisation_orgnr == "" and login.details["claimed_orgnr"] == world.gp_office.orgnr
    # Until chosen, no clinical page is open and home leads to the choice.
    assert client.get("/")["Location"] == "/velg-virksomhet/"
    assert client.post("/pasient/sok/", {"national_id": world.patient.national_id}).status_code == 403
    page = client.get("/velg-virksomhet/").content.decode()
    assert "Bergen legevakt" in page and "Storgata legekontor" in page
    assert f'value="{world.gp_office.pk}" checked' in page  # HelseID's claim preselected

    # A forged choice (an organisation not offered) changes nothing.
    bad = client.post("/velg-virksomhet/", {"organisation": str(world.hospital.pk)})
    assert bad.status_code == 400 and SESSION_ORG_KEY not in client.session

    assert client.post("/velg-virksomhet/", {"organisation": str(world.legevakt.pk)})["Location"] == "/"
    assert client.session[SESSION_ORG_KEY] == world.legevakt.pk
    assert 'data-testid="current-organisation">Bergen legevakt<' in client.get("/").content.decode()
    [chosen] = events(kinds.ORGANISATION_CHOSEN.name)
    assert chosen.organisation_orgnr == world.legevakt.orgnr
    client.post("/pasient/sok/", {"national_id": world.patient.national_id})
    assert events(kinds.PATIENT_LOOKUP.name)[-1].organisation_orgnr == world.legevakt.orgnr


def test_a_handle_made_for_one_organisation_does_not_work_for_another(
    provider: FakeProvider, world: World
) -> None:
    from pjd_portal.accounts.models import Role
    from tests.builders import lookup_and_attest

    grant_role(world.fastlege, world.legevakt, Role.CLINICIAN)
    client = Client()
    provider.login(client)
    client.post("/velg-virksomhet/", {"organisation": str(world.gp_office.pk)})
    handle = lookup_and_attest(client)
    assert client.get(f"/pasient/{handle}/").status_code == 200
    client.post("/velg-virksomhet/", {"organisation": str(world.legevakt.pk)})
    assert client.get(f"/pasient/{handle}/").status_code == 404


def test_choose_page_is_not_for_those_with_one_organisation(provider: FakeProvider, world: World) -> None:
    client = Client()
    provider.login(client)
    assert client.get("/velg-virksomhet/")["Location"] == "/"
    assert client.post("/velg-virksomhet/", {"organisation": str(world.legevakt.pk)})["Location"] == "/"
    assert client.session[SESSION_ORG_KEY] == world.gp_office.pk


def test_login_after_a_session_timeout_asks_the_provider_for_a_fresh_login(
    provider: FakeProvider, world: World
) -> None:
    client = Client()
    expired_page = client.get("/sesjon-utlopt/").content.decode()
    assert "/oidc/authenticate/?reauth=1" in expired_page
    client.get("/oidc/authenticate/?reauth=1")
    assert provider.par_requests[-1]["data"]["prompt"] == "login"
    client.get("/oidc/authenticate/")
    assert "prompt" not in provider.par_requests[-1]["data"]


# --- 10. what a login leaves behind, and who it is logged for ---------------------------


def test_deactivated_user_loses_a_live_session_at_once(provider: FakeProvider, world: World) -> None:
    client = Client()
    provider.login(client)
    assert 'data-testid="lookup-form"' in client.get("/").content.decode()
    User.objects.filter(pk=world.fastlege.pk).update(is_active=False)
    assert 'data-testid="login"' in client.get("/").content.decode()
    assert client.post("/pasient/sok/", {"national_id": world.patient.national_id}).status_code == 302


def test_a_revoked_role_is_no_longer_a_choice(provider: FakeProvider, world: World) -> None:
    from pjd_portal.accounts.models import Role

    extra = grant_role(world.fastlege, world.legevakt, Role.CLINICIAN)
    client = Client()
    provider.login(client)
    extra.delete()
    # Only one organisation is left: the chooser sends home, and a forged choice fails.
    assert client.get("/velg-virksomhet/")["Location"] == "/"
    client.post("/velg-virksomhet/", {"organisation": str(world.legevakt.pk)})
    assert client.session.get(SESSION_ORG_KEY) != world.legevakt.pk
    assert not events(kinds.ORGANISATION_CHOSEN.name)


def test_a_new_login_starts_without_the_last_ones_organisation(provider: FakeProvider, world: World) -> None:
    from pjd_portal.accounts.models import Role

    grant_role(world.fastlege, world.legevakt, Role.CLINICIAN)
    client = Client()
    provider.login(client)
    client.post("/velg-virksomhet/", {"organisation": str(world.legevakt.pk)})
    provider.login(client)  # again, in the same browser
    assert SESSION_ORG_KEY not in client.session
    assert client.get("/")["Location"] == "/velg-virksomhet/"
    assert [e.organisation_orgnr for e in events(kinds.LOGIN.name)] == ["", ""]


def test_refused_login_in_a_browser_where_someone_is_logged_in(provider: FakeProvider, world: World) -> None:
    client = Client()
    provider.login(client)
    own_token = client.session["oidc_id_token"]
    assert own_token
    # Someone else starts a login here and is refused (security level 3).
    provider.claims_overrides = {CLAIM_PID: NEW_PID, CLAIM_SECURITY_LEVEL: "3"}
    assert_refused(provider.login(client), "security_level_too_low")
    assert_logged_out(client)
    assert "oidc_id_token" not in client.session  # the refused person's token is not kept
    [refusal] = events(kinds.LOGIN_REFUSED.name)
    assert refusal.actor_user_id is None and refusal.actor_pid == NEW_PID


def test_error_answer_not_started_here_changes_nothing(provider: FakeProvider, world: World) -> None:
    client = Client()
    provider.login(client)
    # A link from another site: /oidc/callback/?error=access_denied with no state of ours.
    response = client.get("/oidc/callback/", {"error": "access_denied", "state": "forged"})
    assert response.status_code == 403
    assert session_user_id(client) == world.fastlege.pk
    [event] = events(kinds.LOGIN_REFUSED.name)
    assert event.reason_code == "state_invalid" and event.actor_user_id is None and event.actor_pid == ""


@pytest.mark.parametrize("where", ["token", "jwks", "par"])
def test_malformed_provider_answers_give_the_clear_page(
    provider: FakeProvider, world: World, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    real_post, real_get = provider.post, provider.get

    def post(url: str, data: Any = None, **kwargs: Any) -> FakeResponse:
        answer = real_post(url, data, **kwargs)
        if (where == "token" and url == settings.OIDC_OP_TOKEN_ENDPOINT) or (
            where == "par" and url == provider.par_endpoint
        ):
            answer._body = ["not", "an", "object"]
        return answer

    def get(url: str, **kwargs: Any) -> FakeResponse:
        answer = real_get(url, **kwargs)
        if where == "jwks" and url == settings.OIDC_OP_JWKS_ENDPOINT:
            answer._body = {"keys": ["not-a-key"]}
        return answer

    monkeypatch.setattr("pjd_portal.login.oidc.requests.post", post)
    monkeypatch.setattr("pjd_portal.login.oidc.requests.get", get)
    client = Client()
    if where == "par":
        response = client.get("/oidc/authenticate/")
    else:
        response = provider.login(client)
    assert response.status_code in (403, 503)
    assert 'data-testid="login-refused"' in response.content.decode()
    assert_logged_out(client)


def test_a_failed_login_in_a_logged_in_browser_logs_the_previous_users_logout(
    provider: FakeProvider, world: World
) -> None:
    client = Client()
    assert provider.login(client).status_code == 302
    assert session_user_id(client) == world.fastlege.pk
    provider.token_status = 400  # the next login here fails at the token endpoint

    assert_refused(provider.login(client), status=403)

    assert_logged_out(client)
    (logout,) = events(kinds.LOGOUT.name)
    assert (logout.actor_user_id, logout.reason_code) == (world.fastlege.pk, "another_login_failed")
    (refused,) = events(kinds.LOGIN_REFUSED.name)
    assert refused.pk > logout.pk
    # The previous user's session ended first: the refused login is at no organisation
    # (it used to carry theirs, read once for the logout and kept on the request).
    assert logout.organisation_orgnr == world.gp_office.orgnr
    assert (refused.actor_user_id, refused.organisation_orgnr) == (None, "")


def test_the_login_reads_the_roles_from_guardians_table(provider: FakeProvider, world: World) -> None:
    """The one record: a role put in force with django-guardian's own API lets a person
    without an HPR number in, and removing it keeps them out (the login used to read a
    second record, Membership, which guardian's API never wrote)."""

    from guardian.shortcuts import assign_perm, remove_perm

    user = make_user("t-ny-revisor", NEW_PID, "", "Nora Ny")
    provider.claims_overrides = {
        CLAIM_PID: NEW_PID,
        CLAIM_HPR: _Missing,
        CLAIM_ORGNR_PARENT: world.hospital.orgnr,
        CLAIM_ORGNR_CHILD: world.hospital.orgnr,
    }
    assert_refused(provider.login(Client()), "no_hpr_number")
    assign_perm("accounts.role_auditor", user, world.legevakt)
    client = Client()
    assert provider.login(client).status_code == 302
    assert session_user_id(client) == user.pk
    # The organisation chooser offers the role's organisation and the one logged in for.
    assert sorted(client.session[SESSION_ORG_CHOICES_KEY]) == sorted([world.legevakt.pk, world.hospital.pk])
    remove_perm("accounts.role_auditor", user, world.legevakt)
    assert_refused(provider.login(Client()), "no_hpr_number")


# --- the login's rule is the policy's alone ------------------------------------------------


def test_the_refusal_page_says_what_the_policy_says_for_each_reason() -> None:
    from django.utils import translation

    from pjd_portal.access import policy

    with translation.override("en"):
        _refusal_messages(policy)
    # The portal's own language: the catalogue has every one of them.
    assert policy.login_refusal_message("cancelled") == "Innloggingen ble avbrutt."


def _refusal_messages(policy: Any) -> None:
    no_hpr = policy.may_log_in(
        policy.LoginFacts(pid=NEW_PID, security_level="4", hpr_number="", active_roles=frozenset())
    )
    assert no_hpr.reason_code == "no_hpr_number" and "HPR" in no_hpr.message
    assert no_hpr.message == policy.login_refusal_message("no_hpr_number")
    assert "level 4" in policy.login_refusal_message("security_level_too_low")
    assert policy.login_refusal_message("cancelled") == "The login was cancelled."
    # Whatever else went wrong: the answer could not be verified.
    assert policy.login_refusal_message("state_invalid") == policy.login_refusal_message("par_refused")
    assert "could not be verified" in policy.login_refusal_message("login_failed")


def test_the_login_gathers_every_fact_and_leaves_the_decision_to_the_policy(
    provider: FakeProvider, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The roles are gathered for someone with an HPR number too (which roles matter is the
    policy's business); a policy that refuses them is obeyed, with its own reason."""

    from pjd_portal.access import policy

    asked: list[Any] = []

    def refusing(login: Any) -> Any:
        asked.append(login)
        return policy.Decision(False, "security_level_too_low", "")

    monkeypatch.setattr(policy, "may_log_in", refusing)
    body = assert_refused(provider.login(Client()), "security_level_too_low")
    assert policy.login_refusal_message("security_level_too_low") in body
    [facts] = asked
    assert facts.hpr_number == "910000011" and "clinician" in facts.active_roles
    assert not events(kinds.LOGIN.name)
