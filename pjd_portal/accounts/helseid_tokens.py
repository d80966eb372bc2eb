"""HelseID access tokens from EPJ systems, sender-constrained by DPoP (RFC 9449).

An EPJ calls the launch and the MHD API with `Authorization: DPoP <access token>` and a
`DPoP` header: a proof, signed with the key the token is bound to, for this one request.
What is checked, and why each check is there (docs/epj.md, "The token"):

- the token: a JWT signed by the provider (RS256 only, its JWKS, one refetch on an unknown
  `kid`), `typ` `at+jwt` (RFC 9068: an ID token or another JWT is not an access token),
  `iss`, `aud`, `exp`/`nbf`/`iat`, the API's scope, a client the portal lets in, and a
  `cnf.jkt`: a token not bound to a key is a bearer token, which this API does not take;
- the proof: `typ` `dpop+jwt`, an asymmetric algorithm and a public key in its header,
  signed by that key, whose thumbprint is the token's `cnf.jkt`; `htm` and `htu` of this
  request; `ath` the token's hash; `iat` recent; a nonce this portal gave; `jti` never
  seen before, by any instance (DpopProofUse, in the database).

Nonces are signed timestamps, not stored: any instance checks what another gave. Every
fault is one `TokenRejected`, whose `error` is what the client is told and whose
`reason_code` goes only to the log.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import logging
import math
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import jwt
from django.conf import settings
from django.core import signing
from django.db import IntegrityError, transaction
from django.utils import timezone

from pjd_portal.accounts import provider
from pjd_portal.accounts.models import DpopProofUse

logger = logging.getLogger(__name__)

TOKEN_ALGORITHM = "RS256"  # noqa: S105 - an algorithm name
PROOF_ALGORITHMS = frozenset({"ES256", "RS256", "PS256"})
MAX_TOKEN_LENGTH = 16 * 1024
MAX_JTI_LENGTH = 200
INVALID_TOKEN = "invalid_token"  # noqa: S105 - an RFC 6750 error code
INVALID_PROOF = "invalid_dpop_proof"
USE_NONCE = "use_dpop_nonce"
INSUFFICIENT_SCOPE = "insufficient_scope"
_NONCE_SALT = "pjd.dpop-nonce"
# The private members a JWK must not carry in a proof header (a proof names a public key).
_PRIVATE_JWK_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})


class TokenRejected(Exception):
    """The call's token or proof is not accepted. `error` is the RFC 6750 / 9449 error
    code the client is told; `reason_code` is for the log; `client_id` names the client
    once the token's signature has checked out (so a known client's refusals are logged,
    and an unknown caller cannot fill the log)."""

    def __init__(self, error: str, reason_code: str, *, client_id: str = "") -> None:
        super().__init__(reason_code)
        self.error = error
        self.reason_code = reason_code
        self.client_id = client_id

    @property
    def status(self) -> int:
        return 403 if self.error == INSUFFICIENT_SCOPE else 401


# The legal entity HelseID says the client acts for (the EPJ's own organisation).
CLAIM_CLIENT_ORGNR = "helseid://claims/client/claims/orgnr_parent"


@dataclass(frozen=True)
class VerifiedToken:
    client_id: str
    jti: str
    scopes: frozenset[str]
    jkt: str
    claims: Mapping[str, Any]
    authorization_details: tuple[Mapping[str, Any], ...]

    @property
    def client_orgnr(self) -> str:
        value = self.claims.get(CLAIM_CLIENT_ORGNR)
        return value if isinstance(value, str) else ""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def jwk_thumbprint(jwk: Mapping[str, Any]) -> str:
    """RFC 7638: SHA-256 over the required members, in lexicographic order, no spaces."""

    required = {"EC": ("crv", "kty", "x", "y"), "RSA": ("e", "kty", "n"), "OKP": ("crv", "kty", "x")}
    members = required.get(str(jwk.get("kty")))
    if members is None or any(not isinstance(jwk.get(m), str) for m in members):
        raise ValueError("unsupported JWK")
    canonical = json.dumps({m: jwk[m] for m in members}, separators=(",", ":"), sort_keys=True)
    return _b64(hashlib.sha256(canonical.encode()).digest())


def access_token_hash(token: str) -> str:
    """The proof's `ath`: base64url of the SHA-256 of the token's ASCII."""

    return _b64(hashlib.sha256(token.encode("ascii")).digest())


# --- nonces -----------------------------------------------------------------------------


def fresh_nonce() -> str:
    """A nonce for the `DPoP-Nonce` header: a random value signed with its time. Its
    characters (base64url and ':') are all within RFC 9449's NQCHAR."""

    return signing.TimestampSigner(salt=_NONCE_SALT).sign(secrets.token_urlsafe(12))


