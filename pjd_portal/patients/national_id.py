"""Norwegian national ids: fødselsnummer, D-nummer, H-nummer and synthetic test numbers.

python-stdnum (`stdnum.no.fodselsnummer`, as of 2.2) decides for the kinds it knows: the
check digits, the D-number's day + 40, the H-number's month + 40, the century from the
individual number, no birth date in the future, and FH-numbers (day 80 and up, no birth
date) refused. The project's own rule is only the synthetic
convention stdnum lacks (Skatteetaten's Tenor test numbers: month + 80): their check digits
are computed over the number as written (stdnum's own check-digit functions), and the
birth date is stdnum's with the month moved back.
"""

from __future__ import annotations

import datetime
import enum
from dataclasses import dataclass

from stdnum.exceptions import InvalidChecksum as StdnumInvalidChecksum
from stdnum.exceptions import ValidationError as StdnumValidationError
from stdnum.no import fodselsnummer


class NationalIdKind(enum.StrEnum):
    FODSELSNUMMER = "fnr"
    D_NUMMER = "dnr"
    H_NUMMER = "hnr"
    SYNTHETIC = "synthetic"


class InvalidNationalId(ValueError):
    """The input is not a valid national id. `code` says why, for the audit trail."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


@dataclass(frozen=True)
class NationalId:
    value: str
    kind: NationalIdKind
    birth_date: datetime.date | None

    def __str__(self) -> str:  # never log this; it is here for forms and the DB only
        return self.value


SYNTHETIC_MONTH_OFFSET = 80  # Tenor: the month + 80


def display_form(value: str) -> str:
    """The number as a clinician reads it aloud and checks it: birth date, a space, the
    personal number (`131169 00216`). For pages only, never for a URL or a log line."""

    return f"{value[:6]} {value[6:]}" if len(value) == 11 else value


def has_valid_check_digits(value: str) -> bool:
    """Both mod-11 check digits match (any kind: they are computed over the number as
    written, the synthetic month included)."""

    if len(value) != 11 or not (value.isascii() and value.isdigit()):
        return False
    return (
        fodselsnummer.calc_check_digit1(value[:9]) == value[9]
        and fodselsnummer.calc_check_digit2(value[:10]) == value[10]
    )


def parse_national_id(raw: str, *, allow_synthetic: bool) -> NationalId:
    """Parse and validate user input. Raises InvalidNationalId with a reason code."""

    value = "".join(raw.split())
    if len(value) != 11 or not (value.isascii() and value.isdigit()):  # no "²" or "٣"
        raise InvalidNationalId("format")
    if not has_valid_check_digits(value):
        raise InvalidNationalId("checksum")
    day, month = int(value[0:2]), int(value[2:4])
    if month > SYNTHETIC_MONTH_OFFSET:
        if not allow_synthetic:
            raise InvalidNationalId("synthetic_not_allowed")
        kind = NationalIdKind.SYNTHETIC
        # stdnum reads the birth date once the month is moved back (its check digits
        # would then no longer match, so only the date is asked of it).
        as_fnr = f"{value[:2]}{month - SYNTHETIC_MONTH_OFFSET:02d}{value[4:]}"
        try:
            birth = fodselsnummer.get_birth_date(as_fnr)
        except StdnumValidationError as exc:
            raise InvalidNationalId("date") from exc
        return NationalId(value=value, kind=kind, birth_date=birth)
    try:
        fodselsnummer.validate(value)
    except StdnumInvalidChecksum as exc:
        raise InvalidNationalId("checksum") from exc
    except StdnumValidationError as exc:  # no such date, an unknown century, not yet born
        raise InvalidNationalId("date") from exc
    if month > 40:
        kind = NationalIdKind.H_NUMMER
    elif day > 40:
        kind = NationalIdKind.D_NUMMER
    else:
        kind = NationalIdKind.FODSELSNUMMER
    return NationalId(value=value, kind=kind, birth_date=fodselsnummer.get_birth_date(value))
