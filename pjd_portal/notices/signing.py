"""How a notice is signed for the citizen portal: HMAC-SHA256 over the timestamp and the body.

    X-PJD-Timestamp: <unix seconds when this attempt was sent>
    X-PJD-Signature: sha256=<hex HMAC-SHA256(PJD_PATIENT_NOTICE_KEY, "<timestamp>." + body)>

The receiver recomputes the HMAC over the exact bytes it received, compares in constant time,
and refuses a timestamp more than `MAX_SKEW_SECONDS` from its clock (a replay outside that
window). Inside the window a repeat carries a notice id the receiver has already seen: a
notice is delivered at least once, and the citizen portal keeps each id once.
See docs/operations.md#patient-notices for why HMAC and not a JWS.
"""

from __future__ import annotations

import hashlib
import hmac

TIMESTAMP_HEADER = "X-PJD-Timestamp"
SIGNATURE_HEADER = "X-PJD-Signature"
MAX_SKEW_SECONDS = 300


def signature(key: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(key.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def signed_headers(key: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: signature(key, timestamp, body),
    }


def verify(key: str, headers: dict[str, str], body: bytes, *, now: int) -> bool:
    """The receiver's check (the dev stub has its own copy, so a fault here is caught)."""

    try:
        timestamp = int(headers.get(TIMESTAMP_HEADER, ""))
    except ValueError:
        return False
    if abs(now - timestamp) > MAX_SKEW_SECONDS:
        return False
    return hmac.compare_digest(signature(key, timestamp, body), headers.get(SIGNATURE_HEADER, ""))
