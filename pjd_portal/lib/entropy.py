"""How much guessing a secret would take, estimated from the secret itself.

Length alone lets `"a" * 50` through. The estimate here is the lesser of two:

- Shannon: the secret's own character distribution, in bits per character, times its
  length (`"a" * 50` is 0 bits, `"ab" * 25` is 50);
- compressed: what zlib at level 9 needs for it beyond an empty input, in bits (a pattern
  repeated is stored once: `"abcdefghij" * 5` is about 100 bits, though its Shannon figure
  is 166).

A secret that is one shorter run repeated (any period up to half its length) is refused
outright, since zlib on short input does not always see it. Random keys from the usual
tools come out far above the threshold (docs/operations.md: a 50-character Django
`get_random_secret_key()` about 230 bits, `openssl rand -hex 32` about 245).
"""

from __future__ import annotations

import math
import zlib
from collections import Counter

# The least a production secret (SECRET_KEY, PJD_AUDIT_ANCHOR_KEY) may have, estimated as
# above: 128 bits, the strength of the HMAC-SHA256 and signing uses they serve, at least.
MIN_SECRET_BITS = 128

_EMPTY_COMPRESSED = len(zlib.compress(b"", 9))


def shannon_bits(secret: str) -> float:
    if not secret:
        return 0.0
    length = len(secret)
    per_char = -sum(n / length * math.log2(n / length) for n in Counter(secret).values())
    return per_char * length


def compressed_bits(secret: str) -> int:
    return 8 * max(0, len(zlib.compress(secret.encode(), 9)) - _EMPTY_COMPRESSED)


def is_repeated(secret: str) -> bool:
    """Is the secret a shorter run written out twice or more ("abc" * 17, "xy" * 25)?"""

    return len(secret) > 1 and secret in (secret + secret)[1:-1]


def estimated_bits(secret: str) -> float:
    if is_repeated(secret):
        return 0.0
    return min(shannon_bits(secret), float(compressed_bits(secret)))


def strong_enough(secret: str, minimum_bits: int = MIN_SECRET_BITS) -> bool:
    return estimated_bits(secret) >= minimum_bits
