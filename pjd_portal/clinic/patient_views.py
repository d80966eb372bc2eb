"""Clinician path, steps 1 and 2: look up a patient, see who it is, state the basis.

The lookup answers with the patient card (the basis page): who the patient is and the
status pre-check in words, before any basis is asked. A reservation or a block is a page of
its own, with no basis form; a restricted patient goes to the FORHØYET step; a basis still
live for this clinician, organisation and patient goes straight to the list. An emergency
basis takes two steps: the situation and the reason, then a confirmation of what is logged
and who is told.
"""

from __future__ import annotations

from dataclasses import replace
from uuid import UUID

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_http_methods, require_POST

from pjd_portal.access import policy
from pjd_portal.access.services import (
    PatientAccess,
    access_patient_by_handle,
    lookup_patient,
    lookup_rate_refusal,
    refuse_basis_form,
    refuse_by_status,
    state_basis,
)
from pjd_portal.accounts.caller import caller_of
from pjd_portal.clinic.banner import banner_of
from pjd_portal.clinic.decorators import clinician_required
from pjd_portal.clinic.forms import BasisForm, ElevatedBasisForm
from pjd_portal.lib.errors import too_many_requests
from pjd_portal.patients.forms import NO_SUCH_PATIENT, PatientLookupForm, entered_national_id
from pjd_portal.patients.lookup import NO_SUCH_PATIENT_CODE


@login_required
@clinician_required
@require_POST
def patient_lookup(request: HttpRequest) -> HttpResponse:
    form = PatientLookupForm(request.POST)
    entered = entered_national_id(form)
    if entered is None:  # empty or too long: nothing looked up, nothing logged
        return render(request, "patients/lookup.html", {"form": form}, status=400)
    caller = caller_of(request)
    refusal = lookup_rate_refusal(caller=caller)
    if refusal is not None:  # nothing looked up
        return too_many_lookups(request, refusal.retry_after)
    result = lookup_patient(caller=caller, entered=entered)
    if result.lookup is None:
        not_found = result.error_code == NO_SUCH_PATIENT_CODE
        if not_found or not form.has_error("national_id"):  # an invalid number has the field's message
            form.add_error("national_id", NO_SUCH_PATIENT if not_found else _("No patient found."))
        return render(request, "patients/lookup.html", {"form": form}, status=404 if not_found else 400)
    return redirect("patients:basis", handle=result.lookup.handle)


