"""HelseID access tokens and DPoP proofs made by the tests themselves: signed with a key
the test puts in place of the provider's JWKS, so that any fault can be forged (an expired
token, another audience, a proof for another URL). The dev identity provider's real
tokens are in tests/epj_tokens.py."""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from django.conf import settings

from pjd_portal.accounts import provider
from pjd_portal.accounts.helseid_tokens import jwk_thumbprint


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _int_b64(value: int) -> str:
    return _b64(value.to_bytes((value.bit_length() + 7) // 8, "big"))


@dataclass
class DpopKey:
    private: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )

    @property
    def jwk(self) -> dict[str, str]:
        numbers = self.private.public_key().public_numbers()
        return {
            "kty": "EC",
            "crv": "P-256",
            "x": _b64(numbers.x.to_bytes(32, "big")),
            "y": _b64(numbers.y.to_bytes(32, "big")),
        }

    @property
    def thumbprint(self) -> str:
        return jwk_thumbprint(self.jwk)

    def proof(
        self,
        method: str,
        url: str,
        *,
        token: str | None = None,
        nonce: str | None = None,
        iat: float | None = None,
        jti: str | None = None,
        typ: str = "dpop+jwt",
        **extra: Any,
    ) -> str:
        claims: dict[str, Any] = {
            "htm": method,
            "htu": url,
            "iat": int(iat if iat is not None else time.time()),
            "jti": jti or uuid.uuid4().hex,
            **extra,
        }
        if token is not None:
            claims["ath"] = _b64(hashlib.sha256(token.encode()).digest())
        if nonce is not None:
            claims["nonce"] = nonce
        return jwt.encode(claims, self.private, algorithm="ES256", headers={"typ": typ, "jwk": self.jwk})


@dataclass
class TokenMint:
    """The provider's stand-in signing key; `install(monkeypatch)` makes the portal trust it."""

    private: rsa.RSAPrivateKey = field(
        default_factory=lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )
    kid: str = "test-key"

    @property
    def jwk(self) -> dict[str, str]:
        numbers = self.private.public_key().public_numbers()
        return {
            "kty": "RSA",
            "kid": self.kid,
            "use": "sig",
            "alg": "RS256",
            "n": _int_b64(numbers.n),
            "e": _int_b64(numbers.e),
        }

    def install(self, monkeypatch: Any) -> None:
        monkeypatch.setattr(provider, "signing_keys", lambda refresh=False: [self.jwk])

    def token(
        self,
        attest: Mapping[str, Any] | list[Any] | None,
        dpop: DpopKey | None,
        *,
        typ: str = "at+jwt",
        key: rsa.RSAPrivateKey | None = None,
        **overrides: Any,
    ) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": settings.OIDC_ISSUER,
            "aud": settings.API_AUDIENCE,
            "client_id": "pjd-test-epj",
            "scope": settings.API_SCOPE,
            "iat": now,
            "nbf": now,
            "exp": now + 300,
            "jti": uuid.uuid4().hex,
        }
        if dpop is not None:
            claims["cnf"] = {"jkt": dpop.thumbprint}
        if attest is not None:
            claims["authorization_details"] = attest if isinstance(attest, list) else [attest]
        claims.update(overrides)
        claims = {k: v for k, v in claims.items() if v is not None}
        return jwt.encode(
            claims, key or self.private, algorithm="RS256", headers={"typ": typ, "kid": self.kid}
        )


def attest(
    *,
    pid: str,
    hpr: str,
    orgnr: str,
    patients: list[str],
    purpose: str = "TREAT",
    reason: str = "",
    decision_ref: str = "epj-beslutning-1",
    details: str = "BEHANDLER",
    legal_entity: str | None = None,
) -> dict[str, Any]:
    """A tillitsrammeverk attest as docs/epj.md describes it."""

    return {
        "type": "nhn:tillitsrammeverk:parameters",
        "practitioner": {
            "identifier": {"id": pid, "name": "Test", "system": "urn:oid:2.16.578.1.12.4.1.4.1"},
            "hpr_nr": {"id": hpr, "system": "urn:oid:2.16.578.1.12.4.1.4.4"},
            "authorization": {"code": "LE", "system": "urn:oid:2.16.578.1.12.4.1.1.9060"},
            "legal_entity": {"id": legal_entity or orgnr},
            "point_of_care": {"id": orgnr},
        },
        "care_relationship": {
            "purpose_of_use": {"code": purpose, "system": "urn:oid:2.16.840.1.113883.1.11.20448"},
            "purpose_of_use_details": {"code": details},
            "decision_ref": {"id": decision_ref, "user_selected": True, "reason": reason},
        },
        "patients": [{"identifier": {"id": p, "system": "urn:oid:2.16.578.1.12.4.1.4.1"}} for p in patients],
    }


def json_of(response: Any) -> dict[str, Any]:
    return json.loads(response.content)  # type: ignore[no-any-return]
