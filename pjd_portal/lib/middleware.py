"""Small cross-cutting middleware. None of it decides access or writes audit rows."""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable

import structlog
from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.middleware.gzip import GZipMiddleware
from django.utils import translation
from django_htmx.http import HttpResponseClientRedirect

from pjd_portal.auditlog.services import AuditWriteFailed
from pjd_portal.lib.errors import method_not_allowed, service_unavailable
from pjd_portal.lib.redact import redact_national_ids

logger = logging.getLogger(__name__)

GetResponse = Callable[[HttpRequest], HttpResponse]


# An id our own proxy in front gave the request (nginx's $request_id, a UUID): letters,
# digits and - _ . :, 8 to 64 of them (the access log's column), and never eleven digits in
# a row, separators between or not (lib/redact.py: it would be taken out of every log line,
# and it could be a national id). Taken only with PJD_TRUSTED_PROXIES > 0: the id is the
# access log's page-view key (list_request_id), so a browser must not choose it.
_INCOMING_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{7,63}")


def incoming_request_id(value: str) -> str | None:
    if _INCOMING_REQUEST_ID.fullmatch(value) and redact_national_ids(value) == value:
        return value
    return None


def new_request_id() -> str:
    """A random hex id with no eleven digits in a row: about one uuid4 in eight has such a
    run, and lib/logs.py would take it out of every log line, and the id with it."""

    while True:
        candidate = uuid.uuid4().hex
        if redact_national_ids(candidate) == candidate:
            return candidate


class RequestIdMiddleware:
    """Give every request an id that the audit trail and logs can both carry: the one a
    proxy in front sent in X-Request-ID when it is well-formed, else a new one; echoed in
    the answer's X-Request-ID and bound to every log line of the request (lib/logs.py)."""

    def __init__(self, get_response: GetResponse) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        offered = request.headers.get("X-Request-ID", "") if settings.TRUSTED_PROXY_COUNT > 0 else ""
        request_id = incoming_request_id(offered) or new_request_id()
        request.request_id = request_id  # type: ignore[attr-defined]
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        started = time.perf_counter()
        try:
            response = self.get_response(request)
        finally:
            structlog.contextvars.clear_contextvars()
        response["X-Request-ID"] = request_id
        if settings.SERVER_TIMING:
            # The server's own time for this answer (W3C Server-Timing), for the browser
            # tests' step timings and an operator's devtools; a streamed document counts
            # until its first byte is ready, not until the last has left.
            response["Server-Timing"] = f"app;dur={(time.perf_counter() - started) * 1000:.1f}"
        return response


class DatabaseUnavailableMiddleware:
    """A database outage is an operational fault, not a bug: answer 503, never 500."""

    def __init__(self, get_response: GetResponse) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if isinstance(exception, AuditWriteFailed):
            return service_unavailable(request, reason="audit")
        if isinstance(exception, (OperationalError, InterfaceError)):
            logger.error("database unavailable: %s", type(exception).__name__)
            return service_unavailable(request, reason="database")
        if isinstance(exception, DatabaseError):
            logger.exception("database error")
            return service_unavailable(request, reason="database")
        return None


class NoStoreMiddleware:
    """Pages about patients must not be kept by the browser or any proxy.

    Applied to every dynamic response: the portal has almost no page without patient
    data or session state worth caching, and a forgotten view is worse than a lost
    cache hit. Static files are served elsewhere and keep their own headers.
    """

    def __init__(self, get_response: GetResponse) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        response["Cache-Control"] = "no-store"
        response["Pragma"] = "no-cache"
        vary = response.get("Vary", "")
        if "HX-Request" not in vary:
            response["Vary"] = f"{vary}, HX-Request" if vary else "HX-Request"
        return response


class HtmxRedirectMiddleware:
    """An htmx request never gets a redirect: htmx would follow it and swap the page it
    lands on (a login page, say) into a fragment. Any 3xx answer to an htmx request
    becomes a 200 with `HX-Redirect`, and the browser loads the target as a whole page.

    Sits inside NoStoreMiddleware, so the converted answer still gets its headers.
    """

    def __init__(self, get_response: GetResponse) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if request.headers.get("HX-Request") != "true" or not 300 <= response.status_code < 400:
            return response
        location = response.get("Location")
        if not location:
            return response
        converted = HttpResponseClientRedirect(location)
        for header, value in response.items():
            if header.lower() not in {"location", "content-type", "content-length"}:
                converted[header] = value
        converted.cookies = response.cookies
        return converted


class LanguageMiddleware:
    """Norwegian bokmål unless the user chose another language (the set_language cookie).

    Django's LocaleMiddleware would follow the browser's Accept-Language, so a clinic PC
    with an English browser would get English pages. The service speaks Norwegian by
    default; English is an explicit choice in the footer.
    """

    def __init__(self, get_response: GetResponse) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        chosen = request.COOKIES.get(settings.LANGUAGE_COOKIE_NAME, "")
        language = chosen if chosen in dict(settings.LANGUAGES) else settings.LANGUAGE_CODE
        translation.activate(language)
        request.LANGUAGE_CODE = language
        response = self.get_response(request)
        response.headers.setdefault("Content-Language", language)
        return response


class MethodNotAllowedPageMiddleware:
    """Django answers a wrong method (e.g. reloading a POST-only address) with an empty
    405; give the user a page that says what to do instead."""

    def __init__(self, get_response: GetResponse) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if response.status_code == 405 and not response.content:
            page = method_not_allowed(request)
            if "Allow" in response:
                page["Allow"] = response["Allow"]
            return page
        return response


class CompressedPagesMiddleware(GZipMiddleware):
    """Pages and JSON gzip-compressed for a browser that takes it (a 17 KB list fragment
    travels as about 3 KB). Django's GZipMiddleware, which pads every compressed answer with
    random bytes (Heal the Breach), so that its length does not tell an attacker whether a
    guess matched a secret in the page (BREACH); the CSRF token is masked anew on every
    answer too. Only text: a PDF is compressed already (compressing it again costs CPU for
    nothing), and static files come compressed from WhiteNoise."""

    def process_response(self, request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
        if not response.get("Content-Type", "").startswith(COMPRESSED_TYPES):
            return response
        return super().process_response(request, response)


COMPRESSED_TYPES = ("text/html", "application/json", "application/fhir+json")
