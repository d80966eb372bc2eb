"""What the portal knows about HelseID: its metadata, its signing keys, and the portal's
own client key. Every call to the provider has a timeout; answers are cached briefly.

Kept apart from oidc.py so the login views and the token checks share one cache and one
place that talks to the provider.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

import requests
from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse

logger = logging.getLogger(__name__)


class ProviderUnavailable(Exception):
    """The identity provider did not answer, or answered something unusable."""


class _Cache:
    """A tiny per-process cache; the metadata and JWKS are small and change rarely."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[str, tuple[float, Any]] = {}

    def get(self, key: str) -> Any:
        with self._lock:
            entry = self._values.get(key)
        if entry is None or entry[0] < time.monotonic():
            return None
        return entry[1]

    def put(self, key: str, value: Any, seconds: float) -> None:
        with self._lock:
            self._values[key] = (time.monotonic() + seconds, value)

    def clear(self) -> None:
        with self._lock:
            self._values.clear()


_cache = _Cache()


def clear_cache() -> None:
    _cache.clear()


def _get_json(url: str) -> dict[str, Any]:
    try:
        response = requests.get(url, timeout=settings.OIDC_TIMEOUT)
        response.raise_for_status()
        body = response.json()
    except (requests.RequestException, ValueError) as exc:
        logger.warning("identity provider: GET %s failed: %s", url, type(exc).__name__)
        raise ProviderUnavailable(url) from exc
    if not isinstance(body, dict):
        raise ProviderUnavailable(url)
    return body


def metadata() -> dict[str, Any]:
    """The provider's discovery document, checked to be for the configured issuer."""

    cached = _cache.get("metadata")
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    url = f"{settings.OIDC_ISSUER}/.well-known/openid-configuration"
    document = _get_json(url)
    if str(document.get("issuer", "")).rstrip("/") != settings.OIDC_ISSUER:
        # A discovery document for another issuer is a misconfiguration or an attack.
        logger.error(
            "identity provider: discovery issuer %r is not the configured one", document.get("issuer")
        )
        raise ProviderUnavailable(url)
    _cache.put("metadata", document, settings.OIDC_METADATA_CACHE_SECONDS)
    return document


def par_endpoint() -> str | None:
    """The pushed authorization request endpoint, when the provider advertises one."""

    if settings.OIDC_OP_PAR_ENDPOINT:
        return str(settings.OIDC_OP_PAR_ENDPOINT)
    if not settings.OIDC_USE_PAR:
        return None
    value = metadata().get("pushed_authorization_request_endpoint")
    return str(value) if value else None


JWKS_REFRESH_SECONDS = 60


def signing_keys(*, refresh: bool = False) -> list[dict[str, Any]]:
    """The provider's JWKS. `refresh` skips the cache: used once on an unknown `kid`,
    which is how a key rotation at the provider shows up."""

    cached = _cache.get("jwks")
    # A refetch at most once a minute: a token with a made-up `kid` must not make every
    # request wait on HelseID (nor let anyone turn the portal on HelseID).
    if cached is not None and (not refresh or _cache.get("jwks_refreshed")):
        return cached  # type: ignore[no-any-return]
    if refresh:
        _cache.put("jwks_refreshed", True, JWKS_REFRESH_SECONDS)
    keys = _get_json(settings.OIDC_OP_JWKS_ENDPOINT).get("keys", [])
    if not isinstance(keys, list):
        raise ProviderUnavailable(settings.OIDC_OP_JWKS_ENDPOINT)
    _cache.put("jwks", keys, settings.OIDC_JWKS_CACHE_SECONDS)
    return keys


def client_private_key() -> bytes:
    """The portal's private_key_jwt key: from the environment in production (a secret
    store injects it), else from the file the set-up generated."""

    pem = os.environ.get("OIDC_CLIENT_PRIVATE_KEY", "")
    if pem.strip():
        return pem.encode()
    path = settings.OIDC_RP_CLIENT_PRIVATE_KEY_FILE
    return path.read_bytes()


def provider_logout(request: HttpRequest, id_token: str | None) -> HttpResponse:
    """Send the browser on to end the HelseID session too (RP-initiated logout), and
    tell it to drop what it has cached from the portal.

    With an id token: a page whose form POSTs it to the end-session endpoint as
    `id_token_hint` (RP-Initiated Logout 1.0 allows a form POST), submitted at once by
    static/js/logout.js. The id token holds the clinician's national id, so it must not
    ride in a URL, where browser history, proxies and the provider's access log keep it.
    A valid hint is also what lets HelseID end its session without asking again.
    """

    target = request.build_absolute_uri(reverse("accounts:logged_out"))
    response: HttpResponse
    if id_token:
        # No `state`: the session that could have checked it on the way back is gone,
        # and the logged-out page is the same whoever arrives there. No CSRF token
        # either: the form goes to the provider, which must never see it.
        response = render(
            request,
            "accounts/logging_out.html",
            {
                "end_session_endpoint": settings.OIDC_OP_LOGOUT_ENDPOINT,
                "id_token_hint": id_token,
                "post_logout_redirect_uri": target,
                "client_id": settings.OIDC_RP_CLIENT_ID,
            },
        )
    else:
        response = HttpResponseRedirect(target)
    response["Clear-Site-Data"] = '"cache", "storage"'
    return response
