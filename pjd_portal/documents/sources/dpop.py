"""DPoP proofs (RFC 9449) for sources that ask for them.

A source that wants proof-of-possession answers 401 with `WWW-Authenticate: DPoP` and a
`DPoP-Nonce`; the MHD client then sends `Authorization: DPoP <token>` with a proof: a JWT
signed with the portal's DPoP key (ES256, the public key in its header), naming the method
and URL, the access token's hash, the server's nonce, a fresh time and a unique id. Which
sources want DPoP, and their latest nonce, is remembered per source in this process.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
import uuid
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import ec

_lock = threading.Lock()
_key: ec.EllipticCurvePrivateKey | None = None


def _signing_key() -> ec.EllipticCurvePrivateKey:
    """One key per process: a proof binds a request to whoever holds it, and a restart
    simply presents a new key (the source binds tokens per key, not per client)."""

    global _key  # noqa: PLW0603 - a process-wide key, made once
    with _lock:
        if _key is None:
            _key = ec.generate_private_key(ec.SECP256R1())
        return _key


def public_jwk() -> dict[str, str]:
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(_signing_key().public_key()))
    return {k: jwk[k] for k in ("kty", "crv", "x", "y")}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def proof(method: str, url: str, access_token: str, nonce: str | None) -> str:
    parts = urlsplit(url)
    htu = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))  # no query, no fragment
    claims: dict[str, object] = {
        "jti": uuid.uuid4().hex,
        "htm": method.upper(),
        "htu": htu,
        "iat": int(time.time()),
        "ath": _b64(hashlib.sha256(access_token.encode()).digest()),
    }
    if nonce:
        claims["nonce"] = nonce
    return jwt.encode(
        claims, _signing_key(), algorithm="ES256", headers={"typ": "dpop+jwt", "jwk": public_jwk()}
    )


@dataclass
class DpopState:
    required: bool = False
    nonce: str | None = None


_states: dict[str, DpopState] = {}


def state_for(source_key: str) -> DpopState:
    with _lock:
        return _states.setdefault(source_key, DpopState())


def reset() -> None:
    with _lock:
        _states.clear()
