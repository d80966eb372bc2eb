"""HelseID login on top of mozilla-django-oidc, with the defaults HelseID needs changed.

mozilla-django-oidc 5.0.2 matches users by e-mail, checks neither `iss` nor `aud`, has
no `private_key_jwt` and calls the userinfo endpoint. Here:
- the client authenticates with a signed assertion (`private_key_jwt`), never a secret;
- the ID token is checked for signature (JWKS, RS256 only), `iss`, `aud`, `azp`, `exp`,
  `nbf`, `iat` and `nonce`;
- claims come from the ID token (HelseID puts them there); users are keyed on the pid;
- a refused login (no HPR number, security level below 4, bad token, provider down)
  gets a clear page and an audit event, never a 500.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import jwt
import requests
from django.conf import settings
from django.contrib import auth
from django.core.exceptions import SuspiciousOperation
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from mozilla_django_oidc.auth import OIDCAuthenticationBackend
from mozilla_django_oidc.views import OIDCAuthenticationCallbackView, OIDCAuthenticationRequestView

from pjd_portal.access import policy
from pjd_portal.access.launch import SESSION_LAUNCH_KEY
from pjd_portal.accounts import facts, keys, provider
from pjd_portal.accounts.audit_context import actor_of, anonymous_actor, point_of_care_for, point_of_care_of
from pjd_portal.accounts.context import (
    SESSION_ORG_CHOICES_KEY,
    SESSION_ORG_CLAIMED_KEY,
    SESSION_ORG_KEY,
    organisation_choices,
)
from pjd_portal.accounts.models import Organisation, User
from pjd_portal.accounts.roles import roles_held_by_pid
from pjd_portal.auditlog import events
from pjd_portal.auditlog.events import Outcome
from pjd_portal.auditlog.services import AuditWriteFailed, record_event

logger = logging.getLogger(__name__)

CLAIM_PID = "helseid://claims/identity/pid"
CLAIM_SECURITY_LEVEL = "helseid://claims/identity/security_level"
CLAIM_HPR = "helseid://claims/hpr/hpr_number"
CLAIM_ORGNR_PARENT = "helseid://claims/client/claims/orgnr_parent"
CLAIM_ORGNR_CHILD = "helseid://claims/client/claims/orgnr_child"
JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
# A silent login (prompt=none, for a launch from the EPJ) that HelseID cannot finish without
# the person: answered with one of these, it becomes an ordinary login, not a refusal.
SESSION_SILENT_STATES_KEY = "pjd_silent_login_states"
NEEDS_INTERACTION = frozenset(
    {"login_required", "interaction_required", "consent_required", "account_selection_required"}
)


@dataclass(frozen=True)
class LoginRefusal:
    reason_code: str
    pid: str = ""


class LoginRefused(SuspiciousOperation):
    def __init__(self, reason_code: str) -> None:
        super().__init__(reason_code)
        self.reason_code = reason_code


def _load_client_key() -> bytes:
    try:
        return provider.client_private_key()
    except OSError as exc:
        raise LoginRefused("client_key_missing") from exc


def client_assertion(audience: str) -> str:
    """A `private_key_jwt` client assertion: lives 60 s, unique `jti` (RFC 7523)."""

    key = _load_client_key()
    now = int(time.time())
    claims = {
        "iss": settings.OIDC_RP_CLIENT_ID,
        "sub": settings.OIDC_RP_CLIENT_ID,
        "aud": audience,
        "jti": uuid.uuid4().hex,
        "iat": now,
        "nbf": now,
        "exp": now + 60,
    }
    headers = {"typ": "JWT", "kid": keys.key_id(key)}
    return jwt.encode(claims, key, algorithm="RS256", headers=headers)


class PortalOIDCBackend(OIDCAuthenticationBackend):  # type: ignore[misc]
    def get_token(self, payload: dict[str, Any]) -> dict[str, Any]:
        payload = {k: v for k, v in payload.items() if k != "client_secret"}
        payload["client_assertion_type"] = JWT_BEARER
        payload["client_assertion"] = client_assertion(settings.OIDC_OP_TOKEN_ENDPOINT)
        response = requests.post(self.OIDC_OP_TOKEN_ENDPOINT, data=payload, timeout=settings.OIDC_TIMEOUT)
        if response.status_code != 200:
            logger.warning("token endpoint answered %s", response.status_code)
            raise LoginRefused("token_request_failed")
        try:
            result = response.json()
        except ValueError as exc:
            raise LoginRefused("token_response_malformed") from exc
        if not isinstance(result, dict):
            raise LoginRefused("token_response_malformed")
        return result

    def store_tokens(self, access_token: str, id_token: str) -> None:
        # mozilla-django-oidc stores the ID token before the claims are checked; a refused
        # login would leave its token in the session (and in a later id_token_hint).
        # Keep it aside; login_success stores it once the login has succeeded.
        self.request.pjd_pending_id_token = id_token

    def get_user(self, user_id: Any) -> User | None:
        # Django's ModelBackend refuses inactive users on every request; mozilla's
        # backend does not. A deactivated account must lose its live sessions at once.
        # Read on every request, with the version of the person's facts in the same query
        # (accounts/facts.py: the organisation, roles and authorizations kept in the
        # session hold while it has not moved).
        user = facts.user_with_version(user_id)
        return user if user is not None and user.is_active else None

    def _signing_key(self, token: str) -> jwt.PyJWK:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError as exc:
            raise LoginRefused("token_malformed") from exc
        # Only the one expected algorithm: this refuses `alg=none` and an HS256 token
        # "signed" with the provider's public key before any key is looked at.
        if header.get("alg") != settings.OIDC_RP_SIGN_ALGO:
            raise LoginRefused("token_algorithm")
        for refresh in (False, True):  # an unknown kid gets one refetch (key rotation)
            for jwk in provider.signing_keys(refresh=refresh):
                if not isinstance(jwk, dict):
                    continue
                if jwk.get("kid") == header.get("kid") and jwk.get("alg", header["alg"]) == header["alg"]:
                    try:
                        return jwt.PyJWK(jwk)
                    except jwt.PyJWTError as exc:
                        raise LoginRefused("token_unknown_key") from exc
        raise LoginRefused("token_unknown_key")

    def verify_token(self, token: str, **kwargs: Any) -> dict[str, Any]:
        if not token:
            raise LoginRefused("token_missing")
        key = self._signing_key(token)
        try:
            payload: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[settings.OIDC_RP_SIGN_ALGO],
                audience=settings.OIDC_RP_CLIENT_ID,
                issuer=settings.OIDC_ISSUER,
                leeway=settings.OIDC_CLOCK_LEEWAY_SECONDS,
                options={"require": ["exp", "iat", "iss", "aud", "sub"]},
            )
        except jwt.InvalidTokenError as exc:
            logger.warning("ID token refused: %s", type(exc).__name__)
            raise LoginRefused("token_invalid") from exc
        aud = payload.get("aud")
        azp = payload.get("azp")
        several_audiences = isinstance(aud, list) and len(aud) > 1
        # OIDC Core 3.1.3.7: with several audiences azp must name us; when present it must
        # always name us.
        if (azp is not None or several_audiences) and azp != settings.OIDC_RP_CLIENT_ID:
            raise LoginRefused("token_azp")
        if payload.get("nonce") != kwargs.get("nonce"):
            raise LoginRefused("token_nonce")
        return payload

    def get_userinfo(self, access_token: str, id_token: str, payload: dict[str, Any]) -> dict[str, Any]:
        # HelseID puts the identity claims in the ID token, which is verified; no need
        # for a second, unsigned source of truth.
        return payload

    def verify_claims(self, claims: dict[str, Any]) -> bool:
        request = self.request
        pid = str(claims.get(CLAIM_PID) or "")
        # The facts only, every one of them: which of them matter is the policy's rule.
        decision = policy.may_log_in(
            policy.LoginFacts(
                pid=pid,
                security_level=str(claims.get(CLAIM_SECURITY_LEVEL) or ""),
                hpr_number=str(claims.get(CLAIM_HPR) or ""),
                active_roles=roles_held_by_pid(pid) if pid else frozenset(),
            )
        )
        if not decision:
            self._refuse(decision.reason_code, pid)
        request.pjd_claims = claims
        return True

    def _refuse(self, reason_code: str, pid: str) -> None:
        self.request.pjd_login_refusal = LoginRefusal(reason_code, pid)
        raise LoginRefused(reason_code)

    def filter_users_by_claims(self, claims: dict[str, Any]) -> Any:
        return self.UserModel.objects.filter(pid=claims[CLAIM_PID])

    def create_user(self, claims: dict[str, Any]) -> User:
        user = User(username=_username_for(claims[CLAIM_PID]), pid=claims[CLAIM_PID])
        self._apply_claims(user, claims)
        user.set_unusable_password()
        user.save()
        return user

    def update_user(self, user: User, claims: dict[str, Any]) -> User:
        self._apply_claims(user, claims)
        user.save(update_fields=["hpr_number", "first_name", "last_name", "display_name"])
        return user

    @staticmethod
    def _apply_claims(user: User, claims: dict[str, Any]) -> None:
        user.hpr_number = str(claims.get(CLAIM_HPR) or "")
        user.first_name = str(claims.get("given_name") or "")[:150]
        user.last_name = str(claims.get("family_name") or "")[:150]
        user.display_name = str(claims.get("name") or "")[:200]


class PortalAuthenticateView(OIDCAuthenticationRequestView):  # type: ignore[misc]
    """Start a login. mozilla-django-oidc builds the request (state, nonce, PKCE S256) and
    keeps them in the session; when the provider offers pushed authorization requests
    (RFC 9126), the parameters go to it over the back channel, signed for with the
    client assertion, and the browser carries only the `request_uri`."""

    http_method_names = ["get"]

    def get(self, request: HttpRequest) -> HttpResponse:
        response: HttpResponse = super().get(request)
        prompt = ""
        if request.GET.get("reauth") == "1":
            # After a session timeout: the person must prove who they are again, not be
            # signed straight back in by the provider's own session (a shared clinic PC).
            prompt = "login"
        elif request.GET.get("silent") == "1":
            # A launch from the EPJ: the person is signed in with HelseID already (the EPJ's
            # own login); no page of the provider's should stand between the EPJ and the
            # list. Should HelseID need the person, the callback starts an ordinary login.
            prompt = "none"
        if prompt:
            url = urlsplit(response["Location"])
            params = parse_qsl(url.query)
            if prompt == "none":
                state = dict(params).get("state", "")
                silent = request.session.get(SESSION_SILENT_STATES_KEY, [])[-4:]
                request.session[SESSION_SILENT_STATES_KEY] = [*silent, state]
            query = urlencode([*params, ("prompt", prompt)])
            response = HttpResponseRedirect(url._replace(query=query).geturl())
        try:
            endpoint = provider.par_endpoint()
            if endpoint is None:
                return response
            return self._pushed(response["Location"], endpoint)
        except (provider.ProviderUnavailable, requests.RequestException, ValueError):
            return self._refused(request, "provider_unreachable", status=503)
        except LoginRefused as exc:
            return self._refused(request, exc.reason_code)

    def _pushed(self, authorize_url: str, endpoint: str) -> HttpResponse:
        params = dict(parse_qsl(urlsplit(authorize_url).query))
        params["client_assertion_type"] = JWT_BEARER
        # RFC 9126 §2: the issuer identifier is a valid audience for the PAR endpoint.
        params["client_assertion"] = client_assertion(settings.OIDC_ISSUER)
        answer = requests.post(endpoint, data=params, timeout=settings.OIDC_TIMEOUT)
        if answer.status_code not in (200, 201):
            logger.warning("PAR endpoint answered %s", answer.status_code)
            raise LoginRefused("par_refused")
        try:
            body = answer.json()
        except ValueError as exc:
            raise LoginRefused("par_refused") from exc
        request_uri = body.get("request_uri") if isinstance(body, dict) else None
        if not isinstance(request_uri, str) or not request_uri:
            raise LoginRefused("par_refused")
        query = urlencode({"client_id": settings.OIDC_RP_CLIENT_ID, "request_uri": request_uri})
        return HttpResponseRedirect(f"{self.OIDC_OP_AUTH_ENDPOINT}?{query}")

    @staticmethod
    def _refused(request: HttpRequest, reason_code: str, status: int = 403) -> HttpResponse:
        record_event(
            events.LOGIN_REFUSED(outcome=Outcome.DENIED, reason_code=reason_code),
            actor=actor_of(request),
            where=point_of_care_of(request),
        )
        return _refusal_page(request, reason_code, status)


def _refusal_page(request: HttpRequest, reason_code: str, status: int = 403) -> HttpResponse:
    context = {"reason_code": reason_code, "message": policy.login_refusal_message(reason_code)}
    return render(request, "accounts/login_refused.html", context, status=status)


class PortalCallbackView(OIDCAuthenticationCallbackView):  # type: ignore[misc]
    def get(self, request: HttpRequest) -> HttpResponse:
        if request.GET.get("error"):
            error = request.GET.get("error", "")
            state = request.GET.get("state")
            states = request.session.get("oidc_states", {})
            if state not in states:
                # Not an answer to a login started in this browser (e.g. a link from
                # another site): change nothing, log it in nobody's name.
                record_event(
                    events.LOGIN_REFUSED(outcome=Outcome.DENIED, reason_code="state_invalid"),
                    actor=anonymous_actor(request),
                    where=None,
                )
                return _refusal_page(request, "state_invalid")
            # Forget the state so it cannot be replayed; not through super().get(), whose
            # failure path would write a second refusal event. Whoever is logged in stays so.
            del states[state]
            silent = request.session.get(SESSION_SILENT_STATES_KEY, [])
            if state in silent:
                request.session[SESSION_SILENT_STATES_KEY] = [s for s in silent if s != state]
                if error in NEEDS_INTERACTION:
                    # The silent attempt of a launch: now the person logs in, as ever.
                    next_url = request.session.get("oidc_login_next") or reverse("accounts:home")
                    login = f"{reverse('oidc_authentication_init')}?{urlencode({'next': next_url})}"
                    return HttpResponseRedirect(login)
            request.session.save()
            record_event(
                events.LOGIN_REFUSED(outcome=Outcome.DENIED, reason_code=f"provider_{error}"[:50]),
                actor=actor_of(request),
                where=point_of_care_of(request),
            )
            return _refusal_page(request, "provider_error" if error != "access_denied" else "cancelled")
        try:
            return super().get(request)  # type: ignore[no-any-return]
        except LoginRefused as exc:
            return self._refused(exc.reason_code)
        except SuspiciousOperation:
            # e.g. a replayed or foreign `state`
            return self._refused("state_invalid")
        except (requests.RequestException, provider.ProviderUnavailable) as exc:
            logger.warning("identity provider unreachable: %s", type(exc).__name__)
            return self._refused("provider_unreachable", status=503)

    def _refused(self, reason_code: str, status: int = 403) -> HttpResponse:
        refusal = getattr(self.request, "pjd_login_refusal", None)
        if reason_code != "state_invalid" and self.request.user.is_authenticated:
            # A login begun in this browser failed: whoever was logged in here before must
            # not stay so (someone else is at the keyboard). Their session's end is logged
            # in their name; it ends even if that event cannot be written.
            try:
                record_event(
                    events.LOGOUT(outcome=Outcome.GRANTED, reason_code="another_login_failed"),
                    actor=actor_of(self.request),
                    where=point_of_care_of(self.request),
                )
            except AuditWriteFailed:
                logger.error("logout event for the previous user could not be written")
            finally:
                auth.logout(self.request)
        record_event(
            events.LOGIN_REFUSED(
                outcome=Outcome.DENIED, reason_code=refusal.reason_code if refusal else reason_code
            ),
            # Nobody is logged in now: the refused person is named by the pid they gave.
            actor=anonymous_actor(self.request, pid=refusal.pid if refusal else ""),
            where=(point_of_care_of(self.request) if reason_code != "state_invalid" else None),
        )
        return _refusal_page(self.request, refusal.reason_code if refusal else reason_code, status)

    def login_failure(self) -> HttpResponse:
        return self._refused("login_failed")

    def login_success(self) -> HttpResponse:
        auth.login(self.request, self.user)  # rotates the session key
        session = self.request.session
        # Django keeps the session's data across a login (new key, same data): nothing
        # from an earlier login in this browser may carry over.
        for key in (SESSION_ORG_KEY, SESSION_ORG_CHOICES_KEY, SESSION_ORG_CLAIMED_KEY):
            session.pop(key, None)
        session["oidc_id_token"] = getattr(self.request, "pjd_pending_id_token", None)
        claims: dict[str, Any] = getattr(self.request, "pjd_claims", {})
        claimed = _organisation_from_claims(claims)
        choices = organisation_choices(self.user, claimed)
        org = choices[0] if len(choices) == 1 else None
        if org is not None:
            self.request.session[SESSION_ORG_KEY] = org.pk
        elif choices:
            # Several organisations: the user chooses before acting for any of them.
            self.request.session[SESSION_ORG_CHOICES_KEY] = [o.pk for o in choices]
            self.request.session[SESSION_ORG_CLAIMED_KEY] = claimed.pk if claimed else None
        record_event(
            events.LOGIN(
                outcome=Outcome.GRANTED, details={"claimed_orgnr": claimed.orgnr} if claimed else None
            ),
            actor=actor_of(self.request, self.user),
            where=point_of_care_for(org),
        )
        if org is None and choices and SESSION_LAUNCH_KEY not in session:
            # (A launch from the EPJ names the organisation: the launch chooses it.)
            return HttpResponseRedirect(reverse("accounts:choose_organisation"))
        return super().login_success()  # type: ignore[no-any-return]


def _organisation_from_claims(claims: dict[str, Any]) -> Organisation | None:
    for claim in (CLAIM_ORGNR_CHILD, CLAIM_ORGNR_PARENT):
        orgnr = claims.get(claim)
        if orgnr:
            org = Organisation.objects.filter(orgnr=str(orgnr)).first()
            if org is not None:
                return org
    return None


def _username_for(pid: str) -> str:
    """A random username that shows nothing of the person's national id: random hex can
    hold a run of its digits by chance (about one in 500), and a username is shown in the
    admin area and in logs, so such a draw is thrown away."""

    runs = {pid[i : i + 4] for i in range(len(pid) - 3)}
    while True:
        name = f"u-{uuid.uuid4().hex[:20]}"
        if not any(run in name for run in runs):
            return name
