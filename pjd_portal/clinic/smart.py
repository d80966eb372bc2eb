"""The portal as a SMART on FHIR app that an EHR launches (SMART App Launch 2.x, EHR launch).

The EHR opens `/smart/launch?iss=<its FHIR base>&launch=<opaque>`. The portal talks only to
EHRs named in settings.SMART_EHRS, and only to the authorization server the portal trusts
for that EHR (HelseID unless configured otherwise): the `iss` of a launch URL is anyone's to
write, so nothing it names is fetched before it is found in that list.

Then, as a confidential client (`private_key_jwt` with the portal's own client key):
discovery of the EHR's smart-configuration, the authorization request with `launch`, `aud`
and PKCE S256 (state, nonce and verifier kept in the session), the token exchange, the ID
token's checks (the clinician at the EHR must be the one logged in here), and the read of
the launch's Patient, whose national id is what the portal looks the patient up by.

Every failure is a `SmartRefused` with a reason code; the views turn it into a page and
an event. No national id, launch token, code or EHR patient id goes into a log line.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

import jwt
import requests
from django.conf import settings
from django.http import HttpRequest
from django.urls import reverse

from pjd_portal.accounts import keys, provider

logger = logging.getLogger(__name__)

SESSION_KEY = "pjd_smart_pending"
# Launches begun and not yet back, per session: a second tab may start another one; more
# than a few is noise, the oldest is dropped.
MAX_PENDING = 3
PENDING_SECONDS = 600
MAX_PARAMETER_LENGTH = 2048
JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
CLAIM_PID = "helseid://claims/identity/pid"
# A FHIR logical id (FHIR R4 id datatype): safe in a URL path as it is.
FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
# The Norwegian person identifiers, in the order they are preferred when a Patient carries
# several: fødselsnummer, D-nummer, H-nummer.
NATIONAL_ID_SYSTEMS = (
    "urn:oid:2.16.578.1.12.4.1.4.1",
    "urn:oid:2.16.578.1.12.4.1.4.2",
    "urn:oid:2.16.578.1.12.4.1.4.3",
)


class SmartRefused(Exception):
    """The launch cannot go on. `reason_code` goes to the event; `status` to the page."""

    def __init__(self, reason_code: str, status: int) -> None:
        super().__init__(reason_code)
        self.reason_code = reason_code
        self.status = status


# The refusals: reason code -> HTTP status of the page.
INCOMPLETE = "smart_launch_incomplete"
ISS_UNKNOWN = "smart_iss_unknown"
EHR_UNREACHABLE = "smart_ehr_unreachable"
CONFIGURATION_INVALID = "smart_configuration_invalid"
AUTHORIZATION_REFUSED = "smart_authorization_refused"
STATE_MISMATCH = "smart_state_mismatch"
TOKEN_FAILED = "smart_token_failed"  # noqa: S105 - a reason code, not a secret
NO_PATIENT = "smart_no_patient"
ID_TOKEN_INVALID = "smart_id_token_invalid"  # noqa: S105 - a reason code
PERSON_MISMATCH = "smart_person_mismatch"
PATIENT_READ_FAILED = "smart_patient_read_failed"
NO_NATIONAL_ID = "smart_no_national_id"
STATUS = {
    INCOMPLETE: 400,
    ISS_UNKNOWN: 403,
    EHR_UNREACHABLE: 503,
    CONFIGURATION_INVALID: 502,
    AUTHORIZATION_REFUSED: 403,
    STATE_MISMATCH: 400,
    TOKEN_FAILED: 502,
    NO_PATIENT: 502,
    ID_TOKEN_INVALID: 502,
    PERSON_MISMATCH: 403,
    PATIENT_READ_FAILED: 502,
    NO_NATIONAL_ID: 422,
}


def refused(reason_code: str) -> SmartRefused:
    return SmartRefused(reason_code, STATUS[reason_code])


@dataclass(frozen=True)
class Ehr:
    iss: str  # the FHIR base, as configured (no trailing slash)
    name: str
    client_id: str
    issuer: str  # the authorization server its smart-configuration must name


def ehr_for(iss: str) -> Ehr | None:
    """The configured EHR with this FHIR base, or None: only these are ever contacted."""

    base = iss.rstrip("/")
    config = settings.SMART_EHRS.get(base)
    if config is None:
        return None
    issuer = str(config.get("issuer") or settings.OIDC_ISSUER).rstrip("/")
    return Ehr(base, str(config.get("name") or base), str(config["client_id"]), issuer)


def ehr_by_iss(iss: str) -> Ehr:
    if not iss or len(iss) > MAX_PARAMETER_LENGTH:
        raise refused(INCOMPLETE)
    ehr = ehr_for(iss)
    if ehr is None:
        raise refused(ISS_UNKNOWN)
    return ehr


def _origin(url: str) -> str:
    """Scheme and host; "" for what is no URL (an endpoint like `https://[idp/...` must be
    a refusal of the configuration, not a 500)."""

    try:
        parts = urlsplit(url)
    except ValueError:
        return ""
    return f"{parts.scheme}://{parts.netloc}".lower()


def _get_json(url: str, *, headers: dict[str, str] | None = None, what: str) -> tuple[int, Any]:
    """GET with the timeout and no redirects (a redirect could lead anywhere). Raises
    requests' errors; answers the status and the JSON (None when the body is not JSON)."""

    response = requests.get(url, headers=headers or {}, timeout=settings.SMART_TIMEOUT, allow_redirects=False)
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code != 200:
        logger.warning("smart: %s answered %s", what, response.status_code)
    return response.status_code, body


