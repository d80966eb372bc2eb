"""The one lookup (issue 12, item 7): the national-id rules (python-stdnum and the project's
synthetic convention), the NationalIdField every form uses, `find_patient`, the pages that
share them, and the one handle mechanism for the clinician and the privacy officer."""

from __future__ import annotations

import datetime
import uuid

import pytest
from django.utils import timezone
from stdnum.no import fodselsnummer

from pjd_portal.access.models import LookupPurpose, PatientLookup
from pjd_portal.accounts.sessions import SESSION_LOGIN_KEY_KEY
from pjd_portal.auditlog.events import Outcome
from pjd_portal.auditlog.models import AccessEvent
from pjd_portal.forvaltning.forms import PatientLogForm
from pjd_portal.forvaltning.logreview import LogSearchForm
from pjd_portal.forvaltning.privacy_forms import PrivacyLookupForm
from pjd_portal.patients.forms import NationalIdField, PatientLookupForm, entered_national_id
from pjd_portal.patients.lookup import find_patient, read_national_id
from pjd_portal.patients.national_id import (
    InvalidNationalId,
    NationalIdKind,
    has_valid_check_digits,
    parse_national_id,
)
from tests.builders import LIST_PATIENT_ID, UNKNOWN_PATIENT_ID, comparable


def with_check_digits(first9: str) -> str:
    for k in range(100):
        if has_valid_check_digits(f"{first9}{k:02d}"):
            return f"{first9}{k:02d}"
    raise AssertionError(first9)


FNR = "13116900216"  # NHN's published test patient
D_NUMBER = with_check_digits("530170123")  # day 13 + 40
H_NUMBER = with_check_digits("134170123")  # month 1 + 40
SYNTHETIC = LIST_PATIENT_ID  # month + 80 (Tenor)
BAD_CHECKSUM = FNR[:-1] + str((int(FNR[-1]) + 1) % 10)
BAD_DATE = with_check_digits("311169100")  # 31 November

# (case, input, allow synthetic ids, the kind or the refusal's code)
CASES = [
    ("fodselsnummer", FNR, False, NationalIdKind.FODSELSNUMMER),
    ("fodselsnummer with spaces", "131169 002 16", False, NationalIdKind.FODSELSNUMMER),
    ("D-number", D_NUMBER, False, NationalIdKind.D_NUMMER),
    ("H-number", H_NUMBER, False, NationalIdKind.H_NUMMER),
    ("synthetic, allowed", SYNTHETIC, True, NationalIdKind.SYNTHETIC),
    ("synthetic, not allowed", SYNTHETIC, False, "synthetic_not_allowed"),
    ("bad checksum", BAD_CHECKSUM, True, "checksum"),
    ("bad date", BAD_DATE, True, "date"),
    ("too short", FNR[:-1], True, "format"),
    ("too long", FNR + "1", True, "format"),
    ("not digits", FNR[:-1] + "x", True, "format"),
]


