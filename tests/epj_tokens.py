"""Acting as the EPJ in tests: client assertions signed with the EPJ's key (the dev
identity provider writes it, `devidp["epj_key"]`), DPoP proofs (RFC 9449), the RFC 7638
thumbprint, the attest for a test user (devidp/users.json, devidp/epj-data.json) and the
token request itself. docs/epj.md is the contract these follow."""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from pathlib import Path
from typing import Any

import jwt
import requests
from cryptography.hazmat.primitives.asymmetric import ec

DEVIDP = Path(__file__).resolve().parent.parent / "devidp"
ATTEST_TYPE = "nhn:tillitsrammeverk:parameters"
EPJ_CLIENT_ID = "pjd-test-epj"
API_AUDIENCE = "nhn:pjd-portal"
API_SCOPE = "nhn:pjd-portal/api"
JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

OID_PID = "urn:oid:2.16.578.1.12.4.1.4.1"
OID_HPR = "urn:oid:2.16.578.1.12.4.1.4.4"
OID_AUTHORIZATION = "urn:oid:2.16.578.1.12.4.1.1.9060"
OID_ORGANISATION = "urn:oid:2.16.578.1.12.4.1.4.101"
OID_HEALTHCARE_SERVICE = "urn:oid:2.16.578.1.12.4.1.1.8655"
OID_PURPOSE_OF_USE = "urn:oid:2.16.840.1.113883.1.11.20448"
OID_PURPOSE_OF_USE_DETAILS = "urn:oid:2.16.578.1.12.4.1.1.8671"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((DEVIDP / name).read_text(encoding="utf-8"))
    return data


def epj_client_assertion(key_jwk: dict[str, Any], client_id: str, token_endpoint: str) -> str:
    """private_key_jwt: the EPJ's signed assertion, 60 s, a unique jti."""

    now = int(time.time())
    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": token_endpoint,
        "jti": uuid.uuid4().hex,
        "iat": now,
        "nbf": now,
        "exp": now + 60,
    }
    key = jwt.PyJWK(key_jwk)
    return jwt.encode(claims, key, algorithm=key_jwk["alg"], headers={"kid": key_jwk["kid"], "typ": "JWT"})


def dpop_key() -> tuple[ec.EllipticCurvePrivateKey, dict[str, Any]]:
    """A fresh EC P-256 key for DPoP and its public JWK."""

    private = ec.generate_private_key(ec.SECP256R1())
    public_jwk: dict[str, Any] = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(private.public_key()))
    return private, {
        "kty": public_jwk["kty"],
        "crv": public_jwk["crv"],
        "x": public_jwk["x"],
        "y": public_jwk["y"],
    }


def dpop_proof(
    private_key: Any,
    public_jwk: dict[str, Any],
    method: str,
    url: str,
    *,
    access_token: str | None = None,
    nonce: str | None = None,
    iat: int | None = None,
    jti: str | None = None,
) -> str:
    """A DPoP proof JWT (RFC 9449 § 4.2) for one request."""

    claims: dict[str, Any] = {
        "htm": method,
        "htu": url,
        "iat": int(time.time()) if iat is None else iat,
        "jti": jti or uuid.uuid4().hex,
    }
    if access_token is not None:
        claims["ath"] = _b64url(hashlib.sha256(access_token.encode("ascii")).digest())
    if nonce is not None:
        claims["nonce"] = nonce
    alg = "ES256" if public_jwk.get("kty") == "EC" else "RS256"
    return jwt.encode(claims, private_key, algorithm=alg, headers={"typ": "dpop+jwt", "jwk": public_jwk})