@dataclass(frozen=True)
class SmartConfiguration:
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str


def discover(ehr: Ehr) -> SmartConfiguration:
    """The EHR's `.well-known/smart-configuration`, checked: its issuer is the one trusted
    for this EHR, its endpoints are on that issuer's origin, it offers the EHR launch,
    asymmetric client authentication and PKCE S256."""

    try:
        status, body = _get_json(
            f"{ehr.iss}/.well-known/smart-configuration",
            headers={"Accept": "application/json"},
            what="smart-configuration",
        )
    except requests.RequestException as exc:
        logger.warning("smart: smart-configuration of %s failed: %s", ehr.name, type(exc).__name__)
        raise refused(EHR_UNREACHABLE) from exc
    if status != 200:
        raise refused(EHR_UNREACHABLE if status >= 500 else CONFIGURATION_INVALID)
    if not isinstance(body, dict):
        raise refused(CONFIGURATION_INVALID)
    issuer = str(body.get("issuer") or "").rstrip("/")
    endpoints = [body.get(k) for k in ("authorization_endpoint", "token_endpoint", "jwks_uri")]
    capabilities = body.get("capabilities") or []
    methods = body.get("code_challenge_methods_supported") or []
    auth_methods = body.get("token_endpoint_auth_methods_supported") or ["private_key_jwt"]
    problems = [
        issuer != ehr.issuer,
        not all(isinstance(e, str) and _origin(e) and _origin(e) == _origin(ehr.issuer) for e in endpoints),
        not isinstance(capabilities, list) or "launch-ehr" not in capabilities,
        not isinstance(methods, list) or "S256" not in methods,
        not isinstance(auth_methods, list) or "private_key_jwt" not in auth_methods,
    ]
    if any(problems):
        # Which check failed is for the operator: it names no patient or person.
        logger.warning("smart: smart-configuration of %s refused (checks %s)", ehr.name, problems)
        raise refused(CONFIGURATION_INVALID)
    authorize, token, jwks = (str(e) for e in endpoints)
    return SmartConfiguration(issuer, authorize, token, jwks)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def redirect_uri(request: HttpRequest) -> str:
    return request.build_absolute_uri(reverse("smart_callback"))


