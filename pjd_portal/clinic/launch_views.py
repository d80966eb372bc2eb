"""The launch from the EPJ, in the browser: `/start/` takes the one-time code and its
verifier (a form POST from the EPJ), the clinician is logged in through HelseID (silently
where HelseID's session allows), and `/start/fortsett/` turns the EPJ's attest into the
lookup and the basis and shows the document list (docs/epj.md, "The launch").

Every refusal is a page of its own and an event: an unknown, used or expired code, a wrong
verifier, another person or organisation than the attest's, an attest for no patient or
for several, a purpose of use the portal does not take.
"""

from __future__ import annotations

import logging
from urllib.parse import urlencode

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext_lazy as _
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods

from pjd_portal.access import policy
from pjd_portal.access.attested import AttestedVisit, launch_visit, origin_of
from pjd_portal.access.launch import SESSION_LAUNCH_KEY, finish_launch, redeem_launch_code
from pjd_portal.access.models import AttestChannel
from pjd_portal.access.services import access_patient_by_handle
from pjd_portal.access.trust_framework import AttestInvalid, read_attest
from pjd_portal.accounts.audit_context import actor_of, point_of_care_of
from pjd_portal.accounts.caller import caller_of
from pjd_portal.accounts.choice import act_for_attested_organisation
from pjd_portal.auditlog import events
from pjd_portal.auditlog.events import Outcome
from pjd_portal.auditlog.services import record_event
from pjd_portal.clinic.patient_views import refused_page, too_many_lookups

CHANNEL = AttestChannel.EPJ_LAUNCH
logger = logging.getLogger(__name__)

# What the clinician is told, by the reason a launch stopped before a patient.
_MESSAGES = {
    "launch_code_unknown": _("The portal was opened without a valid launch from the EPJ. Open the patient again from the EPJ."),
    "launch_code_used": _("This launch from the EPJ has been used already. Open the patient again from the EPJ."),
    "launch_code_expired": _("This launch from the EPJ has expired (it lasts one minute). Open the patient again from the EPJ."),
    "launch_verifier_mismatch": _("The launch from the EPJ could not be verified. Nothing was opened. Open the patient again from the EPJ."),
    "attest_invalid": _("The EPJ's attest could not be read. Nothing was opened."),
    "no_such_patient": _("No patient with the EPJ's national id was found in the portal."),
}  # fmt: skip


def _page(request: HttpRequest, reason_code: str, message: str, status: int = 403) -> HttpResponse:
    context = {"reason_code": reason_code, "message": message}
    return render(request, "patients/launch_refused.html", context, status=status)


def _refused_before_login(request: HttpRequest, reason_code: str) -> HttpResponse:
    """A code that opens nothing. Logged when it names a launch (expired, used, a wrong
    verifier) or a person is logged in; a made-up code from nobody goes to the application
    log only, as an API call without a token does: anyone could otherwise fill the access
    log from outside."""

    if reason_code != "launch_code_unknown" or request.user.is_authenticated:
        record_event(
            events.EPJ_LAUNCH_REFUSED(outcome=Outcome.DENIED, reason_code=reason_code, channel=CHANNEL),
            actor=actor_of(request),
            where=point_of_care_of(request),
        )
    else:
        logger.info("launch refused: %s", reason_code)
    return _page(request, reason_code, str(_MESSAGES[reason_code]))


@csrf_exempt  # a form POST from the EPJ's page: the one-time code and its verifier are the proof
@require_http_methods(["GET", "POST"])
def epj_start(request: HttpRequest) -> HttpResponse:
    if request.method == "GET":  # a link or a bookmark: nothing to open, nothing attempted
        return _page(request, "launch_code_unknown", str(_MESSAGES["launch_code_unknown"]), status=200)
    redeemed = redeem_launch_code(
        code=request.POST.get("code", "").strip(), verifier=request.POST.get("code_verifier", "").strip()
    )
    if redeemed.launch is None:
        return _refused_before_login(request, redeemed.reason_code)
    request.session[SESSION_LAUNCH_KEY] = redeemed.launch.pk
    finish = reverse("epj_start_finish")
    if request.user.is_authenticated:
        return redirect(finish)
    return redirect(f"{reverse('oidc_authentication_init')}?{urlencode({'next': finish, 'silent': '1'})}")


@login_required
@require_GET
def epj_start_finish(request: HttpRequest) -> HttpResponse:
    launch_id = request.session.pop(SESSION_LAUNCH_KEY, None)
    launch = finish_launch(launch_id) if isinstance(launch_id, int) else None
    if launch is None:
        return _refused_before_login(request, "launch_code_unknown")
    try:
        attest = read_attest(launch.attest)
        act_for_attested_organisation(request, attest.point_of_care_orgnr)
        caller = caller_of(request)
    except AttestInvalid as exc:
        caller = caller_of(request)
        record_event(
            events.EPJ_LAUNCH_REFUSED(
                outcome=Outcome.INVALID,
                reason_code=exc.reason_code,
                channel=CHANNEL,
                client_id=launch.client_id,
            ),
            actor=caller.actor,
            where=caller.where,
        )
        return _page(request, exc.reason_code, str(_MESSAGES["attest_invalid"]))
    origin = origin_of(attest, channel=CHANNEL, client_id=launch.client_id)
    return _visit_page(request, launch_visit(caller=caller, attest=attest, origin=origin))


def _visit_page(request: HttpRequest, visit: AttestedVisit) -> HttpResponse:
    """The list, or the page that says why not (the refusal is logged already)."""

    if visit.access is not None:
        return redirect("documents:list", handle=visit.access.lookup.handle)
    decision = visit.decision
    if visit.retry_after is not None:
        return too_many_lookups(request, visit.retry_after)
    if not visit.found:
        return _page(request, "no_such_patient", str(_MESSAGES["no_such_patient"]), status=404)
    if visit.lookup is not None:
        if decision.reason_code == "elevated_basis_required":
            # A restriction needs FORHØYET, which no attest states: the portal's own step.
            return redirect("patients:elevated", handle=visit.lookup.handle)
        access = access_patient_by_handle(caller=caller_of(request), handle=visit.lookup.handle)
        if not policy.status_before_basis(access.clinician, access.patient_facts):
            return refused_page(request, access, decision)
    return _page(request, decision.reason_code, decision.message or str(_MESSAGES["attest_invalid"]))
