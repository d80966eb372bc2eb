"""Which parts of the administration area the logged-in person may use, for the links.

The policy decides; the templates only show a link for a part the policy allows, so no
one is sent to a page that answers them with a 404."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from pjd_portal.access import policy, selectors
from pjd_portal.accounts.caller import caller_of


def forvaltning_links(request: HttpRequest) -> dict[str, Any]:
    if not getattr(request, "user", None) or not request.user.is_authenticated:
        return {}
    staff = selectors.staff_facts(caller_of(request))
    return {
        "may_read_patient_access_log": bool(policy.may_read_patient_access_log(staff)),
        "may_manage_privacy_choices": bool(policy.may_manage_privacy_choices(staff)),
        "may_review_access_log": bool(policy.may_review_access_log(staff)),
        "may_administer_access": bool(policy.may_administer_access(staff)),
    }
