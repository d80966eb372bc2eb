"""Norwegian national ids: fødselsnummer, D-nummer, H-nummer and synthetic test numbers.

Check digits are validated by python-stdnum. Synthetic numbers (Skatteetaten Tenor:
month + 80) and H-numbers (month + 40) are not known to stdnum, so the month is moved
back before the check; the check digits are computed over the number as written, so
they are verified by our own mod-11 routine in that case.
"""

from __future__ import annotations

import datetime
import enum
from dataclasses import dataclass

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


_W1 = (3, 7, 6, 1, 8, 9, 4, 5, 2)
_W2 = (5, 4, 3, 2, 7, 6, 5, 4, 3, 2)


def _check_digit(digits: str, weights: tuple[int, ...]) -> int | None:
    rest = 11 - sum(w * int(d) for w, d in zip(weights, digits, strict=True)) % 11
    if rest == 11:
        return 0
    if rest == 10:
        return None
    return rest


def has_valid_check_digits(value: str) -> bool:
    if len(value) != 11 or not (value.isascii() and value.isdigit()):
        return False
    k1 = _check_digit(value[:9], _W1)
    if k1 is None or k1 != int(value[9]):
        return False
    k2 = _check_digit(value[:10], _W2)
    return k2 is not None and k2 == int(value[10])


def _birth_date(day: int, month: int, yy: int, individual: int) -> datetime.date | None:
    # Century from the individual number, as Skatteetaten defines it.
    if individual <= 499:
        century = 1900
    elif individual <= 749 and yy >= 54:
        century = 1800
    elif individual <= 999 and yy <= 39:
        century = 2000
    elif 900 <= individual <= 999 and yy >= 40:
        century = 1900
    else:
        century = 1900
    try:
        return datetime.date(century + yy, month, day)
    except ValueError:
        return None


def parse_national_id(raw: str, *, allow_synthetic: bool) -> NationalId:
    """Parse and validate user input. Raises InvalidNationalId with a reason code."""

    value = "".join(raw.split())
    if len(value) != 11 or not (value.isascii() and value.isdigit()):  # no "²" or "٣"
        raise InvalidNationalId("format")
    if not has_valid_check_digits(value):
        raise InvalidNationalId("checksum")
    day, month, yy = int(value[0:2]), int(value[2:4]), int(value[4:6])
    individual = int(value[6:9])
    kind = NationalIdKind.FODSELSNUMMER
    if month > 80:
        if not allow_synthetic:
            raise InvalidNationalId("synthetic_not_allowed")
        kind, month = NationalIdKind.SYNTHETIC, month - 80
    elif month > 40:
        kind, month = NationalIdKind.H_NUMMER, month - 40
    if day > 40:
        if kind is NationalIdKind.FODSELSNUMMER:
            kind = NationalIdKind.D_NUMMER
        day -= 40
    birth = _birth_date(day, month, yy, individual)
    if birth is None:
        raise InvalidNationalId("date")
    if kind in (NationalIdKind.FODSELSNUMMER, NationalIdKind.D_NUMMER):
        # Cross-check with the maintained library for the number kinds it knows.
        try:
            fodselsnummer.validate(value)
        except StdnumValidationError as exc:
            raise InvalidNationalId("checksum") from exc
    return NationalId(value=value, kind=kind, birth_date=birth)