def _nonce_is_fresh(nonce: str) -> bool:
    try:
        signing.TimestampSigner(salt=_NONCE_SALT).unsign(nonce, max_age=settings.DPOP_NONCE_SECONDS)
    except signing.BadSignature:  # SignatureExpired is one too
        return False
    return True


def challenge_headers(rejected: TokenRejected | None = None) -> dict[str, str]:
    """The headers of a 401 (and the nonce for any answer): which scheme and algorithms
    are taken, what was wrong in the RFC's words only, and a fresh nonce."""

    headers = {"DPoP-Nonce": fresh_nonce()}
    if rejected is not None:
        algs = " ".join(sorted(PROOF_ALGORITHMS))
        challenge = f'DPoP algs="{algs}"'
        if rejected.reason_code != "no_token":  # RFC 6750 § 3.1: no error when no credentials came
            challenge += f', error="{rejected.error}"'
        headers["WWW-Authenticate"] = challenge
    return headers


# --- the access token -------------------------------------------------------------------


def _token_key(header: Mapping[str, Any]) -> jwt.PyJWK:
    for refresh in (False, True):  # an unknown kid gets one refetch (a key rotation)
        for jwk in provider.signing_keys(refresh=refresh):
            if isinstance(jwk, dict) and jwk.get("kid") == header.get("kid"):
                if jwk.get("alg", TOKEN_ALGORITHM) != TOKEN_ALGORITHM:
                    break
                try:
                    return jwt.PyJWK(jwk)
                except jwt.PyJWTError as exc:
                    raise TokenRejected(INVALID_TOKEN, "token_unknown_key") from exc
    raise TokenRejected(INVALID_TOKEN, "token_unknown_key")


def _verify_access_token(token: str) -> dict[str, Any]:
    if len(token) > MAX_TOKEN_LENGTH:
        raise TokenRejected(INVALID_TOKEN, "token_too_long")
    try:
        header = jwt.get_unverified_header(token)
    except jwt.InvalidTokenError as exc:
        raise TokenRejected(INVALID_TOKEN, "token_malformed") from exc
    # One algorithm: refuses `none` and an HS256 token "signed" with the public key.
    if header.get("alg") != TOKEN_ALGORITHM:
        raise TokenRejected(INVALID_TOKEN, "token_algorithm")
    if str(header.get("typ", "")).lower() not in ("at+jwt", "application/at+jwt"):
        raise TokenRejected(INVALID_TOKEN, "token_type")
    try:
        key = _token_key(header)
    except provider.ProviderUnavailable:
        raise  # the view answers 503: not the caller's fault
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=[TOKEN_ALGORITHM],
            audience=settings.API_AUDIENCE,
            issuer=settings.OIDC_ISSUER,
            leeway=settings.OIDC_CLOCK_LEEWAY_SECONDS,
            options={"require": ["exp", "iat", "iss", "aud", "client_id"]},
        )
    except jwt.ExpiredSignatureError as exc:
        raise TokenRejected(INVALID_TOKEN, "token_expired") from exc
    except jwt.InvalidAudienceError as exc:
        raise TokenRejected(INVALID_TOKEN, "token_audience") from exc
    except jwt.InvalidIssuerError as exc:
        raise TokenRejected(INVALID_TOKEN, "token_issuer") from exc
    except jwt.InvalidTokenError as exc:
        raise TokenRejected(INVALID_TOKEN, "token_invalid") from exc
    return claims


