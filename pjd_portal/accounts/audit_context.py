"""Who and where, for the access log: the Actor and the PointOfCare of a request.

The log (auditlog/) knows nothing of requests, users or organisations; every caller that
writes an event passes `actor_of(request)` and `point_of_care_of(request)`. Both are built
once per request on first use and kept on it, keyed by the person, so an event written just
after a login in the same request names the person who has just logged in.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.http import HttpRequest

from pjd_portal.accounts.context import current_organisation, request_authorizations
from pjd_portal.accounts.models import Organisation, User
from pjd_portal.auditlog import chain
from pjd_portal.auditlog.actor import Actor, PointOfCare

logger = logging.getLogger(__name__)


def actor_of(request: HttpRequest, user: User | None = None) -> Actor:
    """The person behind this request's events: `user`, else the logged-in user, else
    nobody; with the request's id, the client's address and its user agent."""

    if user is None and request.user.is_authenticated:
        user = request.user
    key = user.pk if user is not None else None
    cached: tuple[int | None, Actor] | None = getattr(request, "_pjd_actor", None)
    if cached is not None and cached[0] == key:
        return cached[1]
    anonymous = anonymous_actor(request)
    if user is None:
        found = anonymous
    else:
        found = Actor(
            user_id=user.pk,
            pid=user.pid or "",
            hpr_number=user.hpr_number,
            name=user.display_name,
            authorizations=request_authorizations(request, user),
            request_id=anonymous.request_id,
            client_ip=anonymous.client_ip,
            user_agent=anonymous.user_agent,
        )
    request._pjd_actor = (key, found)  # type: ignore[attr-defined]
    return found


def anonymous_actor(request: HttpRequest, *, pid: str = "") -> Actor:
    """The request with no logged-in person in it: an anonymous caller, or an event caused
    by someone other than the browser's user (a forged login answer names the pid it gave)."""

    return Actor(
        pid=pid,
        request_id=getattr(request, "request_id", ""),
        client_ip=_client_ip(request),
        user_agent=request.META.get("HTTP_USER_AGENT", "")[:300],
    )


def point_of_care_of(request: HttpRequest) -> PointOfCare | None:
    """The organisation the person acts for in this session, and its legal entity."""

    return point_of_care_for(current_organisation(request))


def point_of_care_for(organisation: Organisation | None) -> PointOfCare | None:
    if organisation is None:
        return None
    legal_entity = organisation.parent if organisation.parent_id else organisation
    assert legal_entity is not None  # a parent id always has its row (PROTECT)
    return PointOfCare(
        orgnr=organisation.orgnr,
        name=organisation.name,
        legal_entity_orgnr=legal_entity.orgnr,
        legal_entity_name=legal_entity.name,
    )


def _client_ip(request: HttpRequest) -> str | None:
    """The client's address: behind our own proxies, the one the outermost proxy saw."""

    proxies = settings.TRUSTED_PROXY_COUNT
    forwarded = [a.strip() for a in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if a.strip()]
    if proxies > 0 and forwarded:
        candidate = forwarded[-proxies] if len(forwarded) >= proxies else forwarded[0]
        address = _address(candidate)
        if address is not None:
            return address
        logger.warning("unparseable X-Forwarded-For entry; logging the proxy's address")
    return _address(request.META.get("REMOTE_ADDR") or "")


def _address(value: str) -> str | None:
    # Stored in the form the hash covers (chain.canonical_ip, cached there).
    try:
        return chain.canonical_ip(value) if value else None
    except ValueError:
        return None  # not an address (a misconfigured server): logged as unknown, not a 500
