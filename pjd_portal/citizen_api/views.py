"""The patient's access log for the citizen portal: FHIR `AuditEvent` search, POST only.

`POST /api/fhir/AuditEvent/_search` with a form or JSON body: `patient` (the national id,
optionally as `urn:oid:2.16.578.1.12.4.1.4.1|<id>`), optional `cursor` (from the previous
Bundle's `next` link) and `_count`. The national id never travels in the URL. The answer is
a `searchset` Bundle (`application/fhir+json`) of the patient's events, newest first, as the
patient may see them (`policy.CITIZEN_LOG`: the clinician by name, HPR number, authorization
and organisation, never their national id or IP address; nothing of another patient).

The caller is the citizen portal, proved by a signed assertion (accounts/client_assertions.py);
no cookie, no session, so no CSRF token either. Every refusal is a FHIR OperationOutcome:
401 for anything wrong with the token, 400 for a bad request, 429 (with Retry-After) for a
client over its rate limit, never a 500 page. An unknown
patient gets an empty Bundle, the same as a patient nobody has accessed. Each authenticated
call is audited (audit/log_reads.py) before the answer goes out.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from functools import partial
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from pjd_portal.access import policy
from pjd_portal.accounts.audit_context import anonymous_actor
from pjd_portal.accounts.client_assertions import ClientAuthenticationFailed, authenticate_client
from pjd_portal.accounts.sessions import sessionless_view
from pjd_portal.auditlog.events import Outcome
from pjd_portal.auditlog.services import AuditWriteFailed
from pjd_portal.lib import rate_limits
from pjd_portal.lib.replica import reading_from_replica
from pjd_portal.logreading import fhir
from pjd_portal.logreading.log_reads import record_client_rate_limited, record_log_read
from pjd_portal.logreading.selectors import InvalidCursor, decode_cursor, patient_log_page
from pjd_portal.patients.lookup import find_patient, read_national_id
from pjd_portal.patients.national_id import InvalidNationalId, NationalId

logger = logging.getLogger(__name__)

FHIR_JSON = "application/fhir+json"
JSON_TYPES = frozenset({"application/json", FHIR_JSON})
MAX_COUNT = 100
MAX_BODY_BYTES = 16 * 1024
CHANNEL = "fhir_api"
RATE_GROUP = "pjd.citizen_api"


class BadRequest(Exception):
    def __init__(self, diagnostics: str, code: str = "invalid", *, logged: bool = False) -> None:
        super().__init__(diagnostics)
        self.diagnostics = diagnostics
        self.code = code
        self.logged = logged  # its event is written already


def _fhir_response(body: dict[str, Any], status: int = 200) -> HttpResponse:
    response = HttpResponse(json.dumps(body), content_type=FHIR_JSON, status=status)
    response["Cache-Control"] = "no-store"
    return response


def _outcome(status: int, code: str, diagnostics: str) -> HttpResponse:
    return _fhir_response(fhir.operation_outcome(code, diagnostics), status=status)


def _unauthorized() -> HttpResponse:
    # One answer for every token fault: the client learns nothing about which check failed.
    response = _outcome(401, "login", "A valid client assertion (Bearer JWT, RS256) is required.")
    response["WWW-Authenticate"] = 'Bearer error="invalid_token"'
    return response


def _parameters(request: HttpRequest) -> dict[str, str]:
    if len(request.body) > MAX_BODY_BYTES:
        raise BadRequest("The request body is too large.", "too-long")
    if request.content_type in JSON_TYPES:
        try:
            data = json.loads(request.body or b"{}")
        except (ValueError, UnicodeDecodeError) as exc:
            raise BadRequest("The body is not valid JSON.", "structure") from exc
        if not isinstance(data, dict):
            raise BadRequest("The JSON body must be an object.", "structure")
        params: dict[str, Any] = data
    else:
        params = request.POST.dict()
    unknown = set(params) - {"patient", "cursor", "_count"}
    if unknown:
        raise BadRequest(f"Unsupported search parameters: {', '.join(sorted(unknown))}.", "not-supported")
    if set(request.GET) - {"cursor"}:
        raise BadRequest("Search parameters go in the body, not the URL.", "not-supported")
    result: dict[str, str] = {}
    for name in ("patient", "cursor", "_count"):
        value = params.get(name, request.GET.get(name) if name == "cursor" else None)
        if value is None:
            continue
        if not isinstance(value, str | int) or isinstance(value, bool):
            raise BadRequest(f"The parameter {name} must be a string.")
        result[name] = str(value).strip()
    return result


def _national_id(raw: str) -> str:
    prefix = f"{fhir.NATIONAL_ID_SYSTEM}|"
    if raw.startswith(prefix):
        raw = raw[len(prefix) :]
    elif "|" in raw:
        raise BadRequest("The patient identifier system must be the national id (fødselsnummer).", "value")
    return raw


def _count(raw: str | None) -> int:
    if raw is None or raw == "":
        return min(settings.PATIENT_LOG_PAGE_SIZE, MAX_COUNT)
    if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= MAX_COUNT:
        raise BadRequest(f"_count must be a number from 1 to {MAX_COUNT}.", "value")
    return int(raw)


@csrf_exempt  # token-authenticated: no cookie is read, so there is nothing to forge
@sessionless_view
def auditevent_search(request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        response = _outcome(405, "not-supported", "Search with POST; the national id never goes in a URL.")
        response["Allow"] = "POST"
        return response
    endpoint = request.build_absolute_uri(reverse("fhir:auditevent_search"))
    try:
        assertion = authenticate_client(request, audience=endpoint)
    except ClientAuthenticationFailed as exc:
        logger.warning("FHIR AuditEvent search refused: %s", exc.code)
        return _unauthorized()
    # From here on the caller is a client we know (its signed assertion checked out), so
    # what it is refused is logged. An unauthenticated call is not: it must not be able to
    # fill the log (it goes to the application log above).
    audit: dict[str, Any] = {"client_id": assertion.client_id, "jti": assertion.jti}
    log = partial(record_log_read, actor=anonymous_actor(request), where=None, channel=CHANNEL)
    try:
        if not policy.may_read_patient_access_log_as_client(
            assertion.client_id, frozenset({settings.CITIZEN_PORTAL_CLIENT_ID})
        ):
            log(outcome=Outcome.DENIED, reason_code="client_not_allowed", details=audit)
            return _unauthorized()
        refused = _rate_refusal(request, assertion.client_id)
        if refused is not None:
            return refused
        try:
            # The client's check above read from the primary; the patient's log may come
            # from the replica (lib/replica.py), its read logged on the primary all the same.
            with reading_from_replica():
                return _search(request, endpoint, audit, log)
        except BadRequest as exc:
            if not exc.logged:  # the request's own words are not stored: only what was wrong
                log(outcome=Outcome.INVALID, reason_code=f"bad_request_{exc.code}"[:50], details=audit)
            return _outcome(400, exc.code, exc.diagnostics)
    except AuditWriteFailed:
        # Nothing is returned that could not be logged.
        return _outcome(503, "transient", "The access log is unavailable. Try again later.")


def _rate_refusal(request: HttpRequest, client_id: str) -> HttpResponse | None:
    """The client's calls per minute and hour (settings.RATE_CITIZEN_API_*): over a limit,
    a 429 OperationOutcome with Retry-After, nothing searched; the first refusal in a window
    is logged (rate_limited)."""

    limits = (
        rate_limits.Limit(settings.RATE_CITIZEN_API_PER_MINUTE, "m"),
        rate_limits.Limit(settings.RATE_CITIZEN_API_PER_HOUR, "h"),
    )
    refusal = rate_limits.count_and_check(group=RATE_GROUP, caller=client_id, limits=limits)
    if refusal is None:
        return None
    if rate_limits.first_refusal(group=RATE_GROUP, caller=client_id, refusal=refusal):
        record_client_rate_limited(actor=anonymous_actor(request), client_id=client_id, refusal=refusal)
    response = _outcome(
        429,
        "throttled",
        f"Too many calls: at most {refusal.limit.rate}. Try again in {refusal.retry_after} s.",
    )
    response["Retry-After"] = str(refusal.retry_after)
    return response


LogRead = Callable[..., object]


def _search(request: HttpRequest, endpoint: str, audit: dict[str, Any], log: LogRead) -> HttpResponse:
    params = _parameters(request)
    entered = _entered_national_id(params, audit, log)
    count = _count(params.get("_count"))
    cursor = params.get("cursor") or None
    now = timezone.now()
    match = find_patient(entered)
    patient = match.patient
    if patient is None:
        if cursor:  # validated as for a known patient: the answer must not differ
            _check_cursor(cursor)
        log(
            outcome=Outcome.NOT_FOUND,
            national_id=match.national_id,
            reason_code=match.reason_code,
            details={**audit, "returned": 0},
        )
        return _fhir_response(fhir.search_bundle([], self_url=endpoint, now=now))
    try:
        page = patient_log_page(patient.pk, cursor=cursor, limit=count)
    except InvalidCursor as exc:
        raise BadRequest("The cursor is not valid.", "value") from exc
    log(
        outcome=Outcome.GRANTED,
        patient=patient,
        details={**audit, "returned": len(page.events), "cursor": bool(cursor)},
    )
    next_url = f"{endpoint}?{urlencode({'cursor': page.next_cursor})}" if page.next_cursor else None
    server = fhir.ServerIdentity(host=request.get_host())
    bundle = fhir.search_bundle(
        # The patient's own log: what the policy lets the patient see of each event.
        [fhir.audit_event(event, audience=policy.CITIZEN_LOG, server=server) for event in page.events],
        self_url=endpoint,
        next_url=next_url,
        now=now,
    )
    return _fhir_response(bundle)


def _entered_national_id(params: dict[str, str], audit: dict[str, Any], log: LogRead) -> NationalId:
    raw = _national_id(params.get("patient", ""))
    if not raw:
        raise BadRequest("The parameter patient (the national id) is required.", "required")
    entered = read_national_id(raw)
    if isinstance(entered, InvalidNationalId):
        # The invalid input is not stored: it may be a mistyped real id.
        log(outcome=Outcome.INVALID, reason_code=f"invalid_{entered.code}", details=audit)
        raise BadRequest("The patient parameter is not a valid national id.", "value", logged=True)
    return entered


def _check_cursor(cursor: str) -> None:
    try:
        decode_cursor(cursor)
    except InvalidCursor as exc:
        raise BadRequest("The cursor is not valid.", "value") from exc