def _scopes(claims: Mapping[str, Any]) -> frozenset[str]:
    scope = claims.get("scope", "")
    if isinstance(scope, list):
        return frozenset(str(s) for s in scope)
    return frozenset(str(scope).split())


def _authorization_details(claims: Mapping[str, Any]) -> tuple[Mapping[str, Any], ...]:
    details = claims.get("authorization_details")
    if isinstance(details, dict):  # one object where an array is meant: read the same
        details = [details]
    if not isinstance(details, list):
        return ()
    return tuple(d for d in details if isinstance(d, dict))


# --- the proof --------------------------------------------------------------------------


def _normalised_url(url: str) -> tuple[str, str, str]:
    """Scheme and host compared case-insensitively, default ports dropped, the path exact
    (RFC 9449 § 4.3: without query and fragment)."""

    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    port = parts.port
    if port is not None and (scheme, port) not in (("http", 80), ("https", 443)):
        host = f"{host}:{port}"
    return scheme, host, parts.path or "/"


def _proof_claims(proof: str, *, jkt: str, client_id: str) -> dict[str, Any]:
    """The proof's claims, once its header names a public key bound to the token and its
    signature is that key's."""

    def rejected(reason: str) -> TokenRejected:
        return TokenRejected(INVALID_PROOF, reason, client_id=client_id)

    if len(proof) > MAX_TOKEN_LENGTH:
        raise rejected("dpop_too_long")
    try:
        header = jwt.get_unverified_header(proof)
    except jwt.InvalidTokenError as exc:
        raise rejected("dpop_malformed") from exc
    if str(header.get("typ", "")).lower() != "dpop+jwt":
        raise rejected("dpop_type")
    alg = header.get("alg")
    jwk = header.get("jwk")
    if alg not in PROOF_ALGORITHMS or not isinstance(jwk, dict) or _PRIVATE_JWK_MEMBERS & jwk.keys():
        raise rejected("dpop_key")
    try:
        if not secrets.compare_digest(jwk_thumbprint(jwk), jkt):
            raise rejected("dpop_key_not_bound")
        key = jwt.PyJWK(jwk, algorithm=alg)
        claims: dict[str, Any] = jwt.decode(
            proof,
            key,
            algorithms=[alg],
            options={"require": ["iat", "jti", "htm", "htu"], "verify_aud": False, "verify_iat": False},
        )
    except TokenRejected:
        raise
    except (jwt.PyJWTError, ValueError, TypeError) as exc:
        raise rejected("dpop_signature") from exc
    return claims


