"""The portal's OIDC client key pair (private_key_jwt)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa


def key_id(private_pem: bytes) -> str:
    """The key's RFC 7638 thumbprint: stable for the key, so a new key gets a new kid and
    the provider can hold old and new during a rotation."""

    key = serialization.load_pem_private_key(private_pem, password=None)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))  # type: ignore[arg-type]
    canonical = json.dumps({k: jwk[k] for k in ("e", "kty", "n")}, separators=(",", ":"), sort_keys=True)
    digest = hashlib.sha256(canonical.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def public_jwks(private_pem: bytes) -> dict[str, Any]:
    key = serialization.load_pem_private_key(private_pem, password=None)
    jwk: dict[str, Any] = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))  # type: ignore[arg-type]
    jwk.update({"kid": key_id(private_pem), "use": "sig", "alg": "RS256"})
    return {"keys": [jwk]}


def ensure_client_key(private_path: Path, jwks_path: Path) -> bool:
    """Create the key pair if missing. Returns True when a new key was made."""

    created = False
    if not private_path.exists():
        private_path.parent.mkdir(parents=True, exist_ok=True)
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)
        created = True
    # Always rewritten: the dev provider reads it, and it must match the key in use.
    jwks_path.write_text(json.dumps(public_jwks(private_path.read_bytes()), indent=2))
    return created
