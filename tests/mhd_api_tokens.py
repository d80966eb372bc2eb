"""DPoP-bound access tokens for the MHD API's tests, minted here with a test key whose
JWKS the portal is pointed at (`provider.signing_keys`), so that a test can forge what it
needs (an expired token, another audience, a bad signature). tests/epj_tokens.py does the
same through the dev identity provider."""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import jwt
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from django.conf import settings

from pjd_portal.accounts import provider
from pjd_portal.accounts.helseid_tokens import jwk_thumbprint
from pjd_portal.accounts.models import Organisation, User

CLIENT_ID = "pjd-test-epj"
ISSUER = "http://127.0.0.1:9/test-helseid"
KID = "mhd-api-test"

_SIGNING_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def signing_jwks() -> list[dict[str, Any]]:
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(_SIGNING_KEY.public_key()))
    return [{**jwk, "kid": KID, "alg": "RS256", "use": "sig"}]


def trust_provider(monkeypatch: pytest.MonkeyPatch, settings_fixture: Any) -> None:
    """The portal takes this module's tokens (its JWKS, issuer, audience, client)."""

    settings_fixture.OIDC_ISSUER = ISSUER
    settings_fixture.EPJ_CLIENTS = frozenset({CLIENT_ID})
    monkeypatch.setattr(provider, "signing_keys", lambda refresh=False: signing_jwks())


def attest_for(
    user: User,
    organisation: Organisation,
    patients: list[str],
    *,
    purpose: str = "TREAT",
    reason: str = "",
    decision_ref: str | None = None,
) -> dict[str, Any]:
    org = {"id": organisation.orgnr, "name": organisation.name, "system": "urn:oid:2.16.578.1.12.4.1.4.101"}
    return {
        "type": "nhn:tillitsrammeverk:parameters",
        "practitioner": {
            "identifier": {
                "id": user.pid,
                "name": user.display_name,
                "system": "urn:oid:2.16.578.1.12.4.1.4.1",
            },
            "hpr_nr": {"id": user.hpr_number, "system": "urn:oid:2.16.578.1.12.4.1.4.4"},
            "authorization": {"code": "LE", "system": "urn:oid:2.16.578.1.12.4.1.1.9060"},
            "legal_entity": org,
            "point_of_care": org,
        },
        "care_relationship": {
            "purpose_of_use": {"code": purpose, "system": "urn:oid:2.16.840.1.113883.1.11.20448"},
            "purpose_of_use_details": {"code": "BEHANDLER"},
            "decision_ref": {
                "id": decision_ref or f"epj-{uuid.uuid4().hex[:8]}",
                "user_selected": True,
                "reason": reason,
            },
        },
        "patients": [{"identifier": {"id": p, "system": "urn:oid:2.16.578.1.12.4.1.4.1"}} for p in patients],
    }


@dataclass
class DpopKey:
    private: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )

    @property
    def public_jwk(self) -> dict[str, str]:
        jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(self.private.public_key()))
        return {k: jwk[k] for k in ("kty", "crv", "x", "y")}

    @property
    def thumbprint(self) -> str:
        return jwk_thumbprint(self.public_jwk)

    def proof(
        self,
        method: str,
        url: str,
        *,
        access_token: str,
        nonce: str | None,
        iat: float | None = None,
        jti: str | None = None,
        ath: str | None = None,
        typ: str = "dpop+jwt",
    ) -> str:
        claims: dict[str, Any] = {
            "jti": jti or uuid.uuid4().hex,
            "htm": method,
            "htu": url.split("?", maxsplit=1)[0],
            "iat": int(iat if iat is not None else time.time()),
            "ath": ath if ath is not None else _b64(hashlib.sha256(access_token.encode()).digest()),
        }
        if nonce:
            claims["nonce"] = nonce
        return jwt.encode(
            claims, self.private, algorithm="ES256", headers={"typ": typ, "jwk": self.public_jwk}
        )


def access_token(
    attest: dict[str, Any] | None,
    *,
    jkt: str,
    lifetime: int = 300,
    audience: str | None = None,
    issued: float | None = None,
    key: rsa.RSAPrivateKey | None = None,
    scope: str | None = None,
    typ: str = "at+jwt",
    **overrides: Any,
) -> str:
    """`overrides` replace claims; None leaves one out (a token without `cnf`)."""

    now = int(issued if issued is not None else time.time())
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "aud": [audience or settings.API_AUDIENCE],
        "client_id": CLIENT_ID,
        "sub": CLIENT_ID,
        "jti": uuid.uuid4().hex,
        "iat": now,
        "nbf": now,
        "exp": now + lifetime,
        "scope": scope if scope is not None else settings.API_SCOPE,
        "cnf": {"jkt": jkt},
    }
    if attest is not None:
        claims["authorization_details"] = [attest]
    claims.update(overrides)
    claims = {name: value for name, value in claims.items() if value is not None}
    return jwt.encode(claims, key or _SIGNING_KEY, algorithm="RS256", headers={"typ": typ, "kid": KID})


def other_signing_key() -> rsa.RSAPrivateKey:
    """A key the portal does not know: a forged token's."""

    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


class DpopAuth(requests.auth.AuthBase):
    """requests auth for a live server: `Authorization: DPoP` and a fresh proof per
    request, the nonce of the latest answer (and one repeat on use_dpop_nonce)."""

    def __init__(self, token: str, key: DpopKey) -> None:
        self.token = token
        self.key = key
        self.nonce: str | None = None

    def _sign(self, request: requests.PreparedRequest) -> None:
        request.headers["Authorization"] = f"DPoP {self.token}"
        request.headers["DPoP"] = self.key.proof(
            str(request.method), str(request.url), access_token=self.token, nonce=self.nonce
        )

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        self._sign(request)
        request.register_hook("response", self._on_response)
        return request

    def _on_response(self, response: requests.Response, **kwargs: Any) -> requests.Response:
        nonce = response.headers.get("DPoP-Nonce")
        if nonce:
            self.nonce = nonce
        if response.status_code == 401 and "use_dpop_nonce" in response.headers.get("WWW-Authenticate", ""):
            response.content  # noqa: B018 - read, so the connection can be reused
            retry = response.request.copy()
            self._sign(retry)
            again = response.connection.send(retry, **kwargs)
            again.history.append(response)
            again.request = retry
            nonce = again.headers.get("DPoP-Nonce")
            if nonce:
                self.nonce = nonce
            return again
        return response
