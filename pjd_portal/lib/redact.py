"""Take national ids out of text that is going into a log line.

A text from outside the portal (a source's OperationOutcome, say) may echo the request it
refuses, and that request carries the patient's national id; the application log must
never hold one.
"""

from __future__ import annotations

import re

# Eleven digits on their own, also written 6 + 5 with a space (131169 00216): fødselsnummer,
# D- and H-numbers and synthetic ones alike. Longer digit runs are left as they are.
_NATIONAL_ID = re.compile(r"(?<!\d)\d{6}[ \u00a0]?\d{5}(?!\d)")
REDACTED = "[fnr fjernet]"


def redact_national_ids(text: str) -> str:
    return _NATIONAL_ID.sub(REDACTED, text)
