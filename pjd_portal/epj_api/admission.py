"""One MHD API call's way in (ITI-67, ITI-68): the DPoP-bound token, the trust framework's attest, then the
patient through the portal's policy (access/attested.py), each refusal an
OperationOutcome and, from a client the portal knows, an event in the access log.

The order is the contract's (docs/epj.md): a token fault is a 401 that says nothing of
which check failed (and `use_dpop_nonce`, the normal first answer to a client without a
nonce, is not logged: it is no refusal); an attest the portal cannot read is a 403
(`api_call_refused`); the patient not in the register a 404; a policy refusal a 403 with
the policy's own message, as the portal tells the clinician.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import wraps
from typing import Any, cast

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.views.decorators.csrf import csrf_exempt

from pjd_portal.access import policy
from pjd_portal.access.services import PatientAccess
from pjd_portal.access.trust_framework import AttestInvalid, TrustAttest, read_attest
from pjd_portal.accounts.audit_context import anonymous_actor
from pjd_portal.accounts.caller import Caller
from pjd_portal.accounts.helseid_tokens import (
    USE_NONCE,
    TokenRejected,
    VerifiedToken,
    challenge_headers,
    verify_dpop_request,
)
from pjd_portal.accounts.provider import ProviderUnavailable
from pjd_portal.accounts.sessions import sessionless_view
from pjd_portal.auditlog import events
from pjd_portal.auditlog.events import Outcome
from pjd_portal.auditlog.services import AuditWriteFailed, record_event_committed
from pjd_portal.clinic import opening
from pjd_portal.epj_api import fhir
from pjd_portal.epj_api.visits import api_visit

logger = logging.getLogger(__name__)

FHIR_JSON = "application/fhir+json"
CHANNEL = "api"
_EVENT_ID = re.compile(r"[A-Za-z0-9\-_.:]{1,100}")


class Refusal(Exception):
    """An answer other than the one asked for: an OperationOutcome with this status."""

    def __init__(
        self, status: int, code: str, diagnostics: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(diagnostics)
        self.status = status
        self.code = code
        self.diagnostics = diagnostics
        self.headers = dict(headers or {})


def fhir_response(body: Mapping[str, Any], status: int = 200) -> HttpResponse:
    response = HttpResponse(json.dumps(body, default=str), content_type=FHIR_JSON, status=status)
    response["Cache-Control"] = "no-store"
    return response


def outcome_response(refusal: Refusal) -> HttpResponse:
    response = fhir_response(fhir.operation_outcome(refusal.code, refusal.diagnostics), refusal.status)
    for name, value in refusal.headers.items():
        response[name] = value
    return response


def api_view(view: Callable[..., HttpResponseBase]) -> Callable[..., HttpResponseBase]:
    """Every view of the API: no session, no CSRF (a token is the proof, no cookie is
    read), every refusal an OperationOutcome, never Django's 500 page, and a fresh
    DPoP-Nonce on every answer (RFC 9449 § 8.2) so the next call needs no extra round."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        try:
            response = view(request, *args, **kwargs)
        except Refusal as refusal:
            response = outcome_response(refusal)
        except AuditWriteFailed:
            # Nothing leaves that could not be logged.
            response = outcome_response(
                Refusal(
                    503, "transient", "The access log is unavailable: nothing was shown. Try again later."
                )
            )
            response["Retry-After"] = "30"
        except Exception:
            logger.exception("MHD API: %s %s failed", request.method, request.path)
            response = outcome_response(Refusal(500, "exception", "The portal could not answer this call."))
        if "DPoP-Nonce" not in response:
            response["DPoP-Nonce"] = challenge_headers()["DPoP-Nonce"]
        return response

    return csrf_exempt(sessionless_view(cast(Callable[..., HttpResponse], wrapped)))


@dataclass(frozen=True)
class Authenticated:
    """A call whose token and proof checked out, with the attest it carries."""

    token: VerifiedToken
    attest: TrustAttest
    interaction: str
    nhn_event_id: str

    @property
    def audit(self) -> dict[str, str]:
        return {
            "channel": CHANNEL,
            "client_id": self.token.client_id,
            "jti": self.token.jti,
            "decision_ref": self.attest.decision_ref,
            "interaction": self.interaction,
        }


@dataclass(frozen=True)
class Visit:
    """The attest's patient, reached through the policy, and who the events name."""

    call: Authenticated
    access: PatientAccess
    caller: Caller

    @property
    def who(self) -> opening.Who:
        extra = {"nhn_event_id": self.call.nhn_event_id} if self.call.nhn_event_id else {}
        return opening.Who(self.caller.actor, self.caller.where, extra)