def authorization_url(request: HttpRequest, ehr: Ehr, launch: str) -> str:
    """Begin the launch: the EHR's authorization URL, with what the callback needs kept
    in the session under the request's `state`."""

    if not launch or len(launch) > MAX_PARAMETER_LENGTH:
        raise refused(INCOMPLETE)
    config = discover(ehr)
    state = secrets.token_urlsafe(32)
    nonce = secrets.token_urlsafe(32)
    verifier = secrets.token_urlsafe(64)
    pending: dict[str, dict[str, Any]] = dict(request.session.get(SESSION_KEY) or {})
    now = time.time()
    pending = {k: v for k, v in pending.items() if v.get("at", 0) > now - PENDING_SECONDS}
    while len(pending) >= MAX_PENDING:
        pending.pop(min(pending, key=lambda k: pending[k]["at"]))
    pending[state] = {
        "iss": ehr.iss,
        "nonce": nonce,
        "verifier": verifier,
        "issuer": config.issuer,
        "token_endpoint": config.token_endpoint,
        "jwks_uri": config.jwks_uri,
        "at": now,
    }
    request.session[SESSION_KEY] = pending
    query = {
        "response_type": "code",
        "client_id": ehr.client_id,
        "redirect_uri": redirect_uri(request),
        "scope": settings.SMART_SCOPE,
        "state": state,
        "nonce": nonce,
        "aud": ehr.iss,
        "launch": launch,
        "code_challenge": _b64(hashlib.sha256(verifier.encode()).digest()),
        "code_challenge_method": "S256",
    }
    separator = "&" if "?" in config.authorization_endpoint else "?"
    return f"{config.authorization_endpoint}{separator}{urlencode(query)}"


def take_pending(request: HttpRequest, state: str) -> tuple[Ehr, dict[str, Any]]:
    """The launch this callback's `state` belongs to, taken out of the session (a state
    is used once). Refused when there is none, or it is stale, or its EHR is gone."""

    pending: dict[str, dict[str, Any]] = dict(request.session.get(SESSION_KEY) or {})
    entry = pending.pop(state, None) if state else None
    request.session[SESSION_KEY] = pending
    if entry is None or entry.get("at", 0) < time.time() - PENDING_SECONDS:
        raise refused(STATE_MISMATCH)
    ehr = ehr_for(str(entry["iss"]))
    if ehr is None:  # taken out of the configuration since the launch began
        raise refused(ISS_UNKNOWN)
    return ehr, entry


def pending_iss(request: HttpRequest, state: str) -> str:
    """The EHR a state belongs to, for the event of a refusal before it is taken."""

    entry = (request.session.get(SESSION_KEY) or {}).get(state) if state else None
    return str(entry["iss"]) if isinstance(entry, dict) else ""


def _client_assertion(client_id: str, audience: str) -> str:
    """`private_key_jwt` (RFC 7523) with the portal's own client key: lives 60 s, unique jti."""

    key = provider.client_private_key()
    now = int(time.time())
    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": audience,
        "jti": uuid.uuid4().hex,
        "iat": now,
        "nbf": now,
        "exp": now + 60,
    }
    return jwt.encode(claims, key, algorithm="RS256", headers={"typ": "JWT", "kid": keys.key_id(key)})


@dataclass(frozen=True)
class Tokens:
    access_token: str
    patient: str
    id_token: str


def exchange_code(request: HttpRequest, ehr: Ehr, entry: dict[str, Any], code: str) -> Tokens:
    if not code or len(code) > MAX_PARAMETER_LENGTH:
        raise refused(TOKEN_FAILED)
    token_endpoint = str(entry["token_endpoint"])
    try:
        assertion = _client_assertion(ehr.client_id, token_endpoint)
    except OSError as exc:
        logger.error("smart: the portal's client key is missing")
        raise refused(TOKEN_FAILED) from exc
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect_uri(request),
        "code_verifier": str(entry["verifier"]),
        "client_id": ehr.client_id,
        "client_assertion_type": JWT_BEARER,
        "client_assertion": assertion,
    }
    try:
        response = requests.post(
            token_endpoint, data=data, timeout=settings.SMART_TIMEOUT, allow_redirects=False
        )
        body = response.json()
    except (requests.RequestException, ValueError) as exc:
        logger.warning("smart: token endpoint of %s failed: %s", ehr.name, type(exc).__name__)
        raise refused(TOKEN_FAILED) from exc
    return _tokens_from(response.status_code, body)


def _tokens_from(status: int, body: Any) -> Tokens:
    """The token response, checked: an access token, the launch's patient, an ID token."""

    if status != 200 or not isinstance(body, dict):
        error = body.get("error") if isinstance(body, dict) else None
        logger.warning("smart: token endpoint answered %s (%s)", status, error)
        raise refused(TOKEN_FAILED)
    access_token = body.get("access_token")
    if not isinstance(access_token, str) or not access_token:
        raise refused(TOKEN_FAILED)
    patient = body.get("patient")
    if not isinstance(patient, str) or not FHIR_ID.fullmatch(patient):
        raise refused(NO_PATIENT)
    id_token = body.get("id_token")
    if not isinstance(id_token, str) or not id_token:
        # openid was asked for: without an ID token the person at the EHR is unknown.
        raise refused(ID_TOKEN_INVALID)
    return Tokens(access_token, patient, id_token)


