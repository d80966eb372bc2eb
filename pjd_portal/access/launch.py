"""One-time launch codes: an EPJ's attest, waiting for its browser (docs/epj.md, "The launch").

`POST /api/launch` stores the attest under a random code and the EPJ's code challenge
(S256, as PKCE); the browser brings the code and the verifier to `/start/` in a form POST.
The code is spent by its first redemption, right or wrong: an UPDATE that sets `used_at`
where it is still empty, so two instances given the same code cannot both open it.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.utils import timezone

from pjd_portal.access.models import EpjLaunch

# The launch this browser redeemed, kept in its session across the HelseID round trip.
SESSION_LAUNCH_KEY = "pjd_epj_launch"
CHALLENGE = re.compile(r"^[A-Za-z0-9_-]{43}$")  # base64url of a SHA-256, unpadded
VERIFIER = re.compile(r"^[A-Za-z0-9._~-]{43,128}$")  # RFC 7636 § 4.1
CODE = re.compile(r"^[A-Za-z0-9_-]{43}$")
# How long after its redemption a launch may still be finished: the HelseID round trip.
FINISH_WITHIN = datetime.timedelta(minutes=10)


@dataclass(frozen=True)
class IssuedCode:
    code: str
    expires_in: int


def _hash(code: str) -> str:
    return hashlib.sha256(code.encode("ascii")).hexdigest()


def challenge_of(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode("ascii")).digest()).rstrip(b"=").decode()


def issue_launch_code(
    *, client_id: str, token_jti: str, attest: Sequence[Mapping[str, Any]], challenge: str
) -> IssuedCode:
    """A new code for this attest. The caller has checked the challenge (CHALLENGE)."""

    code = secrets.token_urlsafe(32)  # 43 characters, 256 bits
    now = timezone.now()
    seconds = settings.EPJ_LAUNCH_CODE_SECONDS
    # A launch holds the patient's national id: once it can neither be redeemed nor
    # finished it is gone (the access log keeps what happened), not kept for years.
    EpjLaunch.objects.filter(expires_at__lt=now - FINISH_WITHIN).delete()
    EpjLaunch.objects.create(
        code_hash=_hash(code),
        code_challenge=challenge,
        client_id=client_id,
        token_jti=token_jti,
        attest=[dict(d) for d in attest],
        created_at=now,
        expires_at=now + datetime.timedelta(seconds=seconds),
    )
    return IssuedCode(code, seconds)


@dataclass(frozen=True)
class Redemption:
    launch: EpjLaunch | None
    reason_code: str = ""  # why not, when there is no launch


def redeem_launch_code(*, code: str, verifier: str) -> Redemption:
    """The launch behind this code, spent now; or why not (unknown, used, expired, wrong
    verifier). A wrong verifier spends the code too: one guess per code."""

    if not CODE.match(code):
        return Redemption(None, "launch_code_unknown")
    now = timezone.now()
    digest = _hash(code)
    spent = EpjLaunch.objects.filter(code_hash=digest, used_at__isnull=True).update(used_at=now)
    launch = EpjLaunch.objects.filter(code_hash=digest).first()
    if launch is None:
        return Redemption(None, "launch_code_unknown")
    if not spent:
        return Redemption(None, "launch_code_used")
    if launch.expires_at <= now:
        return Redemption(None, "launch_code_expired")
    if not VERIFIER.match(verifier) or not secrets.compare_digest(
        challenge_of(verifier), launch.code_challenge
    ):
        return Redemption(None, "launch_verifier_mismatch")
    return Redemption(launch)


def finish_launch(launch_id: int) -> EpjLaunch | None:
    """A launch this browser redeemed a moment ago (its id kept in the session across the
    HelseID round trip), claimed now for its one visit: like the redemption, an UPDATE
    where it is still unfinished, so that two requests carrying the same session (a
    double click, a copied cookie) cannot both open it."""

    now = timezone.now()
    claimed = EpjLaunch.objects.filter(
        pk=launch_id, used_at__gte=now - FINISH_WITHIN, finished_at__isnull=True
    ).update(finished_at=now)
    return EpjLaunch.objects.filter(pk=launch_id).first() if claimed else None
