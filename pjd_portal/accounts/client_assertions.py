"""API clients that prove who they are with a signed JWT (the citizen portal).

The client sends `Authorization: Bearer <jwt>`, a short-lived assertion it signed with its
own private key (RS256), checked against the client's public keys (a JWKS from settings):
`iss` and `sub` are the client id, `aud` is the absolute URL of the endpoint called,
`exp` at most five minutes ahead, and a `jti` used once. Nothing else is accepted: no
`alg: none`, no HMAC (which would turn a public key into a shared secret), no other key
types, no token without one of those claims, no token seen before (by any instance: the
`jti` is recorded in PostgreSQL, ClientAssertionUse, whose primary key refuses a second use).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from django.conf import settings
from django.db import IntegrityError, transaction
from django.http import HttpRequest
from django.utils import timezone

from pjd_portal.accounts.models import ClientAssertionUse

logger = logging.getLogger(__name__)

ALGORITHM = "RS256"
MAX_JTI_LENGTH = 200
MAX_TOKEN_LENGTH = 8192


class ClientAuthenticationFailed(Exception):
    """The request does not carry a valid assertion. `code` says why (for the log only)."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


@dataclass(frozen=True)
class ClientAssertion:
    client_id: str
    jti: str
    expires_at: int


def load_jwks(value: str) -> dict[str, Any]:
    """A JWKS from a setting: the JSON itself, or the path of a file holding it."""

    text = value.strip()
    if not text:
        raise ValueError("no JWKS configured")
    if not text.startswith("{"):
        text = Path(text).read_text(encoding="utf-8")
    jwks = json.loads(text)
    if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list):
        raise ValueError("not a JWKS")
    return jwks


def _signing_key(jwks: dict[str, Any], kid: str | None) -> Any:
    keys = [
        k
        for k in jwks["keys"]
        if isinstance(k, dict)
        and k.get("kty") == "RSA"
        and k.get("use", "sig") == "sig"
        and k.get("alg", ALGORITHM) == ALGORITHM
    ]
    if kid is not None:
        keys = [k for k in keys if k.get("kid") == kid]
    if len(keys) != 1:
        # No key with this kid, or no kid and more than one key to choose from.
        raise ClientAuthenticationFailed("unknown_key")
    return jwt.PyJWK.from_dict(keys[0], algorithm=ALGORITHM).key


def bearer_token(request: HttpRequest) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise ClientAuthenticationFailed("no_bearer_token")
    if len(token) > MAX_TOKEN_LENGTH:
        raise ClientAuthenticationFailed("token_too_long")
    return token


def verify_assertion(
    token: str,
    *,
    client_id: str,
    audience: str,
    jwks: dict[str, Any],
    now: float | None = None,
    max_lifetime: int = 300,
    leeway: int = 30,
) -> ClientAssertion:
    """Check one assertion's signature and claims. Raises ClientAuthenticationFailed.

    Does not record the `jti`; `authenticate_client` does, so a token is used once.
    """

    now = time.time() if now is None else now
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise ClientAuthenticationFailed("malformed") from exc
    if header.get("alg") != ALGORITHM:
        raise ClientAuthenticationFailed("algorithm_not_allowed")
    kid = header.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise ClientAuthenticationFailed("malformed")
    try:
        key = _signing_key(jwks, kid)
        claims: dict[str, Any] = jwt.decode(
            token,
            key=key,
            algorithms=[ALGORITHM],
            audience=audience,
            issuer=client_id,
            leeway=leeway,
            options={"require": ["iss", "sub", "aud", "exp", "jti"], "verify_signature": True},
        )
    except ClientAuthenticationFailed:
        raise
    except jwt.ExpiredSignatureError as exc:
        raise ClientAuthenticationFailed("expired") from exc
    except jwt.InvalidAudienceError as exc:
        raise ClientAuthenticationFailed("wrong_audience") from exc
    except jwt.InvalidIssuerError as exc:
        raise ClientAuthenticationFailed("wrong_issuer") from exc
    except jwt.InvalidSignatureError as exc:
        raise ClientAuthenticationFailed("bad_signature") from exc
    except (jwt.PyJWTError, ValueError, TypeError, KeyError) as exc:
        raise ClientAuthenticationFailed("invalid") from exc
    if claims.get("sub") != client_id:
        raise ClientAuthenticationFailed("wrong_subject")
    exp = claims["exp"]
    if not isinstance(exp, int | float) or exp > now + max_lifetime + leeway:
        raise ClientAuthenticationFailed("lifetime_too_long")
    jti = claims["jti"]
    if not isinstance(jti, str) or not jti or len(jti) > MAX_JTI_LENGTH:
        raise ClientAuthenticationFailed("bad_jti")
    return ClientAssertion(client_id=client_id, jti=jti, expires_at=int(exp))


def authenticate_client(request: HttpRequest, *, audience: str) -> ClientAssertion:
    """The API client behind this request, by its bearer assertion, each `jti` once.

    Raises ClientAuthenticationFailed; never anything else for a bad or missing token, and
    for a portal without a configured client every call fails the same way.
    """

    client_id = settings.CITIZEN_PORTAL_CLIENT_ID
    if not client_id:
        raise ClientAuthenticationFailed("no_client_configured")
    token = bearer_token(request)
    try:
        jwks = load_jwks(settings.CITIZEN_PORTAL_JWKS)
    except (OSError, ValueError) as exc:
        logger.error("citizen portal JWKS unusable: %s", type(exc).__name__)
        raise ClientAuthenticationFailed("no_keys_configured") from exc
    assertion = verify_assertion(
        token,
        client_id=client_id,
        audience=audience,
        jwks=jwks,
        max_lifetime=settings.CLIENT_ASSERTION_MAX_LIFETIME_SECONDS,
        leeway=settings.CLIENT_ASSERTION_LEEWAY_SECONDS,
    )
    _use_once(client_id, assertion)
    return assertion


def _use_once(client_id: str, assertion: ClientAssertion) -> None:
    """Record the `jti`, or refuse it as replayed: one row per use, in the database every
    instance writes to, kept until the token could no longer be accepted anyway."""

    expires = assertion.expires_at + settings.CLIENT_ASSERTION_LEEWAY_SECONDS
    digest = hashlib.sha256(f"{client_id}\n{assertion.jti}".encode()).hexdigest()
    try:
        with transaction.atomic():
            ClientAssertionUse.objects.create(
                assertion_hash=digest, expires_at=datetime.datetime.fromtimestamp(expires, tz=datetime.UTC)
            )
    except IntegrityError as exc:
        raise ClientAuthenticationFailed("replayed") from exc
    # Now and then, the uses past their window go (a cheap indexed delete).
    if secrets.randbelow(100) == 0:
        ClientAssertionUse.objects.filter(expires_at__lt=timezone.now()).delete()
