"""`POST /api/launch`: an EPJ asks for a one-time code that opens the portal in the
clinician's browser with the patient and basis it attests (docs/epj.md, "The launch").

The token and proof are checked here; the attest only for being one (its content — one
patient, a purpose the portal takes, the person at the keyboard — is judged at `/start/`,
where the clinician is told on a page of their own and the refusal is logged with them).
"""

from __future__ import annotations

import json
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt

from pjd_portal.access import launch
from pjd_portal.access.trust_framework import AttestInvalid, read_attest
from pjd_portal.accounts.audit_context import anonymous_actor
from pjd_portal.accounts.helseid_tokens import VerifiedToken
from pjd_portal.accounts.sessions import sessionless_view
from pjd_portal.auditlog import events
from pjd_portal.auditlog.events import Outcome
from pjd_portal.auditlog.services import AuditWriteFailed, record_event
from pjd_portal.epj_api.calls import authenticate, json_response, outcome_response, unavailable

MAX_BODY_BYTES = 4096


def _parameters(request: HttpRequest) -> dict[str, str] | None:
    if len(request.body) > MAX_BODY_BYTES:
        return None
    if request.content_type in ("application/json", "application/fhir+json"):
        try:
            data: Any = json.loads(request.body or b"{}")
        except (ValueError, UnicodeDecodeError):
            return None
    else:
        data = request.POST.dict()
    if not isinstance(data, dict):
        return None
    return {k: v for k, v in data.items() if isinstance(v, str)}


def _refuse(request: HttpRequest, token: VerifiedToken, reason_code: str) -> None:
    record_event(
        events.API_CALL_REFUSED(
            outcome=Outcome.INVALID,
            reason_code=reason_code,
            channel="epj_launch",
            client_id=token.client_id,
            jti=token.jti,
            interaction="launch",
        ),
        actor=anonymous_actor(request),
        where=None,
    )


def _issue(request: HttpRequest, verified: VerifiedToken) -> launch.IssuedCode | HttpResponse:
    """The code, or the 400 that says what was wrong with the request (logged)."""

    params = _parameters(request)
    if params is None:
        _refuse(request, verified, "bad_request_body")
        return outcome_response(400, "structure", "The body must be a form or a JSON object.")
    challenge = params.get("ehr_code_challenge", "")
    method = params.get("ehr_code_challenge_method", "S256")
    if method != "S256" or not launch.CHALLENGE.match(challenge):
        _refuse(request, verified, "bad_code_challenge")
        return outcome_response(
            400,
            "value",
            "ehr_code_challenge must be base64url(SHA-256(verifier)), 43 characters, with method S256.",
        )
    try:
        read_attest(verified.authorization_details)
    except AttestInvalid as exc:
        _refuse(request, verified, exc.reason_code)
        return outcome_response(400, "security", exc.message)
    return launch.issue_launch_code(
        client_id=verified.client_id,
        token_jti=verified.jti,
        attest=verified.authorization_details,
        challenge=challenge,
    )


@csrf_exempt  # token-authenticated: no cookie is read
@sessionless_view
def launch_code(request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        response = outcome_response(405, "not-supported", "Ask for a launch code with POST.")
        response["Allow"] = "POST"
        return response
    verified = authenticate(request, interaction="launch")
    if isinstance(verified, HttpResponse):
        return verified
    try:
        issued = _issue(request, verified)
    except AuditWriteFailed:
        return unavailable()
    if isinstance(issued, HttpResponse):
        return issued
    body = {
        "code": issued.code,
        "expires_in": issued.expires_in,
        "start_url": request.build_absolute_uri(reverse("epj_start")),
    }
    return json_response(body, status=201, content_type="application/json")
