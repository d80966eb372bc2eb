"""The consultation path before any document: the patient card after the lookup, the status
pre-check in words, refusals as pages of their own, the bases explained with a default, a
basis still in force reused, and the banner that stays (issue 13, items 1 to 3)."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from django.utils import timezone

from pjd_portal.access.models import AccessAttest
from pjd_portal.patients.models import PrivacyChoice, PrivacyChoiceKind
from tests.builders import LIST_PATIENT_ID, OTHER_PATIENT_ID, events, look_up_patient, lookup_and_attest

pytestmark = pytest.mark.django_db


def _display(national_id: str) -> str:
    return f"{national_id[:6]} {national_id[6:]}"


def _card(client: Client, national_id: str) -> tuple[str, str]:
    """Look the patient up; the lookup's answer, followed: (the handle, the page)."""

    response = client.post("/pasient/sok/", {"national_id": national_id})
    assert response.status_code == 302
    assert national_id not in response["Location"]
    handle = response["Location"].split("/")[2]
    page = client.get(response["Location"])
    assert page.status_code == 200
    assert page["Cache-Control"].count("no-store") == 1
    return handle, page.content.decode()


def _offered(page: str) -> list[str]:
    return re.findall(r'data-testid="basis-option-(\w+)"', page)


def _checked(page: str) -> list[str]:
    return re.findall(r'value="(\w+)"[^>]*checked[^>]*data-testid="basis-option-', page)


def test_the_lookup_answers_with_the_patient_card_before_any_basis(as_fastlege, world):
    handle, page = _card(as_fastlege, LIST_PATIENT_ID)
    assert 'data-testid="patient-name">Ingrid Testesen<' in page
    assert f'data-testid="patient-national-id">{_display(LIST_PATIENT_ID)}<' in page
    age = world.patient.age_on(timezone.localdate())
    assert f"{age} år" in page and "Kvinne" in page
    assert 'data-testid="patient-fastlege">Deg (listepasient)<' in page
    assert 'data-status="available"' in page
    # Nothing is stated yet: no attest, and the card itself is not a document access.
    assert not AccessAttest.objects.exists()
    assert [e.event_type for e in events()] == ["patient_lookup"]
    # The bases this fastlege may use for an own list patient, each explained, UNNTAK the default.
    assert _offered(page) == ["UNNTAK", "SAMTYKKE", "AKUTT"]
    assert _checked(page) == ["UNNTAK"]
    assert "kjernejournalforskriften" in page and "helsepersonelloven § 7" in page
    assert page.count('class="ds-paragraph portal-muted" data-size="sm" id="basis-explanation-') == 3


def test_no_exception_from_consent_is_offered_for_someone_elses_patient(as_fastlege, world):
    _, page = _card(as_fastlege, OTHER_PATIENT_ID)
    assert _offered(page) == ["SAMTYKKE", "AKUTT"]
    assert _checked(page) == []  # no default: consent or emergency is the clinician's call
    assert 'data-testid="patient-fastlege"' not in page  # this patient has none


def test_the_emergency_chain_has_unntak_as_its_default(persona_client, world):
    _, page = _card(persona_client("other_clinician"), OTHER_PATIENT_ID)
    assert _offered(page) == ["UNNTAK", "SAMTYKKE", "AKUTT"]
    assert _checked(page) == ["UNNTAK"]


@pytest.mark.parametrize(
    ("kind", "hpr", "reason_code", "words"),
    [
        (PrivacyChoiceKind.RESERVATION, "", "patient_reserved", "reservert seg"),
        (PrivacyChoiceKind.BLOCKED_CLINICIAN, "910000011", "clinician_blocked", "blokkert"),
    ],
)
def test_a_refusal_is_a_page_of_its_own_before_any_basis(as_fastlege, world, kind, hpr, reason_code, words):
    PrivacyChoice.objects.create(patient=world.patient, kind=kind, blocked_hpr_number=hpr)
    handle, page = _card(as_fastlege, LIST_PATIENT_ID)
    assert f'data-testid="access-refused" data-reason="{reason_code}"' in page
    assert words in page
    assert 'data-testid="basis-form"' not in page and 'data-testid="basis-submit"' not in page
    assert 'data-testid="new-patient">Søk opp ny pasient<' in page
    # Who the patient is stays hidden; the number typed is shown back, to check it.
    assert "Ingrid" not in page and 'data-testid="patient-hidden"' in page
    assert _display(LIST_PATIENT_ID) in page
    assert events("access_denied")[-1].reason_code == reason_code
    # A basis posted anyway is refused the same way and stores nothing.
    response = as_fastlege.post(f"/pasient/{handle}/grunnlag/", {"basis": "AKUTT", "reason": "x" * 40})
    assert f'data-reason="{reason_code}"' in response.content.decode()
    assert not AccessAttest.objects.exists()


