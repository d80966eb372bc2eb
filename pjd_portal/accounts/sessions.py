"""Session lifetime: an idle timeout, an absolute timeout, and the endpoints behind the
warning dialog (static/js/session.js).

The session carries two stamps in epoch seconds: when the user logged in and when the
user last did something. Both are set at login (the `user_logged_in` signal, so every
login path is covered). A request is activity unless it says it is a background request
(`X-PJD-Background: 1`) or goes to a view marked as background (the status endpoint);
only a request that reaches its view counts, so a POST refused for its CSRF token does
not keep a session alive. A session past either limit, or one without the stamps (from
before this code), is ended: one audit event, `auth.logout`, and a redirect to the
public session-expired page (for htmx an `HX-Redirect`, for JSON clients a 401).
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.contrib import auth
from django.contrib.auth.signals import user_logged_in
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseClientRedirect

from pjd_portal.accounts.audit_context import actor_of, point_of_care_of
from pjd_portal.accounts.provider import provider_logout
from pjd_portal.accounts.session_store import SessionStoreUnavailable
from pjd_portal.auditlog import events
from pjd_portal.auditlog.events import Outcome
from pjd_portal.auditlog.services import AuditWriteFailed, record_event
from pjd_portal.lib.errors import service_unavailable

logger = logging.getLogger(__name__)

GetResponse = Callable[[HttpRequest], HttpResponse]

SESSION_LOGIN_AT_KEY = "pjd_login_at"
SESSION_ACTIVITY_AT_KEY = "pjd_activity_at"
# A random key made at each login: the handles and attests of that login carry it
# (access/handles.py), so that none of them opens anything after a logout and a new login
# of the same person, though the person, organisation and hour are the same.
SESSION_LOGIN_KEY_KEY = "pjd_login_key"
BACKGROUND_HEADER = "X-PJD-Background"

REASON_IDLE = "idle"
REASON_ABSOLUTE = "absolute"
REASON_UNSTAMPED = "no_timestamps"


def now_seconds() -> int:
    return int(time.time())


def is_background(request: HttpRequest) -> bool:
    return request.headers.get(BACKGROUND_HEADER, "").strip() == "1"


def _stamp(session: Any, key: str) -> int | None:
    value = session.get(key)
    # bool is an int subclass; a stamp is never one.
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return None


def remaining_seconds(session: Any, now: int) -> tuple[int, int] | None:
    """Seconds left before the idle and the absolute limit; None without stamps."""

    login_at = _stamp(session, SESSION_LOGIN_AT_KEY)
    activity_at = _stamp(session, SESSION_ACTIVITY_AT_KEY)
    if login_at is None or activity_at is None:
        return None
    idle_left = settings.SESSION_IDLE_TIMEOUT - (now - activity_at)
    absolute_left = settings.SESSION_ABSOLUTE_TIMEOUT - (now - login_at)
    return idle_left, absolute_left


def expiry_reason(session: Any, now: int) -> str | None:
    """Why the session has ended, or None while it is still valid."""

    left = remaining_seconds(session, now)
    if left is None:
        return REASON_UNSTAMPED
    idle_left, absolute_left = left
    if absolute_left <= 0:
        return REASON_ABSOLUTE
    if idle_left <= 0:
        return REASON_IDLE
    return None


def touch(request: HttpRequest) -> None:
    """Record activity now."""

    request.session[SESSION_ACTIVITY_AT_KEY] = now_seconds()


def touch_if_stale(request: HttpRequest) -> None:
    """Record activity, unless the stamp moved less than SESSION_ACTIVITY_STEP_SECONDS ago:
    then the session is not written at all (most requests). The stamp is then at most that
    much older than the last activity, so the idle limit comes early, never late."""

    activity_at = _stamp(request.session, SESSION_ACTIVITY_AT_KEY)
    now = now_seconds()
    if activity_at is None or now - activity_at >= settings.SESSION_ACTIVITY_STEP_SECONDS:
        request.session[SESSION_ACTIVITY_AT_KEY] = now


@receiver(user_logged_in, dispatch_uid="pjd_session_stamps")
def stamp_login(sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    if request is None or not hasattr(request, "session"):
        return
    now = now_seconds()
    request.session[SESSION_LOGIN_AT_KEY] = now
    request.session[SESSION_ACTIVITY_AT_KEY] = now
    request.session[SESSION_LOGIN_KEY_KEY] = secrets.token_hex(16)


def login_key_of(request: HttpRequest) -> str:
    """This login's key (see SESSION_LOGIN_KEY_KEY); blank without a session."""

    session = getattr(request, "session", None)
    value = session.get(SESSION_LOGIN_KEY_KEY, "") if session is not None else ""
    return value if isinstance(value, str) else ""