def jwk_thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638: SHA-256 over the required members, sorted, no whitespace."""

    required = {"EC": ("crv", "kty", "x", "y"), "RSA": ("e", "kty", "n"), "OKP": ("crv", "kty", "x")}[
        jwk["kty"]
    ]
    canonical = json.dumps({name: jwk[name] for name in required}, separators=(",", ":"), sort_keys=True)
    return _b64url(hashlib.sha256(canonical.encode("utf-8")).digest())


def epj_token_response(
    devidp: dict[str, Any],
    attest: dict[str, Any] | list[Any] | None,
    dpop_private: Any,
    dpop_public: dict[str, Any] | None,
    *,
    key_jwk: dict[str, Any] | None = None,
    resource: str | None = API_AUDIENCE,
    scope: str | None = API_SCOPE,
) -> requests.Response:
    """The EPJ's token request as sent, for tests of what the provider refuses. A dict
    attest goes in as an array of one; a list as it is; None leaves the parameter out;
    no dpop_public sends no DPoP header. One retry if the provider asks for a nonce."""

    endpoint: str = devidp["config"]["token_endpoint"]
    if key_jwk is None:
        key_jwk = json.loads(Path(devidp["epj_key"]).read_text(encoding="utf-8"))
    nonce: str | None = None
    while True:
        data = {
            "grant_type": "client_credentials",
            "client_id": EPJ_CLIENT_ID,
            "client_assertion_type": JWT_BEARER,
            "client_assertion": epj_client_assertion(key_jwk, EPJ_CLIENT_ID, endpoint),
        }
        if resource is not None:
            data["resource"] = resource
        if scope is not None:
            data["scope"] = scope
        if attest is not None:
            data["authorization_details"] = json.dumps([attest] if isinstance(attest, dict) else attest)
        headers = {}
        if dpop_public is not None:
            headers["DPoP"] = dpop_proof(dpop_private, dpop_public, "POST", endpoint, nonce=nonce)
        response = requests.post(endpoint, data=data, headers=headers, timeout=10)
        fresh = response.headers.get("DPoP-Nonce")
        if response.status_code == 400 and nonce is None and fresh and _error(response) == "use_dpop_nonce":
            nonce = fresh
            continue
        return response


def _error(response: requests.Response) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return None
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, str) else None


def epj_token(
    devidp: dict[str, Any], attest: dict[str, Any], dpop_private: Any, dpop_public: dict[str, Any]
) -> str:
    """A DPoP-bound access token for the portal's API, as the EPJ gets it; fails the test
    with the provider's answer if there is none."""

    response = epj_token_response(devidp, attest, dpop_private, dpop_public)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "DPoP", body
    token: str = body["access_token"]
    return token


def attest_for(
    user: str,
    patients: list[str],
    purpose: str = "TREAT",
    reason: str = "",
    decision_ref: str | None = None,
) -> dict[str, Any]:
    """The attest an EPJ sends for a test user of devidp/users.json and these patients."""

    person = _load("users.json")["users"][user]
    data = _load("epj-data.json")
    code = data["user_authorization"].get(user, "LE")

    def organisation(orgnr: str) -> dict[str, str]:
        return {"id": orgnr, "name": data["organisations"].get(orgnr, ""), "system": OID_ORGANISATION}

    return {
        "type": ATTEST_TYPE,
        "practitioner": {
            "identifier": {"id": person["pid"], "name": person["name"], "system": OID_PID},
            "hpr_nr": {"id": person["hpr"], "system": OID_HPR},
            "authorization": {
                "code": code,
                "text": data["authorizations"].get(code, ""),
                "system": OID_AUTHORIZATION,
            },
            "legal_entity": organisation(person["orgnr_parent"]),
            "point_of_care": organisation(person["orgnr_child"]),
            "department": {"id": "", "name": ""},
        },
        "care_relationship": {
            "healthcare_service": {"code": "S03", "system": OID_HEALTHCARE_SERVICE},
            "purpose_of_use": {"code": purpose, "system": OID_PURPOSE_OF_USE},
            "purpose_of_use_details": {"code": "BEHANDLER", "system": OID_PURPOSE_OF_USE_DETAILS},
            "decision_ref": {
                "id": decision_ref or f"test-epj-{uuid.uuid4().hex[:12]}",
                "user_selected": True,
                "reason": reason,
            },
        },
        "patients": [
            {
                "identifier": {"id": national_id, "system": OID_PID},
                "point_of_care": {"id": person["orgnr_child"]},
            }
            for national_id in patients
        ],
    }
