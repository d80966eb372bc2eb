"""Clinician path, steps 1 and 2: look up a patient, state the basis for access."""

from __future__ import annotations

from uuid import UUID

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_http_methods, require_POST

from pjd_portal.access import policy
from pjd_portal.access.services import (
    PatientAccess,
    access_patient_by_handle,
    lookup_patient,
    refuse_basis_form,
    state_basis,
)
from pjd_portal.accounts.caller import caller_of
from pjd_portal.clinic.decorators import clinician_required
from pjd_portal.clinic.forms import BasisForm, ElevatedBasisForm
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
    result = lookup_patient(caller=caller_of(request), entered=entered)
    if result.lookup is None:
        not_found = result.error_code == NO_SUCH_PATIENT_CODE
        if not_found or not form.has_error("national_id"):  # an invalid number has the field's message
            form.add_error("national_id", NO_SUCH_PATIENT if not_found else _("No patient found."))
        return render(request, "patients/lookup.html", {"form": form}, status=404 if not_found else 400)
    return redirect("patients:basis", handle=result.lookup.handle)


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
    )
    if result.attest is None:
        field = "reason" if policy.refusal_is_about_the_reason(result.decision) else "basis"
        form.add_error(field, result.decision.message)
    return result.attest is not None


@login_required
@clinician_required
@require_http_methods(["GET", "POST"])
def patient_basis(request: HttpRequest, handle: UUID) -> HttpResponse:
    access = access_patient_by_handle(caller=caller_of(request), handle=handle)
    if request.method == "POST":
        form = BasisForm(request.POST)
        if _submit_basis(request, access, form, invalid_reason="basis_form_invalid"):
            return redirect("documents:list", handle=handle)
        status = 400
    else:
        form = BasisForm()
        status = 200
    return render(
        request,
        "patients/basis.html",
        {
            "form": form,
            "handle": handle,
            "reason_required": sorted(policy.REASON_REQUIRED),
        },
        status=status,
    )


@login_required
@clinician_required
@require_http_methods(["GET", "POST"])
def patient_elevated(request: HttpRequest, handle: UUID) -> HttpResponse:
    """The confirmation step for a patient who has restricted document sharing: a
    FORHØYET basis with a reason and an explicit confirmation, flagged for review."""

    access = access_patient_by_handle(caller=caller_of(request), handle=handle)
    status_check = policy.may_see_patient_documents(
        access.clinician, access.patient_facts, access.attest_facts, access.now
    )
    if policy.asks_for_basis(status_check):
        return redirect("patients:basis", handle=handle)
    if not policy.offers_elevated_access(status_check):
        # The step exists only for a restriction; anything else is answered by the list
        # (which says nothing more than it already would).
        return redirect("documents:list", handle=handle)
    status = 200
    if request.method == "POST":
        form = ElevatedBasisForm(request.POST)
        if _submit_basis(request, access, form, invalid_reason="elevated_form_invalid"):
            return redirect("documents:list", handle=handle)
        status = 400
    else:
        form = ElevatedBasisForm()
    return render(request, "patients/elevated.html", {"form": form, "handle": handle}, status=status)
