"""The one gate of the administration area: a policy function decides, everyone it
refuses gets the 404 of a missing page (the area cannot be discovered), whatever the
method, and a logged-in person's attempt is logged."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.http import Http404, HttpRequest
from django.http.response import HttpResponseBase

from pjd_portal.access import policy, selectors
from pjd_portal.accounts.audit_context import actor_of, point_of_care_of
from pjd_portal.accounts.caller import caller_of
from pjd_portal.auditlog import events
from pjd_portal.auditlog.events import Outcome
from pjd_portal.auditlog.services import record_event

View = Callable[..., HttpResponseBase]
Rule = Callable[[policy.StaffFacts | None], policy.Decision]


def staff_required(rule: Rule, *, pass_staff: bool = False) -> Callable[[View], View]:
    """Let through only those `rule` allows. With `pass_staff`, the view gets the
    person's StaffFacts as its second argument."""

    def decorator(view: View) -> View:
        @wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            staff = selectors.staff_facts(caller_of(request)) if request.user.is_authenticated else None
            decision = rule(staff)
            if not decision or staff is None:
                if staff is not None:
                    record_event(
                        events.ACCESS_DENIED(
                            outcome=Outcome.DENIED, reason_code=decision.reason_code, view=view.__name__
                        ),
                        actor=actor_of(request),
                        where=point_of_care_of(request),
                    )
                raise Http404()
            if pass_staff:
                return view(request, staff, *args, **kwargs)
            return view(request, *args, **kwargs)

        return wrapper

    return decorator


# The auditors' gate: the log review and its review queue, one scope (StaffFacts passed on).
auditor_required = staff_required(policy.may_review_access_log, pass_staff=True)
