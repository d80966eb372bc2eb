"""What every EPJ call has in common: the DPoP-bound token checked, and answers in FHIR's
words (an OperationOutcome for every error, `no-store`, a fresh `DPoP-Nonce` always)."""

from __future__ import annotations

import json
import logging
from typing import Any

from django.http import HttpRequest, HttpResponse

from pjd_portal.accounts import provider
from pjd_portal.accounts.audit_context import anonymous_actor
from pjd_portal.accounts.helseid_tokens import (
    TokenRejected,
    VerifiedToken,
    challenge_headers,
    verify_dpop_request,
)
from pjd_portal.auditlog import events
from pjd_portal.auditlog.events import Outcome
from pjd_portal.auditlog.services import AuditWriteFailed, record_event

logger = logging.getLogger(__name__)

FHIR_JSON = "application/fhir+json"


def operation_outcome(code: str, diagnostics: str, severity: str = "error") -> dict[str, Any]:
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": severity, "code": code, "diagnostics": diagnostics}],
    }


def json_response(body: dict[str, Any], status: int = 200, content_type: str = FHIR_JSON) -> HttpResponse:
    response = HttpResponse(json.dumps(body), content_type=content_type, status=status)
    response["Cache-Control"] = "no-store"
    for name, value in challenge_headers().items():
        response[name] = value
    return response


def outcome_response(status: int, code: str, diagnostics: str) -> HttpResponse:
    return json_response(operation_outcome(code, diagnostics), status=status)


# One sentence for every token fault: the caller learns nothing of which check failed.
_TOKEN_FAULT = "A valid DPoP-bound HelseID access token and a DPoP proof for this request are required."  # noqa: S105
_NONCE = "Repeat the request with a DPoP proof that carries the nonce in the DPoP-Nonce header."


def refused_token(rejected: TokenRejected) -> HttpResponse:
    nonce = rejected.error == "use_dpop_nonce"
    if rejected.error == "insufficient_scope":
        response = outcome_response(403, "forbidden", "The access token does not carry the API's scope.")
    else:
        response = outcome_response(401, "login", _NONCE if nonce else _TOKEN_FAULT)
    for name, value in challenge_headers(rejected).items():
        response[name] = value
    return response


def request_url(request: HttpRequest) -> str:
    """The URL a proof's `htu` must name: this request's, without its query."""

    return request.build_absolute_uri(request.path)


def authenticate(request: HttpRequest, *, interaction: str) -> VerifiedToken | HttpResponse:
    """The call's verified token, or the answer refusing it. A refusal of a client whose
    token checked out is logged (`api_call_refused`); a nonce challenge is the protocol's
    first step, and a caller nobody knows must not be able to fill the log, so neither is."""

    try:
        return verify_dpop_request(
            authorization=request.META.get("HTTP_AUTHORIZATION", ""),
            dpop=request.META.get("HTTP_DPOP"),
            method=request.method or "",
            url=request_url(request),
        )
    except TokenRejected as exc:
        logger.info("EPJ call refused: %s", exc.reason_code)
        if exc.client_id and exc.error != "use_dpop_nonce":
            try:
                record_event(
                    events.API_CALL_REFUSED(
                        outcome=Outcome.DENIED,
                        reason_code=exc.reason_code,
                        channel="api",
                        client_id=exc.client_id,
                        interaction=interaction,
                    ),
                    actor=anonymous_actor(request),
                    where=None,
                )
            except AuditWriteFailed:
                return unavailable()
        return refused_token(exc)
    except provider.ProviderUnavailable:
        return outcome_response(503, "transient", "HelseID's keys cannot be read right now. Try again later.")


def unavailable() -> HttpResponse:
    return outcome_response(
        503, "transient", "The access log is unavailable. Nothing was done. Try again later."
    )