def _signing_key(jwks_uri: str, token: str) -> jwt.PyJWK:
    try:
        header = jwt.get_unverified_header(token)
    except jwt.InvalidTokenError as exc:
        raise refused(ID_TOKEN_INVALID) from exc
    if header.get("alg") != "RS256":  # refuses alg=none and an HMAC over the public key
        raise refused(ID_TOKEN_INVALID)
    try:
        status, body = _get_json(jwks_uri, headers={"Accept": "application/json"}, what="jwks")
    except requests.RequestException as exc:
        logger.warning("smart: jwks failed: %s", type(exc).__name__)
        raise refused(ID_TOKEN_INVALID) from exc
    found = body.get("keys") if status == 200 and isinstance(body, dict) else None
    for jwk in found if isinstance(found, list) else []:
        if isinstance(jwk, dict) and jwk.get("kid") == header.get("kid") and jwk.get("kty") == "RSA":
            try:
                return jwt.PyJWK(jwk)
            except jwt.PyJWTError as exc:
                raise refused(ID_TOKEN_INVALID) from exc
    raise refused(ID_TOKEN_INVALID)


def check_person(ehr: Ehr, entry: dict[str, Any], id_token: str, pid: str) -> None:
    """The ID token is the authorization server's, for this client and this launch (nonce),
    and names the person logged in to the portal."""

    key = _signing_key(str(entry["jwks_uri"]), id_token)
    try:
        claims: dict[str, Any] = jwt.decode(
            id_token,
            key,
            algorithms=["RS256"],
            audience=ehr.client_id,
            issuer=str(entry["issuer"]),
            leeway=settings.OIDC_CLOCK_LEEWAY_SECONDS,
            options={"require": ["exp", "iat", "iss", "aud", "sub"]},
        )
    except jwt.InvalidTokenError as exc:
        logger.warning("smart: ID token refused: %s", type(exc).__name__)
        raise refused(ID_TOKEN_INVALID) from exc
    azp = claims.get("azp")
    several = isinstance(claims.get("aud"), list) and len(claims["aud"]) > 1
    if (azp is not None or several) and azp != ehr.client_id:
        raise refused(ID_TOKEN_INVALID)
    if not secrets.compare_digest(str(claims.get("nonce", "")), str(entry["nonce"])):
        raise refused(ID_TOKEN_INVALID)
    token_pid = claims.get(CLAIM_PID)
    if not isinstance(token_pid, str) or not token_pid:
        raise refused(ID_TOKEN_INVALID)
    if not pid or not secrets.compare_digest(token_pid, pid):
        raise refused(PERSON_MISMATCH)


def read_patient_national_id(ehr: Ehr, tokens: Tokens) -> str:
    """The national id of the launch's Patient, read from the EHR with the access token.
    Answers the raw value; the caller parses it as any entered number is parsed."""

    try:
        status, body = _get_json(
            f"{ehr.iss}/Patient/{tokens.patient}",
            headers={"Accept": "application/fhir+json", "Authorization": f"Bearer {tokens.access_token}"},
            what="Patient read",
        )
    except requests.RequestException as exc:
        logger.warning("smart: Patient read at %s failed: %s", ehr.name, type(exc).__name__)
        raise refused(PATIENT_READ_FAILED) from exc
    if (
        status != 200
        or not isinstance(body, dict)
        or body.get("resourceType") != "Patient"
        or body.get("id", tokens.patient) != tokens.patient
    ):
        raise refused(PATIENT_READ_FAILED)
    identifiers = body.get("identifier") or []
    values: dict[str, str] = {}
    for identifier in identifiers if isinstance(identifiers, list) else []:
        if not isinstance(identifier, dict):
            continue
        system, value = identifier.get("system"), identifier.get("value")
        if system in NATIONAL_ID_SYSTEMS and isinstance(value, str) and value.strip():
            values.setdefault(system, value.strip())
    for system in NATIONAL_ID_SYSTEMS:
        if system in values:
            return values[system]
    raise refused(NO_NATIONAL_ID)
