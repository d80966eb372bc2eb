"""One log line per request, and the request figures for /metrics.

The line: the request id (bound by lib/middleware.RequestIdMiddleware), the portal's own
user id (User.pk: never the pid or an HPR number), the organisation acted for (its orgnr),
the method, the route's name (never the path: paths hold handles and document ids), the
status and the time in milliseconds (a streamed document: until its first byte is ready).

The user and the organisation are those the request has already resolved: the log never
loads a session or a user for itself (that would be queries on requests that made none, a
probe's or an API call's).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import structlog
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils.functional import empty

from pjd_portal.accounts.context import resolved_organisation
from pjd_portal.lib.metrics import HTTP_REQUEST_SECONDS, HTTP_REQUESTS

logger = structlog.get_logger("pjd_portal.request")

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def _resolved_user_id(request: HttpRequest) -> int | None:
    user = request.__dict__.get("user")  # AuthenticationMiddleware's lazy object, if set
    if user is None:
        return None
    wrapped = getattr(user, "_wrapped", user)
    if wrapped is empty or not getattr(wrapped, "is_authenticated", False):
        return None
    pk = getattr(wrapped, "pk", None)
    return pk if isinstance(pk, int) else None


def _route(request: HttpRequest) -> str:
    match = getattr(request, "resolver_match", None)
    return match.view_name if match is not None and match.view_name else "unresolved"


class RequestLogMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = self.get_response(request)
        seconds = time.perf_counter() - started
        route = _route(request)
        method = request.method if request.method in _METHODS else "OTHER"
        HTTP_REQUESTS.labels(route=route, method=method, status=str(response.status_code)).inc()
        HTTP_REQUEST_SECONDS.labels(route=route).observe(seconds)
        if settings.REQUEST_LOG:
            organisation = resolved_organisation(request)
            logger.info(
                "request",
                user_id=_resolved_user_id(request),
                organisation=organisation.orgnr if organisation is not None else None,
                method=method,
                route=route,
                status=response.status_code,
                duration_ms=round(seconds * 1000, 1),
            )
        return response