def _verify_proof(proof: str, *, token: str, method: str, url: str, jkt: str, client_id: str) -> None:
    def rejected(reason: str, error: str = INVALID_PROOF) -> TokenRejected:
        return TokenRejected(error, reason, client_id=client_id)

    claims = _proof_claims(proof, jkt=jkt, client_id=client_id)
    if claims.get("htm") != method:
        raise rejected("dpop_htm")
    htu = claims.get("htu")
    try:
        same_url = isinstance(htu, str) and _normalised_url(htu) == _normalised_url(url)
    except ValueError:  # a port out of range, a broken IPv6 literal
        same_url = False
    if not same_url:
        raise rejected("dpop_htu")
    ath = claims.get("ath")
    if not isinstance(ath, str) or not secrets.compare_digest(ath, access_token_hash(token)):
        raise rejected("dpop_ath")
    iat = claims.get("iat")
    now = time.time()
    leeway = settings.OIDC_CLOCK_LEEWAY_SECONDS
    # JSON as PyJWT reads it takes NaN and Infinity, which no comparison refuses.
    if not isinstance(iat, int | float) or isinstance(iat, bool) or not math.isfinite(iat):
        raise rejected("dpop_iat")
    if iat > now + leeway or iat < now - settings.DPOP_PROOF_SECONDS - leeway:
        raise rejected("dpop_iat")
    jti = claims.get("jti")
    if not isinstance(jti, str) or not 1 <= len(jti) <= MAX_JTI_LENGTH:
        raise rejected("dpop_jti")
    nonce = claims.get("nonce")
    if not isinstance(nonce, str) or not _nonce_is_fresh(nonce):
        raise rejected("dpop_nonce", USE_NONCE)
    # Last: only a proof that passed everything else uses up its jti.
    _use_once(jkt, jti, expires=iat + settings.DPOP_PROOF_SECONDS + 2 * leeway, client_id=client_id)


def _use_once(jkt: str, jti: str, *, expires: float, client_id: str) -> None:
    """Remember the proof's jti (with its key) until the proof could no longer be taken;
    refuse one seen before. The insert's own transaction commits at once (the portal never
    runs with ATOMIC_REQUESTS: the access log's guarantees rest on that too), so another instance sees it; a unique key
    decides a race between two."""

    proof_hash = hashlib.sha256(f"{jkt}|{jti}".encode()).hexdigest()
    now = timezone.now()
    try:
        with transaction.atomic():
            DpopProofUse.objects.create(
                proof_hash=proof_hash,
                expires_at=datetime.datetime.fromtimestamp(expires, tz=datetime.UTC),
            )
    except IntegrityError as exc:
        raise TokenRejected(INVALID_PROOF, "dpop_replayed", client_id=client_id) from exc
    # Now and then, the proofs no longer in their window go (a cheap indexed delete).
    if secrets.randbelow(100) == 0:
        DpopProofUse.objects.filter(expires_at__lt=now).delete()


# --- the one entry --------------------------------------------------------------------


def verify_dpop_request(*, authorization: str, dpop: str | None, method: str, url: str) -> VerifiedToken:
    """The call's token and proof, checked. `url` is the request's absolute URL; its query
    is not compared. Raises TokenRejected (and ProviderUnavailable when HelseID's keys
    cannot be read: not the caller's fault)."""

    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if not authorization:
        raise TokenRejected(INVALID_TOKEN, "no_token")
    if scheme.lower() != "dpop" or not token:
        # A DPoP-bound token sent as a bearer token is refused (RFC 9449 § 7.1).
        raise TokenRejected(INVALID_TOKEN, "not_dpop_scheme")
    claims = _verify_access_token(token)
    client_id = str(claims.get("client_id", ""))
    if client_id not in settings.EPJ_CLIENTS:
        raise TokenRejected(INVALID_TOKEN, "client_not_allowed")
    confirmation = claims.get("cnf")
    jkt = confirmation.get("jkt") if isinstance(confirmation, dict) else None
    if not isinstance(jkt, str) or not jkt:
        raise TokenRejected(INVALID_TOKEN, "token_not_bound", client_id=client_id)
    scopes = _scopes(claims)
    if settings.API_SCOPE not in scopes:
        raise TokenRejected(INSUFFICIENT_SCOPE, "token_scope", client_id=client_id)
    if not dpop:
        raise TokenRejected(INVALID_PROOF, "dpop_missing", client_id=client_id)
    _verify_proof(dpop, token=token, method=method, url=url, jkt=jkt, client_id=client_id)
    return VerifiedToken(
        client_id=client_id,
        jti=str(claims.get("jti", ""))[:MAX_JTI_LENGTH],
        scopes=scopes,
        jkt=jkt,
        claims=claims,
        authorization_details=_authorization_details(claims),
    )