def refused(request: HttpRequest, reason_code: str, details: Mapping[str, str]) -> None:
    """A known client's call refused before a patient was reached: in the log, committed."""

    record_event_committed(
        events.API_CALL_REFUSED(outcome=Outcome.DENIED, reason_code=reason_code[:50], details=dict(details)),
        actor=anonymous_actor(request),
        where=None,
    )


def verified(request: HttpRequest, interaction: str, *, channel: str = CHANNEL) -> VerifiedToken:
    """The token and its proof (a 401 that says not which check failed); raises Refusal.
    The launch (`POST /api/launch`) and the MHD API both come in here."""

    url = request.build_absolute_uri(request.path)
    try:
        return verify_dpop_request(
            authorization=request.headers.get("Authorization", ""),
            dpop=request.headers.get("DPoP"),
            method=request.method or "GET",
            url=url,
        )
    except TokenRejected as exc:
        if exc.client_id and exc.error != USE_NONCE:
            refused(
                request,
                exc.reason_code,
                {"channel": channel, "client_id": exc.client_id, "interaction": interaction},
            )
        logger.info("MHD API: token refused (%s)", exc.reason_code)
        status = 403 if exc.status == 403 else 401
        code = "forbidden" if status == 403 else "login"
        raise Refusal(
            status,
            code,
            "A DPoP-bound HelseID access token and a valid DPoP proof are required.",
            challenge_headers(exc),
        ) from exc
    except ProviderUnavailable as exc:
        raise Refusal(
            503, "transient", "The identity provider's keys cannot be read. Try again later."
        ) from exc


def authenticate(request: HttpRequest, interaction: str) -> Authenticated:
    """The token and its proof, then the attest; raises Refusal."""

    token = verified(request, interaction)
    raw_event_id = request.headers.get("nhn-event-id", "").strip()
    nhn_event_id = raw_event_id if _EVENT_ID.fullmatch(raw_event_id) else ""
    attest = attest_of(request, token, interaction)
    return Authenticated(token, attest, interaction, nhn_event_id)


def attest_of(
    request: HttpRequest, token: VerifiedToken, interaction: str, *, channel: str = CHANNEL
) -> TrustAttest:
    """The token's attest, if it is one the portal reads and the client may give; raises
    the logged Refusal (403) otherwise. The launch and the API both ask here."""

    details = {"channel": channel, "client_id": token.client_id, "jti": token.jti, "interaction": interaction}
    try:
        attest = read_attest(token.authorization_details)
    except AttestInvalid as exc:
        refused(request, exc.reason_code, details)
        raise Refusal(403, "forbidden", exc.message) from exc
    allowed = policy.client_may_attest_for(
        token.client_orgnr, attest.legal_entity_orgnr, required=settings.EPJ_REQUIRE_CLIENT_ORGNR
    )
    if not allowed:
        refused(request, allowed.reason_code, {**details, "decision_ref": attest.decision_ref})
        raise Refusal(403, "forbidden", allowed.message)
    return attest


def refuse(request: HttpRequest, call: Authenticated, reason_code: str, refusal: Refusal) -> Refusal:
    """Log a refusal of this call (before a patient is reached) and hand back the answer."""

    refused(request, reason_code, call.audit)
    return refusal


PATIENT_NOT_FOUND = "No patient matches the attest."


def visit(request: HttpRequest, call: Authenticated) -> Visit:
    """The attest's patient through the policy (api_visit writes the lookup and the basis,
    and their refusals); then may this clinician see the patient's documents at all."""

    visited = api_visit(token=call.token, attest=call.attest, request=request)
    if visited.retry_after is not None:
        raise Refusal(
            429,
            "throttled",
            "Too many patient lookups by this clinician in a short time; nothing was looked up.",
            headers={"Retry-After": str(visited.retry_after)},
        )
    if not visited.found:
        raise Refusal(404, "not-found", PATIENT_NOT_FOUND)
    if visited.access is None or visited.caller is None or not visited.decision:
        raise Refusal(
            403, "forbidden", visited.decision.message or "The portal's policy refuses this access."
        )
    access = visited.access
    status = policy.may_see_patient_documents(
        access.clinician, access.patient_facts, access.attest_facts, access.now
    )
    if not status:
        # As the list logs it: the patient-level rules refuse (a restriction needing
        # FORHØYET, which no attest states).
        record_event_committed(
            events.ACCESS_DENIED(
                outcome=Outcome.DENIED,
                reason_code=status.reason_code,
                patient=access.patient,
                attest=access.attest,
            ),
            actor=visited.caller.actor,
            where=visited.caller.where,
        )
        raise Refusal(403, "forbidden", status.message or "The portal's policy refuses this access.")
    return Visit(call, access, visited.caller)
