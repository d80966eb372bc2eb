"""DPoP proofs (RFC 9449) for sources that ask for them.

A source that wants proof-of-possession answers 401 with `WWW-Authenticate: DPoP` and a
`DPoP-Nonce`; the MHD client then sends `Authorization: DPoP <token>` with a proof: a JWT
signed with the portal's DPoP key (ES256, the public key in its header), naming the method
and URL, the access token's hash, the server's nonce, a fresh time and a unique id.

Which sources want DPoP, and each one's latest nonce, is kept on the shared cache (and in
this process, for when the cache does not answer): a nonce one instance was given is the
one every instance sends, so a source that rotates its nonce does not answer every instance
with a 401 of its own, and an instance that learnt a source wants DPoP spares the others
the bearer try. The key is not shared, by choice: the access tokens it is used with are this
process's own (tokens.py keeps them in memory, got anew per process), and a token is bound
to the key it was first shown with; a private key on the cache would put it wherever the
cache is read. A new process brings a new key and a new token together.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import threading
import time
import uuid
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from django.core.cache import cache

logger = logging.getLogger(__name__)
# A source's DPoP state is kept this long after it was last learnt.
STATE_SECONDS = 3600

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


@dataclass(frozen=True)
class DpopState:
    required: bool = False
    nonce: str | None = None


_states: dict[str, DpopState] = {}  # this process's copy, for when the cache does not answer


def _cache_key(source_key: str) -> str:
    return f"pjd:dpop:{hashlib.sha256(source_key.encode()).hexdigest()[:32]}"


def state_for(source_key: str) -> DpopState:
    """What is known of this source: whether it wants DPoP, and its latest nonce."""

    try:
        shared = cache.get(_cache_key(source_key))
    except Exception as exc:  # noqa: BLE001 - whatever the cache backend raises: this process's copy
        logger.warning("DPoP state unavailable: %s", type(exc).__name__)
        shared = None
    if isinstance(shared, dict):
        nonce = shared.get("nonce")
        return DpopState(
            required=bool(shared.get("required")), nonce=nonce if isinstance(nonce, str) else None
        )
    with _lock:
        return _states.get(source_key, DpopState())


def remember(source_key: str, *, nonce: str | None = None, required: bool = False) -> None:
    """The source gave a nonce, or asked for DPoP: kept for every process. A source once
    known to want DPoP stays so (a later answer without the header changes nothing)."""

    if not nonce and not required:
        return
    known = state_for(source_key)
    state = DpopState(required=known.required or required, nonce=nonce or known.nonce)
    if state == known:
        return
    with _lock:
        _states[source_key] = state
    try:
        cache.set(_cache_key(source_key), {"required": state.required, "nonce": state.nonce}, STATE_SECONDS)
    except Exception as exc:  # noqa: BLE001
        logger.warning("DPoP state not shared: %s", type(exc).__name__)


def reset() -> None:
    with _lock:
        known = list(_states)
        _states.clear()
    try:
        cache.delete_many([_cache_key(k) for k in known])
    except Exception:  # noqa: BLE001, S110 - nothing shared to forget
        pass
