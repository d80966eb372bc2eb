"""Front page, logout and the page after logout."""

from __future__ import annotations

from django.contrib import auth
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from pjd_portal.access import handles, policy, selectors
from pjd_portal.accounts import keys, provider
from pjd_portal.accounts.audit_context import actor_of, point_of_care_of
from pjd_portal.accounts.caller import caller_of
from pjd_portal.accounts.choice import act_for, choices_of
from pjd_portal.accounts.context import (
    SESSION_ORG_CHOICES_KEY,
    SESSION_ORG_CLAIMED_KEY,
    SESSION_ORG_KEY,
    active_roles,
    current_organisation,
)
from pjd_portal.accounts.models import Role
from pjd_portal.accounts.provider import provider_logout
from pjd_portal.accounts.sessions import login_key_of
from pjd_portal.auditlog import events
from pjd_portal.auditlog.events import Outcome
from pjd_portal.auditlog.services import record_event
from pjd_portal.patients.forms import PatientLookupForm


@require_GET
def home(request: HttpRequest) -> HttpResponse:
    if not request.user.is_authenticated:
        return render(request, "accounts/login.html")
    if current_organisation(request) is None and request.session.get(SESSION_ORG_CHOICES_KEY):
        return redirect("accounts:choose_organisation")
    decision = policy.may_use_clinical_portal(selectors.clinician_facts(caller_of(request)))
    if decision:
        return render(request, "patients/lookup.html", {"form": PatientLookupForm()})
    return render(
        request,
        "accounts/no_clinical_role.html",
        {
            "decision": decision,
            "roles": [Role(role).label for role in sorted(active_roles(request))],
            # The administration links come from forvaltning.context.forvaltning_links.
        },
    )


@require_POST
def logout(request: HttpRequest) -> HttpResponse:
    """End the session here and at the identity provider (RP-initiated logout)."""

    id_token = request.session.get("oidc_id_token")
    login_key = login_key_of(request)
    try:
        if request.user.is_authenticated:
            # This login's handles and attests end with it (bound to it already: ended
            # here in their rows too, before the event that says the session ended).
            handles.end_login(user_id=request.user.pk, login_key=login_key)
            record_event(
                events.LOGOUT(outcome=Outcome.GRANTED),
                actor=actor_of(request),
                where=point_of_care_of(request),
            )
    finally:
        # The session ends even when the event cannot be written (a shared clinic PC
        # must not stay logged in); the failure then gives the 503 page.
        auth.logout(request)  # flushes the session
    return provider_logout(request, id_token)


@require_GET
def logged_out(request: HttpRequest) -> HttpResponse:
    return render(request, "accounts/logged_out.html")


@require_GET
def client_jwks(request: HttpRequest) -> HttpResponse:
    """The portal's public client key (JWKS), for registering the client at HelseID and
    for the provider to check `private_key_jwt` assertions. Never the private part."""

    try:
        body = keys.public_jwks(provider.client_private_key())
    except (OSError, ValueError):
        return JsonResponse({"error": "client key unavailable"}, status=503)
    return JsonResponse(body)


@login_required
@require_http_methods(["GET", "POST"])
def choose_organisation(request: HttpRequest) -> HttpResponse:
    """Choose which organisation to act for, when one may act for several. The choice is
    kept in the session, shown in the header and written into every access event."""

    choices = choices_of(request)
    if len(choices) < 2:
        return redirect("accounts:home")
    error = ""
    if request.method == "POST":
        chosen = next((o for o in choices if str(o.pk) == request.POST.get("organisation")), None)
        if chosen is not None:
            act_for(request, chosen)
            return redirect("accounts:home")
        error = _("Choose one of the organisations.")
    selected = request.session.get(SESSION_ORG_KEY) or request.session.get(SESSION_ORG_CLAIMED_KEY)
    return render(
        request,
        "accounts/choose_organisation.html",
        {"choices": choices, "selected": selected, "error": error},
        status=400 if error else 200,
    )
