"""Error pages. Each says what happened in plain words; none shows a stack trace."""

from __future__ import annotations

import sys

from django.db import DatabaseError, InterfaceError
from django.http import HttpRequest, HttpResponse
from django.template.loader import render_to_string
from django.utils.translation import gettext as _

from pjd_portal.auditlog.services import AuditWriteFailed


def _render(request: HttpRequest, *, status: int, title: str, message: str) -> HttpResponse:
    context = {"title": title, "message": message, "status": status}
    body: str
    try:
        body = render_to_string("errors/error.html", context, request=request)
    except Exception:  # noqa: BLE001 - the error page must not fail on a broken context
        try:
            # Without the request no context processor runs, so no database is needed
            # (a database outage is one reason to be here).
            body = render_to_string("errors/error.html", context)
        except Exception:  # noqa: BLE001
            body = f"<!doctype html><title>{status}</title><h1>{status}</h1><p>{message}</p>"
    response = HttpResponse(body, status=status)
    response["Cache-Control"] = "no-store"
    return response


def service_unavailable(request: HttpRequest, *, reason: str) -> HttpResponse:
    messages = {
        "database": _(
            "The portal cannot reach its database right now. Nothing was shown or changed. "
            "Please try again in a minute."
        ),
        "audit": _(
            "The access could not be logged, so the document is not shown. "
            "Nothing was opened. Please try again in a minute."
        ),
        "source": _(
            "The document cannot be fetched from where it is kept right now. Please try again in a minute."
        ),
    }
    response = _render(
        request,
        status=503,
        title=_("Temporarily unavailable"),
        message=messages.get(reason, messages["database"]),
    )
    response["Retry-After"] = "30"
    return response


def too_many_requests(request: HttpRequest, *, title: str, message: str, retry_after: int) -> HttpResponse:
    """A rate limit's refusal (lib/rate_limits.py): 429, and when to try again."""

    response = _render(request, status=429, title=title, message=message)
    response["Retry-After"] = str(retry_after)
    return response


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    return _render(
        request,
        status=403,
        title=_("The form has expired"),
        message=_(
            "The form could not be accepted because its security token was missing or "
            "expired. Nothing was changed. Go back, reload the page and try again."
        ),
    )


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return _render(
        request,
        status=404,
        title=_("Not found"),
        message=_("The page or document was not found, or you do not have access to it."),
    )


def forbidden(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return _render(
        request,
        status=403,
        title=_("No access"),
        message=_("You do not have access to this part of the portal."),
    )


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return _render(
        request,
        status=400,
        title=_("Invalid request"),
        message=_("The request could not be understood. Nothing was changed."),
    )


def method_not_allowed(request: HttpRequest) -> HttpResponse:
    return _render(
        request,
        status=405,
        title=_("This page cannot be opened this way"),
        message=_(
            "The address is used by a form and cannot be opened or reloaded on its own. "
            "Nothing was changed. Start again from the front page."
        ),
    )


def server_error(request: HttpRequest) -> HttpResponse:
    # A database fault can surface outside any view (the authentication middleware loading
    # the user, the session timeout's check, the session saved on the way out), where
    # DatabaseUnavailableMiddleware cannot see it: the same 503 page as in a view.
    exception = sys.exc_info()[1]
    if isinstance(exception, AuditWriteFailed):
        return service_unavailable(request, reason="audit")
    if isinstance(exception, (DatabaseError, InterfaceError)):
        return service_unavailable(request, reason="database")
    return _render(
        request,
        status=500,
        title=_("Something went wrong"),
        message=_("An unexpected error occurred. Nothing was shown. The error has been logged."),
    )
