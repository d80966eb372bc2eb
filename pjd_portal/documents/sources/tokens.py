"""Access tokens for remote document sources.

`ClientCredentialsTokenProvider` gets a token from the identity provider (HelseID; the dev
IdP in development) with the client credentials grant, the client authenticating with a
signed assertion (`private_key_jwt`, RFC 7523) made with the portal's own client key. The
token is cached until shortly before it expires. `StaticTokenProvider` is for tests and
for sources that take no token.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Protocol

import jwt
import requests

from pjd_portal.accounts import keys
from pjd_portal.documents.sources.base import TOKEN_UNAVAILABLE, SourceError

logger = logging.getLogger(__name__)

JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
# Renew this long before the token expires, so a request never carries a dying token.
EXPIRY_MARGIN_SECONDS = 30


class TokenProvider(Protocol):
    def access_token(self) -> str | None:
        """A bearer token, or None to send none. Raises SourceError(TOKEN_UNAVAILABLE)."""
        ...


class StaticTokenProvider:
    """Always the same token (or none)."""

    def __init__(self, token: str | None = None) -> None:
        self._token = token

    def access_token(self) -> str | None:
        return self._token


class ClientCredentialsTokenProvider:
    def __init__(
        self,
        *,
        token_endpoint: str,
        client_id: str,
        private_key: Callable[[], bytes],
        scope: str = "",
        timeout: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.token_endpoint = token_endpoint
        self.client_id = client_id
        self.scope = scope
        self.timeout = timeout
        self._private_key = private_key
        self._clock = clock
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires_at = 0.0

    def client_assertion(self) -> str:
        key = self._private_key()
        now = int(self._clock())
        claims = {
            "iss": self.client_id,
            "sub": self.client_id,
            "aud": self.token_endpoint,
            "jti": uuid.uuid4().hex,
            "iat": now,
            "nbf": now,
            "exp": now + 60,
        }
        return jwt.encode(claims, key, algorithm="RS256", headers={"typ": "JWT", "kid": keys.key_id(key)})

    def access_token(self) -> str | None:
        with self._lock:
            if self._token and self._clock() < self._expires_at - EXPIRY_MARGIN_SECONDS:
                return self._token
            data = {
                "grant_type": "client_credentials",
                "client_id": self.client_id,
                "client_assertion_type": JWT_BEARER,
                "client_assertion": self.client_assertion(),
            }
            if self.scope:
                data["scope"] = self.scope
            try:
                response = requests.post(self.token_endpoint, data=data, timeout=self.timeout)
                response.raise_for_status()
                body = response.json()
                token = body["access_token"]
                lifetime = float(body.get("expires_in", 60))
            except (requests.RequestException, ValueError, KeyError, TypeError) as exc:
                logger.warning("token endpoint %s failed: %s", self.token_endpoint, type(exc).__name__)
                raise SourceError(TOKEN_UNAVAILABLE, type(exc).__name__) from exc
            if not isinstance(token, str) or not token:
                raise SourceError(TOKEN_UNAVAILABLE, "no access_token")
            self._token = token
            self._expires_at = self._clock() + lifetime
            return token
