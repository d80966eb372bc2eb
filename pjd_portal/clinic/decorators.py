"""View decorators. They ask the policy module; they never decide by themselves."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.http import HttpRequest
from django.http.response import HttpResponseBase
from django.shortcuts import render

from pjd_portal.access import policy, selectors
from pjd_portal.accounts.audit_context import actor_of, point_of_care_of
from pjd_portal.accounts.caller import caller_of
from pjd_portal.auditlog import events
from pjd_portal.auditlog.events import Outcome
from pjd_portal.auditlog.services import record_event

View = Callable[..., HttpResponseBase]  # HttpResponse or StreamingHttpResponse


def clinician_required(view: View) -> View:
    """Only users whom the policy lets use the clinical portal get past this."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        decision = policy.may_use_clinical_portal(selectors.clinician_facts(caller_of(request)))
        if not decision:
            record_event(
                events.ACCESS_DENIED(
                    outcome=Outcome.DENIED, reason_code=decision.reason_code, view=view.__name__
                ),
                actor=actor_of(request),
                where=point_of_care_of(request),
            )
            return render(
                request,
                "errors/error.html",
                {"status": 403, "title": "", "message": decision.message, "no_clinician": True},
                status=403,
            )
        return view(request, *args, **kwargs)

    return wrapper