def test_a_basis_still_in_force_is_reused_for_the_same_patient(as_fastlege, world):
    lookup_and_attest(as_fastlege)
    response = as_fastlege.post("/pasient/sok/", {"national_id": LIST_PATIENT_ID})
    handle = response["Location"].split("/")[2]
    # The card sees the live basis and goes straight on to the list.
    response = as_fastlege.get(response["Location"])
    assert response["Location"] == f"/pasient/{handle}/"
    page = as_fastlege.get(f"/pasient/{handle}/").content.decode()
    assert 'data-testid="document-list"' in page and 'data-testid="attest-basis"' in page
    assert AccessAttest.objects.count() == 1
    assert len(events("patient_lookup")) == 2 and len(events("basis_stated")) == 1
    assert events("document_list")[-1].attest_id == AccessAttest.objects.get().pk


def test_a_basis_is_not_reused_by_another_clinician_or_after_it_lapsed(as_fastlege, persona_client, world):
    lookup_and_attest(as_fastlege)
    _, page = _card(persona_client("other_clinician"), LIST_PATIENT_ID)
    assert 'data-testid="basis-form"' in page  # the legevakt doctor states their own
    AccessAttest.objects.update(expires_at=timezone.now())
    _, page = _card(as_fastlege, LIST_PATIENT_ID)
    assert 'data-testid="basis-form"' in page


def test_the_banner_stays_on_every_page_with_patient_data(as_fastlege, world):
    handle, card = _card(as_fastlege, LIST_PATIENT_ID)
    as_fastlege.post(f"/pasient/{handle}/grunnlag/", {"basis": "UNNTAK"})
    listing = as_fastlege.get(f"/pasient/{handle}/").content.decode()
    for page in (card, listing):
        assert 'data-testid="patient-banner"' in page
        assert _display(LIST_PATIENT_ID) in page
        assert 'data-testid="banner-lookup"' in page and "Bytt pasient" in page
    minutes = int(re.search(r"\((\d+) minutter igjen\)", listing).group(1))  # type: ignore[union-attr]
    assert 55 <= minutes <= 60
    assert 'data-testid="attest-basis">Unntak fra samtykke<' in listing
    # The banner's own lookup field takes the next patient in one step.
    response = as_fastlege.post("/pasient/sok/", {"national_id": OTHER_PATIENT_ID})
    assert response.status_code == 302


def test_the_front_page_puts_the_cursor_in_the_lookup_field(as_fastlege, world):
    page = as_fastlege.get("/").content.decode()
    assert re.search(r'<input[^>]*name="national_id"[^>]*autofocus', page)


def test_the_emergency_confirmation_can_go_back_without_storing(as_fastlege, world):
    handle, _ = _card(as_fastlege, OTHER_PATIENT_ID)
    step = {
        "basis": "AKUTT",
        "situation": "life_threatening",
        "reason": "Pasienten er bevisstløs etter fall.",
    }
    page = as_fastlege.post(f"/pasient/{handle}/grunnlag/", step).content.decode()
    assert 'data-testid="akutt-confirm"' in page and 'data-testid="patient-banner"' in page
    assert f'href="/pasient/{handle}/grunnlag/"' in page  # back: nothing stored, nothing logged
    assert not AccessAttest.objects.exists() and not events("emergency_access")
    assert not events("access_denied")


def test_a_restricted_patient_gets_no_ordinary_basis_and_no_false_notice(as_fastlege, world):
    """An ordinary basis opens nothing a patient has restricted: a stale tab's AKUTT is
    refused, not stored, and the patient is told nothing."""

    from pjd_portal.notices.models import PatientNotice

    PrivacyChoice.objects.create(patient=world.patient, kind=PrivacyChoiceKind.RESTRICTION)
    handle = look_up_patient(as_fastlege)
    step = {"basis": "AKUTT", "situation": "unconscious", "reason": "x" * 40, "confirmed": "on"}
    response = as_fastlege.post(f"/pasient/{handle}/grunnlag/", step)
    assert response.status_code == 400
    assert not AccessAttest.objects.exists() and not PatientNotice.objects.exists()
    assert events("access_denied")[-1].reason_code == "elevated_basis_required"


def test_a_second_submit_of_the_emergency_confirmation_stores_nothing_more(as_fastlege, world):
    from pjd_portal.notices.models import PatientNotice

    handle, _ = _card(as_fastlege, OTHER_PATIENT_ID)
    step = {"basis": "AKUTT", "situation": "unconscious", "reason": "x" * 40, "confirmed": "on"}
    for _ in range(2):
        assert as_fastlege.post(f"/pasient/{handle}/grunnlag/", step).status_code == 302
    assert AccessAttest.objects.count() == 1 and PatientNotice.objects.count() == 1
    assert len(events("emergency_access")) == 1


def test_the_refusal_page_shows_no_basis_in_force(as_fastlege, world):
    lookup_and_attest(as_fastlege)
    PrivacyChoice.objects.create(
        patient=world.patient, kind=PrivacyChoiceKind.BLOCKED_CLINICIAN, blocked_hpr_number="910000011"
    )
    _, page = _card(as_fastlege, LIST_PATIENT_ID)
    assert 'data-testid="access-refused"' in page and 'data-testid="attest-basis"' not in page


def test_a_title_search_is_logged_as_searched_not_what(as_fastlege, world):
    handle = lookup_and_attest(as_fastlege)
    as_fastlege.get(f"/pasient/{handle}/", {"title": OTHER_PATIENT_ID})
    event = events("document_list")[-1]
    assert event.details["filters"]["title"] is True
    assert OTHER_PATIENT_ID not in str(event.details)
