"""Front page, logout and the page after logout."""

from __future__ import annotations

from urllib.parse import urlencode

from django.conf import settings
from django.contrib import auth
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from pjd_portal.access import policy, selectors
from pjd_portal.accounts import keys, provider
from pjd_portal.accounts.context import active_roles
from pjd_portal.audit.models import EventType, Outcome
from pjd_portal.audit.services import record_event
from pjd_portal.patients.forms import PatientLookupForm


@require_GET
def home(request: HttpRequest) -> HttpResponse:
    if not request.user.is_authenticated:
        return render(request, "accounts/login.html")
    decision = policy.may_use_clinical_portal(selectors.clinician_facts(request))
    if decision:
        return render(request, "patients/lookup.html", {"form": PatientLookupForm()})
    return render(
        request,
        "accounts/no_clinical_role.html",
        {"decision": decision, "roles": sorted(active_roles(request))},
    )


@require_POST
def logout(request: HttpRequest) -> HttpResponse:
    """End the session here and at the identity provider (RP-initiated logout)."""

    id_token = request.session.get("oidc_id_token")
    if request.user.is_authenticated:
        record_event(request=request, event_type=EventType.LOGOUT, outcome=Outcome.GRANTED)
    auth.logout(request)  # flushes the session
    target = request.build_absolute_uri(reverse("accounts:logged_out"))
    if id_token:
        query = urlencode({"id_token_hint": id_token, "post_logout_redirect_uri": target})
        response: HttpResponse = HttpResponseRedirect(f"{settings.OIDC_OP_LOGOUT_ENDPOINT}?{query}")
    else:
        response = HttpResponseRedirect(target)
    response["Clear-Site-Data"] = '"cache", "storage"'
    return response


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
