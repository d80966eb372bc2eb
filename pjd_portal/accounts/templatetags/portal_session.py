"""`{% session_warning %}`: the idle-timeout warning dialog and its script, for base.html."""

from __future__ import annotations

from typing import Any

from django import template
from django.conf import settings

from pjd_portal.accounts.sessions import now_seconds, remaining_seconds

register = template.Library()


@register.inclusion_tag("accounts/_session_warning.html", takes_context=True)
def session_warning(context: template.Context) -> dict[str, Any]:
    """Only for a logged-in user; anonymous pages get nothing (no script either)."""

    request = context.get("request")
    user = getattr(request, "user", None)
    if request is None or user is None or not user.is_authenticated:
        return {"show": False}
    left = remaining_seconds(request.session, now_seconds())
    idle = settings.SESSION_IDLE_TIMEOUT
    idle_left, absolute_left = left if left is not None else (idle, idle)
    return {
        "show": True,
        "idle_seconds": idle,
        "warning_seconds": settings.SESSION_IDLE_WARNING_SECONDS,
        "idle_remaining": max(0, idle_left),
        "absolute_remaining": max(0, absolute_left),
    }