def background_view(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Mark a view whose requests never count as activity."""

    view.pjd_background = True  # type: ignore[attr-defined]
    return view


# Token-authenticated API views live here: no session is read, ended or kept alive there.
SESSIONLESS_PATH_PREFIX = "/api/"


def sessionless_view(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Mark a view that authenticates its caller by token, never by the login session
    (it must also sit under SESSIONLESS_PATH_PREFIX, which the middleware checks before
    any view is chosen)."""

    view.pjd_background = True  # type: ignore[attr-defined]
    view.pjd_sessionless = True  # type: ignore[attr-defined]
    return view


def _wants_json(request: HttpRequest) -> bool:
    return request.get_preferred_type(["text/html", "application/json"]) == "application/json"


def _expired_json(status: int = 401) -> JsonResponse:
    return JsonResponse(
        {"authenticated": False, "expired_url": reverse("accounts:session_expired")}, status=status
    )


class SessionTimeoutMiddleware:
    """End sessions past the idle or absolute limit; count non-background requests as activity.

    Sits after AuthenticationMiddleware (it needs request.user) and, in settings, after
    NoStoreMiddleware and the htmx redirect middleware, so its own answers get their headers.
    """

    def __init__(self, get_response: GetResponse) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = getattr(request, "user", None)
        sessionless = request.path_info.startswith(SESSIONLESS_PATH_PREFIX)
        if user is not None and not sessionless and user.is_authenticated:
            now = now_seconds()
            reason = expiry_reason(request.session, now)
            if reason is not None:
                response = self._expire(request, reason, now)
                if response is not None:
                    return response
        return self.get_response(request)

    def process_view(
        self,
        request: HttpRequest,
        view_func: Callable[..., HttpResponse],
        view_args: Any,
        view_kwargs: Any,
    ) -> None:
        # Called only for requests that reached a view (CSRF already checked).
        if (
            request.user.is_authenticated
            and not is_background(request)
            and not getattr(view_func, "pjd_background", False)
        ):
            touch_if_stale(request)

    def _expire(self, request: HttpRequest, reason: str, now: int) -> HttpResponse | None:
        session = request.session
        login_at = _stamp(session, SESSION_LOGIN_AT_KEY)
        activity_at = _stamp(session, SESSION_ACTIVITY_AT_KEY)
        details: dict[str, Any] = {"background": is_background(request)}
        if login_at is not None:
            details["session_seconds"] = now - login_at
        if activity_at is not None:
            details["idle_seconds"] = now - activity_at
        try:
            record_event(
                events.SESSION_EXPIRED(outcome=Outcome.DENIED, reason_code=reason, **details),
                actor=actor_of(request),
                where=point_of_care_of(request),
            )
        except AuditWriteFailed:
            # The session ends all the same: keeping it alive for want of a log row
            # would be the worse failure. record_event has logged the fault.
            logger.error("session expired (%s) without an audit event", reason)
        id_token = session.get("oidc_id_token")
        try:
            auth.logout(request)
        except SessionStoreUnavailable:
            # Ended in the database, not yet where every process reads it: say so.
            return service_unavailable(request, reason="database")
        if request.path_info == reverse("accounts:logout") and request.method == "POST":
            # "Log out" clicked after the timeout: the portal session is gone already,
            # but the HelseID session must end too, as with an ordinary logout.
            return provider_logout(request, id_token)
        expired_url = reverse("accounts:session_expired")
        if request.path_info == expired_url and request.method in ("GET", "HEAD"):
            return None  # the expired page itself: show it, now to an anonymous user
        if getattr(request, "htmx", False) or request.headers.get("HX-Request") == "true":
            return HttpResponseClientRedirect(expired_url)
        if _wants_json(request):
            return _expired_json()
        return HttpResponseRedirect(expired_url)


# --- views --------------------------------------------------------------------------


@require_GET
def session_expired(request: HttpRequest) -> HttpResponse:
    """The public page after a timeout, with the login button."""

    if request.user.is_authenticated:
        # A live session: nothing has expired (another tab may have kept it alive).
        return redirect("accounts:home")
    return render(
        request,
        "accounts/session_expired.html",
        {
            "idle_minutes": max(1, round(settings.SESSION_IDLE_TIMEOUT / 60)),
            "absolute_hours": max(1, round(settings.SESSION_ABSOLUTE_TIMEOUT / 3600)),
        },
    )


@background_view
@require_GET
def session_status(request: HttpRequest) -> HttpResponse:
    """Seconds left in this session, for the warning dialog. Never counts as activity."""

    if not request.user.is_authenticated:
        return _expired_json()
    left = remaining_seconds(request.session, now_seconds())
    if left is None:  # cannot happen behind the middleware; be safe anyway
        return _expired_json()
    idle_left, absolute_left = left
    return JsonResponse(
        {
            "authenticated": True,
            "remaining": max(0, min(idle_left, absolute_left)),
            "idle_remaining": max(0, idle_left),
            "absolute_remaining": max(0, absolute_left),
            "limit": REASON_ABSOLUTE if absolute_left <= idle_left else REASON_IDLE,
            "warning": settings.SESSION_IDLE_WARNING_SECONDS,
            "expired_url": reverse("accounts:session_expired"),
        }
    )


@require_POST
def session_keepalive(request: HttpRequest) -> HttpResponse:
    """The dialog's "Continue": counts as activity (CSRF-protected like every POST)."""

    if not request.user.is_authenticated:
        return _expired_json()
    touch(request)
    response = HttpResponse(status=204)
    del response["Content-Type"]  # no body
    return response
