import datetime

import pytest

from pjd_portal.patients.national_id import InvalidNationalId, NationalIdKind, parse_national_id
from tests.builders import LIST_PATIENT_ID


@pytest.mark.parametrize("value", ["13116900216", "12119000465", "08077000292"])
def test_nhn_published_test_patients_are_valid_fodselsnummer(value):
    parsed = parse_national_id(value, allow_synthetic=False)
    assert parsed.kind is NationalIdKind.FODSELSNUMMER


def test_synthetic_number_needs_the_setting():
    parsed = parse_national_id(LIST_PATIENT_ID, allow_synthetic=True)
    assert parsed.kind is NationalIdKind.SYNTHETIC
    assert parsed.birth_date == datetime.date(1971, 4, 3)
    with pytest.raises(InvalidNationalId) as exc:
        parse_national_id(LIST_PATIENT_ID, allow_synthetic=False)
    assert exc.value.code == "synthetic_not_allowed"


def _with_check_digits(first9: str) -> str:
    from pjd_portal.patients.national_id import has_valid_check_digits

    for k in range(100):
        if has_valid_check_digits(f"{first9}{k:02d}"):
            return f"{first9}{k:02d}"
    raise AssertionError


def test_d_number_and_h_number():
    d = _with_check_digits("530170" + "123")  # day 13 + 40
    h = _with_check_digits("134170" + "123")  # month 1 + 40
    assert parse_national_id(d, allow_synthetic=False).kind is NationalIdKind.D_NUMMER
    assert parse_national_id(h, allow_synthetic=False).kind is NationalIdKind.H_NUMMER


@pytest.mark.parametrize(
    ("value", "code"),
    [
        ("", "format"),
        ("1311690021", "format"),
        ("131169002166", "format"),
        ("1311690021x", "format"),
        ("13116900217", "checksum"),
        ("00000000000", "date"),
    ],
)
def test_invalid_numbers(value, code):
    with pytest.raises(InvalidNationalId) as exc:
        parse_national_id(value, allow_synthetic=True)
    assert exc.value.code == code


@pytest.mark.parametrize(
    ("first9", "kind", "birth"),
    [
        ("131169" + "002", NationalIdKind.FODSELSNUMMER, datetime.date(1969, 11, 13)),  # 000-499: 1900s
        ("010160" + "600", NationalIdKind.FODSELSNUMMER, datetime.date(1860, 1, 1)),  # 500-749, 54-99: 1800s
        ("010110" + "600", NationalIdKind.FODSELSNUMMER, datetime.date(2010, 1, 1)),  # 500-999, 00-39: 2000s
        ("010145" + "950", NationalIdKind.FODSELSNUMMER, datetime.date(1945, 1, 1)),  # 900-999, 40-99: 1900s
        ("530170" + "123", NationalIdKind.D_NUMMER, datetime.date(1970, 1, 13)),  # day + 40
        ("134170" + "123", NationalIdKind.H_NUMMER, datetime.date(1970, 1, 13)),  # month + 40
        ("138170" + "123", NationalIdKind.SYNTHETIC, datetime.date(1970, 1, 13)),  # month + 80
        ("538170" + "123", NationalIdKind.SYNTHETIC, datetime.date(1970, 1, 13)),  # synthetic D-number
    ],
)
def test_kinds_and_birth_dates_follow_stdnum_and_the_synthetic_convention(first9, kind, birth):
    parsed = parse_national_id(_with_check_digits(first9), allow_synthetic=True)
    assert (parsed.kind, parsed.birth_date) == (kind, birth)


@pytest.mark.parametrize(
    "first9",
    [
        "010145" + "600",  # 500-749 with 40-53: no century is defined for it
        "311169" + "100",  # 31 November
        "010139" + "600",  # born in 2039: not yet
        "818170" + "123",  # day 81: an FH-number, no birth date by design
        "139970" + "123",  # synthetic month 19
    ],
)
def test_numbers_without_a_valid_birth_date_are_refused(first9):
    with pytest.raises(InvalidNationalId) as exc:
        parse_national_id(_with_check_digits(first9), allow_synthetic=True)
    assert exc.value.code == "date"
