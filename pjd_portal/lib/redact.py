"""Take national ids out of text that is going into a log line.

A text from outside the portal (a source's OperationOutcome, say) may echo the request it
refuses, and that request carries the patient's national id; the application log must
never hold one.
"""

from __future__ import annotations

import re

# Eleven or more digits in a row, also with single separators between them (131169 00216,
# 131169-00216, 131169%2000216, 1311 6900 216), and also run together with other digits
# (an OID and a value, urn:oid:...4.1.4.113116900216): fødselsnummer, D- and H-numbers and
# synthetic ones alike. This takes out some numbers that are none (long order numbers):
# for a log line that is the right side to err on.
_SEPARATOR = r"(?:[ \u00a0+.\-/]|%20|%2[bB]|%2[dD])"
_NATIONAL_ID = re.compile(rf"\d(?:{_SEPARATOR}?\d){{10,}}")
REDACTED = "[fnr fjernet]"


def redact_national_ids(text: str) -> str:
    return _NATIONAL_ID.sub(REDACTED, text)
