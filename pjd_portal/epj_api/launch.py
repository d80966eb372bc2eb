"""`POST /api/launch`: an EPJ asks for a one-time code that opens the portal in the
clinician's browser with the patient and basis it attests (docs/epj.md, "The launch").

The token and proof are checked here (epj_api/admission.py, as for the MHD API); the
attest only for being one. Its content (one patient, a purpose the portal takes, the
person at the keyboard) is judged at `/start/`, where the clinician is told on a page of
their own and the refusal is logged with their name.
"""

from __future__ import annotations

import json
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.urls import reverse

from pjd_portal.access import launch
from pjd_portal.accounts.helseid_tokens import VerifiedToken
from pjd_portal.epj_api.admission import Refusal, api_view, attest_of, refused, verified

MAX_BODY_BYTES = 4096
CHANNEL = "epj_launch"


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


def _refusal(request: HttpRequest, token: VerifiedToken, reason_code: str, refusal: Refusal) -> Refusal:
    refused(
        request,
        reason_code,
        {"channel": CHANNEL, "client_id": token.client_id, "jti": token.jti, "interaction": "launch"},
    )
    return refusal


def _issue(request: HttpRequest, token: VerifiedToken) -> launch.IssuedCode:
    """The code; raises the Refusal that says what was wrong with the request (logged)."""

    params = _parameters(request)
    if params is None:
        raise _refusal(
            request,
            token,
            "bad_request_body",
            Refusal(400, "structure", "The body must be a form or a JSON object."),
        )
    challenge = params.get("ehr_code_challenge", "")
    if params.get("ehr_code_challenge_method", "S256") != "S256" or not launch.CHALLENGE.match(challenge):
        message = "ehr_code_challenge must be base64url(SHA-256(verifier)), 43 characters, with method S256."
        raise _refusal(request, token, "bad_code_challenge", Refusal(400, "value", message))
    attest_of(request, token, "launch", channel=CHANNEL)
    return launch.issue_launch_code(
        client_id=token.client_id,
        token_jti=token.jti,
        attest=token.authorization_details,
        challenge=challenge,
    )


@api_view
def launch_code(request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        raise Refusal(405, "not-supported", "Ask for a launch code with POST.", {"Allow": "POST"})
    issued = _issue(request, verified(request, "launch", channel=CHANNEL))
    body = {
        "code": issued.code,
        "expires_in": issued.expires_in,
        "start_url": request.build_absolute_uri(reverse("epj_start")),
    }
    response = HttpResponse(json.dumps(body), content_type="application/json", status=201)
    response["Cache-Control"] = "no-store"
    return response