@pytest.mark.parametrize(("value", "allow", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_the_parser_per_case(value, allow, expected):
    if isinstance(expected, NationalIdKind):
        parsed = parse_national_id(value, allow_synthetic=allow)
        assert parsed.kind is expected
        assert parsed.value == "".join(value.split())
    else:
        with pytest.raises(InvalidNationalId) as exc:
            parse_national_id(value, allow_synthetic=allow)
        assert exc.value.code == expected


@pytest.mark.parametrize(
    ("value", "stdnum_says"),
    [
        (FNR, True),
        (D_NUMBER, True),
        (H_NUMBER, True),
        (SYNTHETIC, False),
        (BAD_CHECKSUM, False),
        (BAD_DATE, False),
    ],
)
def test_stdnum_decides_fnr_d_and_h_numbers_and_lacks_only_the_synthetic_convention(value, stdnum_says):
    # Why national_id.py has project code at all: stdnum 2.2 refuses Tenor's month + 80.
    assert fodselsnummer.is_valid(value) is stdnum_says


@pytest.mark.parametrize(("value", "allow", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_the_field_per_case_follows_the_setting(settings, value, allow, expected):
    settings.ALLOW_SYNTHETIC_IDS = allow
    form = PatientLookupForm({"national_id": value})
    if isinstance(expected, NationalIdKind):
        assert form.is_valid(), form.errors
        assert form.cleaned_data["national_id"].kind is expected
        assert entered_national_id(form) == form.cleaned_data["national_id"]
    else:
        assert not form.is_valid()
        assert [e.code for e in form.errors.as_data()["national_id"]] == [expected]
        entered = entered_national_id(form)
        assert isinstance(entered, InvalidNationalId)
        assert entered.code == expected


def test_the_setting_is_read_by_the_one_parser(settings):
    settings.ALLOW_SYNTHETIC_IDS = False
    assert isinstance(read_national_id(SYNTHETIC), InvalidNationalId)
    settings.ALLOW_SYNTHETIC_IDS = True
    parsed = read_national_id(SYNTHETIC)
    assert not isinstance(parsed, InvalidNationalId)
    assert parsed.kind is NationalIdKind.SYNTHETIC


def test_empty_and_overlong_input_are_djangos_own_errors_and_nothing_to_log():
    for data in ({"national_id": ""}, {"national_id": "1" * 21}):
        form = PatientLookupForm(data)
        assert not form.is_valid()
        assert entered_national_id(form) is None
    optional = NationalIdField(required=False)
    assert optional.clean("   ") is None


@pytest.mark.parametrize("form_class", [PatientLookupForm, PrivacyLookupForm, PatientLogForm, LogSearchForm])
def test_every_form_that_takes_a_national_id_uses_the_one_field(form_class):
    assert isinstance(form_class.base_fields["national_id"], NationalIdField)


def test_find_patient_is_the_one_query(world):
    found = find_patient(read_national_id(LIST_PATIENT_ID))
    assert (found.outcome, found.patient, found.reason_code) == (Outcome.GRANTED, world.patient, "")
    assert found.event_fields()["patient_national_id"] == ""  # the patient row names the number

    missing = find_patient(read_national_id(UNKNOWN_PATIENT_ID))
    assert (missing.outcome, missing.patient, missing.reason_code) == (
        Outcome.NOT_FOUND,
        None,
        "no_such_patient",
    )
    assert missing.event_fields()["patient_national_id"] == UNKNOWN_PATIENT_ID

    invalid = find_patient(read_national_id(BAD_CHECKSUM))
    assert (invalid.outcome, invalid.reason_code) == (Outcome.INVALID, "invalid_checksum")
    assert invalid.event_fields()["patient_national_id"] == ""  # a mistyped real id is not kept


# The pages that take a national id in a form: persona, URL, the event they write.
PAGES = [
    ("fastlege", "/pasient/sok/", "patient_lookup", {}),
    ("privacy_officer", "/forvaltning/personvern/", "patient_lookup", {"channel": "privacy_officer"}),
    ("privacy_officer", "/forvaltning/innsyn/", "patient_log_read", {"log_read": "privacy_officer"}),
    ("auditor", "/forvaltning/loggkontroll/", "log_search", {}),
]


@pytest.mark.parametrize(("persona", "url", "event_type", "details"), PAGES)
def test_every_page_gives_the_one_message_and_logs_the_code_not_the_number(
    world, persona_client, persona, url, event_type, details
):
    client = persona_client(persona)
    before = AccessEvent.objects.count()
    response = client.post(url, {"national_id": BAD_CHECKSUM})
    assert response.status_code == 400
    assert "kontrollsiffer" in response.content.decode()  # NATIONAL_ID_MESSAGES["checksum"], in Norwegian
    assert "Location" not in response
    event = AccessEvent.objects.order_by("-id").first()
    assert event is not None
    assert AccessEvent.objects.count() == before + 1
    assert (event.event_type, event.outcome, event.reason_code) == (event_type, "invalid", "invalid_checksum")
    assert event.patient_national_id == ""
    assert BAD_CHECKSUM not in str(event.details)
    assert details.items() <= event.details.items()
    assert not PatientLookup.objects.exists()


# --- one handle mechanism -----------------------------------------------------------------


def _lookup_for(user, organisation, patient, purpose, minutes=30, client=None):
    """A lookup row as a lookup in `client`'s login would make it (its login key)."""
    now = timezone.now()
    return PatientLookup.objects.create(
        login_key=client.session.get(SESSION_LOGIN_KEY_KEY, "") if client is not None else "",
        user=user,
        organisation=organisation,
        patient=patient,
        purpose=purpose,
        created_at=now,
        expires_at=now + datetime.timedelta(minutes=minutes),
    )


def test_both_lookups_make_the_same_kind_of_handle(world, as_fastlege, as_privacy_officer):
    as_fastlege.post("/pasient/sok/", {"national_id": LIST_PATIENT_ID})
    as_privacy_officer.post("/forvaltning/personvern/", {"national_id": LIST_PATIENT_ID})
    clinical = PatientLookup.objects.get(purpose=LookupPurpose.CLINICAL)
    privacy = PatientLookup.objects.get(purpose=LookupPurpose.PRIVACY_OFFICER)
    assert (clinical.user, clinical.organisation) == (world.fastlege, world.gp_office)
    assert (privacy.user, privacy.organisation) == (world.privacy_officer, world.forvaltning)
    assert 59 <= (privacy.expires_at - privacy.created_at).total_seconds() / 60 <= 60
    # The privacy officer's lookup event keeps its shape: the channel, no handle.
    event = AccessEvent.objects.filter(event_type="patient_lookup", outcome="granted").order_by("-id")[0]
    assert event.details == {"channel": "privacy_officer"}


def test_a_privacy_handle_does_not_open_the_clinicians_pages(world, as_fastlege):
    # The clinician's own user and organisation, but the other purpose.
    lookup = _lookup_for(world.fastlege, world.gp_office, world.patient, LookupPurpose.PRIVACY_OFFICER)
    missing = as_fastlege.get(f"/pasient/{uuid.uuid4()}/grunnlag/")
    response = as_fastlege.get(f"/pasient/{lookup.handle}/grunnlag/")
    assert response.status_code == 404
    assert comparable(response) == comparable(missing)
    event = AccessEvent.objects.order_by("-id")[0]
    assert (event.event_type, event.reason_code) == ("access_denied", "unknown_handle")
    assert event.details == {"handle": str(lookup.handle)}


def test_a_clinical_handle_does_not_open_the_privacy_officers_pages(world, as_privacy_officer):
    lookup = _lookup_for(world.privacy_officer, world.forvaltning, world.patient, LookupPurpose.CLINICAL)
    missing = as_privacy_officer.get("/forvaltning/finnes-ikke/")
    response = as_privacy_officer.get(f"/forvaltning/personvern/{lookup.handle}/")
    assert response.status_code == 404
    assert comparable(response) == comparable(missing)
    event = AccessEvent.objects.order_by("-id")[0]
    assert (event.event_type, event.reason_code) == ("access_denied", "unknown_handle")
    assert event.details == {"handle": str(lookup.handle), "channel": "privacy_officer"}


def test_a_privacy_handle_is_bound_to_the_organisation_acted_for(world, as_privacy_officer):
    lookup = _lookup_for(world.privacy_officer, world.gp_office, world.patient, LookupPurpose.PRIVACY_OFFICER)
    assert as_privacy_officer.get(f"/forvaltning/personvern/{lookup.handle}/").status_code == 404
    lookup = _lookup_for(
        world.privacy_officer,
        world.forvaltning,
        world.patient,
        LookupPurpose.PRIVACY_OFFICER,
        client=as_privacy_officer,
    )
    assert as_privacy_officer.get(f"/forvaltning/personvern/{lookup.handle}/").status_code == 200