def too_many_lookups(request: HttpRequest, retry_after: int) -> HttpResponse:
    minutes = max(1, -(-retry_after // 60))
    return too_many_requests(
        request,
        title=gettext("Too many lookups"),
        message=gettext(
            "You have looked up more patients in a short time than the portal allows. This "
            "lookup was not made and nothing was changed. You can look up patients again in "
            "about %(minutes)d min. The stop is logged and may be reviewed."
        )
        % {"minutes": minutes},
        retry_after=retry_after,
    )


def _live(access: PatientAccess) -> bool:
    """A basis already in force for this patient (the list would be shown)."""

    return bool(
        policy.may_see_patient_documents(
            access.clinician, access.patient_facts, access.attest_facts, access.now
        )
    )


def _refused(request: HttpRequest, access: PatientAccess, status: policy.Decision) -> HttpResponse:
    """A reservation or a block: a page of its own, no basis form, a way to a new patient.
    The refusal is logged as every status check is."""

    refuse_by_status(caller=caller_of(request), access=access, decision=status)
    return refused_page(request, access, status)


def refused_page(request: HttpRequest, access: PatientAccess, status: policy.Decision) -> HttpResponse:
    """The page of a reservation or a block, its refusal logged already."""

    # No basis is in force for a patient the clinician may not see: the banner says none.
    banner = replace(banner_of(access), basis="", expires_at=None, minutes_left=None)
    context = {"banner": banner, "decision": status, "lookup_form": PatientLookupForm()}
    return render(request, "patients/refused.html", context)


def _submit_basis(
    request: HttpRequest, access: PatientAccess, form: BasisForm | ElevatedBasisForm, *, invalid_reason: str
) -> bool:
    """Validate a basis form and state the basis. True when an attest was stored; else
    the form carries the errors (and the refusal is logged)."""

    if not form.is_valid():
        refuse_basis_form(caller=caller_of(request), access=access, reason_code=invalid_reason)
        return False
    result = state_basis(
        caller=caller_of(request),
        access=access,
        basis=form.cleaned_data["basis"],
        reason=form.cleaned_data["reason"],
        situation=form.cleaned_data.get("situation") or "",
    )
    if result.attest is None:
        field = "reason" if policy.refusal_is_about_the_reason(result.decision) else "basis"
        form.add_error(field, result.decision.message)
    return result.attest is not None


def _card(
    request: HttpRequest, access: PatientAccess, form: BasisForm, template: str, status: int
) -> HttpResponse:
    context = {
        "form": form,
        "handle": access.lookup.handle,
        "banner": banner_of(access, with_fastlege=True),
        "options": policy.bases_offered(access.clinician, access.patient_facts),
        "reason_required": sorted(policy.REASON_REQUIRED),
    }
    return render(request, template, context, status=status)


def _akutt_first_step_accepted(access: PatientAccess, form: BasisForm) -> bool:
    """The emergency form's first step is complete and the policy would accept it: the
    confirmation page comes next. Otherwise the basis is stated (or refused, and logged)."""

    if not (form.is_valid() and form.awaits_confirmation):
        return False
    data = form.cleaned_data
    return bool(policy.may_state_basis(access.clinician, access.patient_facts, data["basis"], data["reason"]))


@login_required
@clinician_required
@require_http_methods(["GET", "POST"])
def patient_basis(request: HttpRequest, handle: UUID) -> HttpResponse:
    access = access_patient_by_handle(caller=caller_of(request), handle=handle)
    status = policy.status_before_basis(access.clinician, access.patient_facts)
    if not status:
        return _refused(request, access, status)
    if request.method == "GET":
        if _live(access):  # the same patient again, within the basis stated: straight to the list
            return redirect("documents:list", handle=handle)
        if policy.needs_elevated_basis(access.patient_facts):
            return redirect("patients:elevated", handle=handle)
        return _card(request, access, BasisForm(), "patients/basis.html", 200)
    if _live(access):
        # A second submit (a double click, a resubmitted confirmation): the basis already
        # holds; a second attest would be a second access, and a second notice to the patient.
        return redirect("documents:list", handle=handle)
    form = BasisForm(request.POST)
    if _akutt_first_step_accepted(access, form):
        return _card(request, access, form, "patients/akutt_confirm.html", 200)
    if _submit_basis(request, access, form, invalid_reason="basis_form_invalid"):
        return redirect("documents:list", handle=handle)
    return _card(request, access, form, "patients/basis.html", 400)


@login_required
@clinician_required
@require_http_methods(["GET", "POST"])
def patient_elevated(request: HttpRequest, handle: UUID) -> HttpResponse:
    """The step for a patient who has restricted document sharing: a FORHØYET basis with a
    reason and an explicit confirmation, flagged for review."""

    access = access_patient_by_handle(caller=caller_of(request), handle=handle)
    status = policy.status_before_basis(access.clinician, access.patient_facts)
    if not status:
        return _refused(request, access, status)
    if not policy.needs_elevated_basis(access.patient_facts):
        # The step exists only for a restriction; anyone else states an ordinary basis.
        return redirect("patients:basis", handle=handle)
    status_code = 200
    if request.method == "POST" and _live(access):
        return redirect("documents:list", handle=handle)  # a second submit: the basis holds
    if request.method == "POST":
        form = ElevatedBasisForm(request.POST)
        if _submit_basis(request, access, form, invalid_reason="elevated_form_invalid"):
            return redirect("documents:list", handle=handle)
        status_code = 400
    elif _live(access):
        return redirect("documents:list", handle=handle)
    else:
        form = ElevatedBasisForm()
    context = {
        "form": form,
        "handle": handle,
        "banner": banner_of(access, with_fastlege=True),
        "options": policy.bases_offered(access.clinician, access.patient_facts),
        "restricted_explanation": policy.RESTRICTED_EXPLANATION,
    }
    return render(request, "patients/elevated.html", context, status=status_code)
