"""The SMART on FHIR EHR launch's two pages: `/smart/launch`, where the EHR opens the
portal, and `/smart/callback/`, where the authorization server sends the clinician back.
The work is in clinic/smart.py; the lookup is the portal's own (access.services), so the
clinician lands on the patient card and states the basis there, as after a lookup here."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_GET

from pjd_portal.access.services import lookup_patient, lookup_rate_refusal
from pjd_portal.accounts.audit_context import actor_of, point_of_care_of
from pjd_portal.accounts.caller import caller_of
from pjd_portal.auditlog import events
from pjd_portal.auditlog.events import Outcome
from pjd_portal.auditlog.services import record_event
from pjd_portal.clinic import smart
from pjd_portal.clinic.decorators import clinician_required
from pjd_portal.clinic.patient_views import too_many_lookups
from pjd_portal.lib.redact import redact_national_ids
from pjd_portal.patients.forms import NO_SUCH_PATIENT, PatientLookupForm
from pjd_portal.patients.lookup import NO_SUCH_PATIENT_CODE, read_national_id

# What each refusal's page says: a title and what to do now.
PAGES = {
    smart.INCOMPLETE: (
        _("The launch from the EHR is incomplete"),
        _("The EHR opened the portal without what a SMART launch needs. Start PJD again from the EHR."),
    ),
    smart.ISS_UNKNOWN: (
        _("The EHR is not known to the portal"),
        _(
            "The portal does not know the EHR that opened it, and has not contacted it. "
            "The EHR must be registered with PJD before it can start PJD."
        ),
    ),
    smart.EHR_UNREACHABLE: (
        _("The EHR does not answer"),
        _("The portal could not reach the EHR to start. Try again in a moment, or look the patient up here."),
    ),
    smart.CONFIGURATION_INVALID: (
        _("The EHR's SMART set-up is not accepted"),
        _(
            "The EHR's SMART configuration does not name the login service the portal trusts, "
            "or lacks what the launch needs. The launch was stopped."
        ),
    ),
    smart.AUTHORIZATION_REFUSED: (
        _("The launch was not authorised"),
        _(
            "The login service did not authorise the launch (it may have expired or been cancelled). Start PJD again from the EHR."
        ),
    ),
    smart.STATE_MISMATCH: (
        _("The launch could not be completed"),
        _(
            "The answer from the login service does not belong to a launch begun in this browser, "
            "or it is too old. Start PJD again from the EHR."
        ),
    ),
    smart.TOKEN_FAILED: (
        _("The launch could not be completed"),
        _("The login service did not give the portal access to the EHR. Start PJD again from the EHR."),
    ),
    smart.NO_PATIENT: (
        _("The EHR named no patient"),
        _(
            "The EHR did not say which patient the launch is for. Choose the patient in the EHR and start PJD again."
        ),
    ),
    smart.ID_TOKEN_INVALID: (
        _("The launch could not be verified"),
        _("The portal could not verify who is logged in to the EHR. The launch was stopped."),
    ),
    smart.PERSON_MISMATCH: (
        _("Another person is logged in to the EHR"),
        _(
            "The person logged in to the EHR is not the one logged in to the portal. "
            "The same person must be logged in to both: log out of the one that is wrong and start PJD again."
        ),
    ),
    smart.PATIENT_READ_FAILED: (
        _("The patient could not be read from the EHR"),
        _("The portal could not read the patient from the EHR. Try again, or look the patient up here."),
    ),
    smart.NO_NATIONAL_ID: (
        _("The patient has no national identity number in the EHR"),
        _(
            "The patient the EHR started PJD for has no fødselsnummer, D-number or H-number there, "
            "so the portal cannot find the patient. Look the patient up here."
        ),
    ),
}


def _refused(
    request: HttpRequest, refusal: smart.SmartRefused, *, iss: str, client_id: str = ""
) -> HttpResponse:
    """The refusal's page, and its event. The iss is what the EHR sent (cut short: a URL
    anyone can write); the launch id and any patient id are not logged."""

    record_event(
        events.EPJ_LAUNCH_REFUSED(
            outcome=Outcome.DENIED,
            reason_code=refusal.reason_code,
            channel="smart",
            client_id=client_id,
            # Anyone can write a launch link: what it names is kept without a national id.
            iss=redact_national_ids(iss[:200]),
        ),
        actor=actor_of(request),
        where=point_of_care_of(request),
    )
    title, message = PAGES[refusal.reason_code]
    context = {"title": title, "message": message, "reason": refusal.reason_code, "status": refusal.status}
    return render(request, "clinic/smart_refused.html", context, status=refusal.status)


@login_required
@clinician_required
@require_GET
def smart_launch(request: HttpRequest) -> HttpResponse:
    iss = request.GET.get("iss", "")
    ehr = None
    try:
        ehr = smart.ehr_by_iss(iss)
        target = smart.authorization_url(request, ehr, request.GET.get("launch", ""))
    except smart.SmartRefused as refusal:
        return _refused(request, refusal, iss=iss, client_id=ehr.client_id if ehr else "")
    return HttpResponseRedirect(target)


@login_required
@clinician_required
@require_GET
def smart_callback(request: HttpRequest) -> HttpResponse:
    state = request.GET.get("state", "")
    iss = smart.pending_iss(request, state)
    ehr = None
    try:
        ehr, entry = smart.take_pending(request, state)
        if request.GET.get("error") or not request.GET.get("code"):
            raise smart.refused(smart.AUTHORIZATION_REFUSED)
        tokens = smart.exchange_code(request, ehr, entry, request.GET["code"])
        smart.check_person(ehr, entry, tokens.id_token, request.user.pid or "")  # type: ignore[union-attr]
        national_id = smart.read_patient_national_id(ehr, tokens)
    except smart.SmartRefused as refusal:
        return _refused(request, refusal, iss=iss, client_id=ehr.client_id if ehr else "")
    # From here on as the portal's own lookup: the same limit, service, event and pages.
    caller = caller_of(request)
    limited = lookup_rate_refusal(caller=caller)
    if limited is not None:  # nothing looked up
        return too_many_lookups(request, limited.retry_after)
    result = lookup_patient(caller=caller, entered=read_national_id(national_id))
    if result.lookup is None:
        form = PatientLookupForm({"national_id": national_id})
        not_found = result.error_code == NO_SUCH_PATIENT_CODE
        if not_found or not form.has_error("national_id"):
            form.add_error("national_id", NO_SUCH_PATIENT if not_found else _("No patient found."))
        return render(request, "patients/lookup.html", {"form": form}, status=404 if not_found else 400)
    return redirect("patients:basis", handle=result.lookup.handle)
