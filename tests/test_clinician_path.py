"""The clinician path through the test client: lookup, basis, list, open — and the
audit rows each step writes."""

from __future__ import annotations

import re
import uuid

import pytest
from django.db import DatabaseError, connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from pjd_portal.access.models import AccessAttest, PatientLookup
from pjd_portal.auditlog.models import AccessEvent
from pjd_portal.documents.models import ConfidentialityCode
from pjd_portal.patients.models import AddressProtection, PrivacyChoice, PrivacyChoiceKind
from tests.builders import (
    LIST_PATIENT_ID,
    OTHER_PATIENT_ID,
    UNKNOWN_PATIENT_ID,
    add_document,
    comparable,
    events,
    look_up_patient,
    lookup_and_attest,
)

# --- Step 1: lookup -----------------------------------------------------------------


def test_lookup_hit_redirects_to_basis_with_opaque_handle_and_is_logged(as_fastlege, world):
    response = as_fastlege.post("/pasient/sok/", {"national_id": LIST_PATIENT_ID})
    assert response.status_code == 302
    location = response["Location"]
    assert LIST_PATIENT_ID not in location
    handle = uuid.UUID(location.split("/")[2])
    assert location == f"/pasient/{handle}/grunnlag/"
    [event] = events("patient_lookup")
    assert event.outcome == "granted"
    assert event.patient == world.patient
    assert event.actor_hpr_number == "910000011"
    assert event.actor_name == "Kari Fastlege"
    assert event.organisation_orgnr == "310000000"
    assert event.request_id


def test_lookup_accepts_spaces_in_the_number(as_fastlege, world):
    spaced = f"{LIST_PATIENT_ID[:6]} {LIST_PATIENT_ID[6:]}"
    assert as_fastlege.post("/pasient/sok/", {"national_id": spaced}).status_code == 302


@pytest.mark.parametrize(
    ("value", "message", "reason"),
    [
        ("1234", "11 siffer", "invalid_format"),
        ("abcdefghijk", "11 siffer", "invalid_format"),
        (
            LIST_PATIENT_ID[:-1] + str((int(LIST_PATIENT_ID[-1]) + 1) % 10),
            "kontrollsiffer",
            "invalid_checksum",
        ),
    ],
)
def test_invalid_national_id_gets_a_clear_message_and_is_logged_without_the_input(
    as_fastlege, world, value, message, reason
):
    response = as_fastlege.post("/pasient/sok/", {"national_id": value})
    assert response.status_code == 400
    assert message in response.content.decode()
    [event] = events("patient_lookup")
    assert (event.outcome, event.reason_code) == ("invalid", reason)
    assert event.patient_national_id == ""
    assert not AccessAttest.objects.exists()


def test_valid_id_without_patient_says_so_and_is_logged(as_fastlege, world):
    response = as_fastlege.post("/pasient/sok/", {"national_id": UNKNOWN_PATIENT_ID})
    assert response.status_code == 404
    assert "Fant ingen pasient" in response.content.decode()
    [event] = events("patient_lookup")
    assert event.outcome == "not_found"
    assert event.patient_national_id == UNKNOWN_PATIENT_ID


def test_synthetic_ids_refused_when_setting_is_off(as_fastlege, world, settings):
    settings.ALLOW_SYNTHETIC_IDS = False
    response = as_fastlege.post("/pasient/sok/", {"national_id": LIST_PATIENT_ID})
    assert response.status_code == 400
    assert "Syntetiske testnumre" in response.content.decode()


def test_lookup_is_post_only(as_fastlege, world):
    assert as_fastlege.get("/pasient/sok/", {"national_id": LIST_PATIENT_ID}).status_code == 405


# --- Step 2: basis for access ------------------------------------------------------------


def test_unntak_for_own_list_patient_creates_attest_and_event(as_fastlege, world):
    handle = lookup_and_attest(as_fastlege)
    attest = AccessAttest.objects.get()
    assert attest.basis == "UNNTAK"
    assert attest.purpose_of_use == "TREAT"
    assert attest.patient == world.patient
    assert attest.user == world.fastlege
    assert 59 <= (attest.expires_at - attest.created_at).total_seconds() / 60 <= 60
    [event] = events("basis_stated")
    assert event.attest == attest and event.basis == "UNNTAK" and not event.flagged_for_review
    assert str(attest.lookup.handle) == handle


def test_unntak_refused_for_patient_not_on_list(as_fastlege, world):
    response = as_fastlege.post("/pasient/sok/", {"national_id": OTHER_PATIENT_ID})
    handle = response["Location"].split("/")[2]
    response = as_fastlege.post(f"/pasient/{handle}/grunnlag/", {"basis": "UNNTAK"})
    assert response.status_code == 400
    assert "egne listepasienter" in response.content.decode()
    assert not AccessAttest.objects.exists()
    [event] = events("access_denied")
    assert event.reason_code == "unntak_not_list_patient"
    # Consent works.
    response = as_fastlege.post(f"/pasient/{handle}/grunnlag/", {"basis": "SAMTYKKE"})
    assert response.status_code == 302


def test_akutt_needs_a_reason_and_is_flagged(as_fastlege, world):
    response = as_fastlege.post("/pasient/sok/", {"national_id": OTHER_PATIENT_ID})
    handle = response["Location"].split("/")[2]
    response = as_fastlege.post(f"/pasient/{handle}/grunnlag/", {"basis": "AKUTT", "reason": "kort"})
    assert response.status_code == 400
    assert "begrunnelse" in response.content.decode().lower()
    assert not AccessAttest.objects.exists()
    first_step = {"basis": "AKUTT", "reason": "Pasienten er bevisstløs og kan ikke samtykke."}
    response = as_fastlege.post(f"/pasient/{handle}/grunnlag/", first_step)
    assert response.status_code == 400  # the situation is asked for first
    assert 'data-testid="situation-error"' in response.content.decode()
    first_step["situation"] = "unconscious"
    response = as_fastlege.post(f"/pasient/{handle}/grunnlag/", first_step)
    # The second step names what is logged and who is told; nothing is stored yet.
    assert response.status_code == 200
    page = response.content.decode()
    assert 'data-testid="akutt-confirm"' in page
    assert "Pasienten er bevisstløs og kan ikke samtykke." in page
    assert "Bevisstløs eller sterkt nedsatt bevissthet" in page
    assert "pasienten får beskjed" in page.lower()
    assert not AccessAttest.objects.exists() and not events("emergency_access")
    response = as_fastlege.post(f"/pasient/{handle}/grunnlag/", {**first_step, "confirmed": "on"})
    assert response.status_code == 302
    [event] = events("emergency_access")
    assert event.flagged_for_review
    assert event.purpose_of_use == "BTG"
    assert "bevisstløs" in event.reason_text
    assert event.details["situation"] == "unconscious"


def test_malformed_basis_form_changes_nothing(as_fastlege, world):
    response = as_fastlege.post("/pasient/sok/", {"national_id": LIST_PATIENT_ID})
    handle = response["Location"].split("/")[2]
    response = as_fastlege.post(f"/pasient/{handle}/grunnlag/", {"basis": "ALT_ER_LOV"})
    assert response.status_code == 400
    assert not AccessAttest.objects.exists()


def test_legevakt_doctor_may_use_unntak(persona_client, world):
    client = persona_client("other_clinician")
    handle = lookup_and_attest(client, OTHER_PATIENT_ID, "UNNTAK")
    assert AccessAttest.objects.get().purpose_of_use == "ETREAT"
    assert client.get(f"/pasient/{handle}/").status_code == 200


# --- Steps 3 and 4: banner and list ----------------------------------------------------------


def test_list_without_attest_redirects_to_basis(as_fastlege, world):
    response = as_fastlege.post("/pasient/sok/", {"national_id": LIST_PATIENT_ID})
    handle = response["Location"].split("/")[2]
    response = as_fastlege.get(f"/pasient/{handle}/")
    assert response.status_code == 302
    assert response["Location"] == f"/pasient/{handle}/grunnlag/"


def test_list_shows_documents_newest_first_within_windows_and_logs(as_fastlege, world):
    add_document(world, title="Eldre epikrise", days_ago=3000)  # A00-1: no window
    add_document(world, title="Ny epikrise", days_ago=5)
    add_document(world, title="Gammelt prøvesvar", category="C00-1", days_ago=400)  # outside 1 year
    add_document(world, title="Ferskt prøvesvar", category="C00-1", days_ago=30)
    add_document(world, title="Røntgen thorax", category="E00-1", days_ago=4 * 365)
    add_document(world, title="Gammel CT", category="E00-1", days_ago=6 * 365)  # outside 5 years
    add_document(world, title="Henvisning", category="I00-1", days_ago=100)
    add_document(world, title="Sperret notat", confidentiality=ConfidentialityCode.NORS)
    handle = lookup_and_attest(as_fastlege)
    response = as_fastlege.get(f"/pasient/{handle}/")
    html = response.content.decode()
    assert response.status_code == 200
    for title in ("Eldre epikrise", "Ny epikrise", "Ferskt prøvesvar", "Røntgen thorax", "Henvisning"):
        assert title in html
    for title in ("Gammelt prøvesvar", "Gammel CT", "Sperret notat"):
        assert title not in html
    assert html.index("Ny epikrise") < html.index("Ferskt prøvesvar") < html.index("Eldre epikrise")
    assert "1 dokument er sperret" in html
    assert "Ingrid Testesen" in html
    assert LIST_PATIENT_ID not in html
    assert response["Cache-Control"] == "no-store"
    assert "HX-Request" in response["Vary"]
    [event] = events("document_list")
    assert event.patient == world.patient and event.details["shown"] == 5


def test_list_sort_filter_and_paging(as_fastlege, world):
    for i in range(12):
        add_document(world, title=f"Epikrise nr {i:02d}", days_ago=10 + i)
    add_document(world, title="Et prøvesvar", category="C00-1", days_ago=1)
    handle = lookup_and_attest(as_fastlege)
    html = as_fastlege.get(f"/pasient/{handle}/", {"size": 10}).content.decode()
    assert html.count('data-testid="document-row"') == 10
    assert "Side 1 av 2" in html
    html = as_fastlege.get(f"/pasient/{handle}/", {"size": 10, "page": 2}).content.decode()
    assert html.count('data-testid="document-row"') == 3
    html = as_fastlege.get(f"/pasient/{handle}/", {"category": "C00-1"}).content.decode()
    assert html.count('data-testid="document-row"') == 1 and "Et prøvesvar" in html
    html = as_fastlege.get(f"/pasient/{handle}/", {"sort": "title"}).content.decode()
    assert html.index("Epikrise nr 00") < html.index("Et prøvesvar")
    # Nonsense parameters fall back to defaults instead of failing.
    response = as_fastlege.get(f"/pasient/{handle}/", {"sort": "drop table", "page": "x", "size": "9999"})
    assert response.status_code == 200


def test_htmx_request_gets_only_the_list_fragment(as_fastlege, world):
    add_document(world)
    handle = lookup_and_attest(as_fastlege)
    response = as_fastlege.get(f"/pasient/{handle}/", {"sort": "date"}, headers={"HX-Request": "true"})
    html = response.content.decode()
    assert response.status_code == 200
    assert html.lstrip().startswith('<div id="document-list"')
    assert "<html" not in html
    assert response["Cache-Control"] == "no-store"


def test_pages_with_patient_data_turn_off_htmx_history(as_fastlege, world):
    add_document(world)
    handle = lookup_and_attest(as_fastlege)
    html = as_fastlege.get(f"/pasient/{handle}/").content.decode()
    assert 'hx-history="false"' in html
    assert '"historyCacheSize": 0' in html


def test_protected_address_is_never_shown(as_fastlege, world):
    world.patient.address_protection = AddressProtection.STRENGT_FORTROLIG
    world.patient.save()
    handle = lookup_and_attest(as_fastlege)
    html = as_fastlege.get(f"/pasient/{handle}/").content.decode()
    assert "Eksempelveien" not in html
    assert "Skjermet adresse" in html


def test_address_shown_when_not_protected(as_fastlege, world):
    handle = lookup_and_attest(as_fastlege)
    assert "Eksempelveien 1" in as_fastlege.get(f"/pasient/{handle}/").content.decode()


def test_reserved_patient_shows_no_documents_and_denial_is_logged(as_fastlege, world):
    add_document(world, title="Skal ikke vises")
    PrivacyChoice.objects.create(patient=world.patient, kind=PrivacyChoiceKind.RESERVATION)
    # No basis opens a reservation: it is refused at once, and nothing is recorded as granted.
    handle = lookup_and_attest(as_fastlege, refused_with="reservert")
    assert not AccessAttest.objects.exists()
    html = as_fastlege.get(f"/pasient/{handle}/").content.decode()
    assert "Skal ikke vises" not in html
    assert "reservert" in html
    assert world.patient.given_name not in html  # nothing is shown, not even the name
    assert [e.reason_code for e in events("access_denied")] == ["patient_reserved", "patient_reserved"]


def test_reservation_between_two_requests_applies_to_the_second(as_fastlege, world):
    doc = add_document(world, title="Synlig først")
    handle = lookup_and_attest(as_fastlege)
    assert "Synlig først" in as_fastlege.get(f"/pasient/{handle}/").content.decode()
    PrivacyChoice.objects.create(patient=world.patient, kind=PrivacyChoiceKind.RESERVATION)
    assert "Synlig først" not in as_fastlege.get(f"/pasient/{handle}/").content.decode()
    assert as_fastlege.get(f"/pasient/{handle}/dokument/{doc.document_id}/").status_code == 404


def test_blocked_clinician_sees_nothing_even_in_emergency(as_fastlege, world):
    add_document(world, title="Blokkert for deg")
    PrivacyChoice.objects.create(
        patient=world.patient, kind=PrivacyChoiceKind.BLOCKED_CLINICIAN, blocked_hpr_number="910000011"
    )
    handle = lookup_and_attest(
        as_fastlege,
        basis="AKUTT",
        reason="Pasienten er bevisstløs etter trafikkulykke.",
        refused_with="blokkert",
    )
    assert not events("emergency_access")  # no emergency access is recorded as granted
    html = as_fastlege.get(f"/pasient/{handle}/").content.decode()
    assert "Blokkert for deg" not in html
    assert events("access_denied")[-1].reason_code == "clinician_blocked"
    # Nor who the patient is: the block may be aimed at this very person.
    patient = world.patient
    assert patient.given_name not in html and patient.family_name not in html
    assert patient.address.split(",")[0] not in html
    assert patient.birth_date.strftime("%d.%m.%Y") not in html
    assert 'data-testid="patient-hidden"' in html


def test_restricted_patient_needs_elevated_basis_after_a_confirmation_step(as_fastlege, world):
    add_document(world, title="Begrenset dokument")
    # A basis stated before the restriction was registered: the list then says why it shows
    # nothing and offers the FORHØYET step.
    handle = lookup_and_attest(as_fastlege)
    PrivacyChoice.objects.create(patient=world.patient, kind=PrivacyChoiceKind.RESTRICTION)
    page = as_fastlege.get(f"/pasient/{handle}/").content.decode()
    assert "Begrenset dokument" not in page
    assert 'data-reason="patient_restricted"' in page
    assert f'href="/pasient/{handle}/forhoyet/"' in page
    # FORHØYET is not offered on the ordinary basis page.
    assert "FORHOYET" not in as_fastlege.get(f"/pasient/{handle}/grunnlag/").content.decode()
    refused = as_fastlege.post(
        f"/pasient/{handle}/grunnlag/",
        {"basis": "FORHOYET_SAMTYKKE", "reason": "Pasienten har samtykket i dag."},
    )
    assert refused.status_code == 400

    reason = "Pasienten har samtykket muntlig til innsyn i dag."
    # Without the confirmation, nothing is stored.
    attests = AccessAttest.objects.count()
    unconfirmed = as_fastlege.post(
        f"/pasient/{handle}/forhoyet/", {"basis": "FORHOYET_SAMTYKKE", "reason": reason}
    )
    assert unconfirmed.status_code == 400 and 'data-testid="confirm-error"' in unconfirmed.content.decode()
    assert AccessAttest.objects.count() == attests

    confirmed = as_fastlege.post(
        f"/pasient/{handle}/forhoyet/", {"basis": "FORHOYET_SAMTYKKE", "reason": reason, "confirm": "on"}
    )
    assert confirmed["Location"] == f"/pasient/{handle}/"
    assert "Begrenset dokument" in as_fastlege.get(f"/pasient/{handle}/").content.decode()
    [event] = events("emergency_access")
    assert event.basis == "FORHOYET_SAMTYKKE" and event.flagged_for_review and event.reason_text == reason
    assert event.purpose_of_use == "BTG"


def test_elevated_step_is_only_for_a_restriction(as_fastlege, world):
    handle = lookup_and_attest(as_fastlege)
    response = as_fastlege.post(
        f"/pasient/{handle}/forhoyet/",
        {"basis": "FORHOYET_AKUTT", "reason": "Pasienten er bevisstløs etter ulykke.", "confirm": "on"},
    )
    assert response["Location"] == f"/pasient/{handle}/grunnlag/"
    assert not events("emergency_access")


def test_elevated_step_tells_a_blocked_clinician_nothing_more(as_fastlege, world):
    """Restricted or not, a blocked clinician gets the same answer from the step."""
    PrivacyChoice.objects.create(
        patient=world.patient, kind=PrivacyChoiceKind.BLOCKED_CLINICIAN, blocked_hpr_number="910000011"
    )
    handle = lookup_and_attest(as_fastlege, refused_with="blokkert")
    plain = as_fastlege.post(f"/pasient/{handle}/forhoyet/", {"basis": "FORHOYET_AKUTT", "confirm": "on"})
    PrivacyChoice.objects.create(patient=world.patient, kind=PrivacyChoiceKind.RESTRICTION)
    restricted = as_fastlege.post(
        f"/pasient/{handle}/forhoyet/", {"basis": "FORHOYET_AKUTT", "confirm": "on"}
    )
    assert plain.status_code == restricted.status_code
    assert plain.get("Location") == restricted.get("Location")


def test_elevated_events_are_flagged_on_list_and_open(as_fastlege, world):
    doc = add_document(world)
    PrivacyChoice.objects.create(patient=world.patient, kind=PrivacyChoiceKind.RESTRICTION)
    handle = look_up_patient(as_fastlege)
    as_fastlege.post(
        f"/pasient/{handle}/forhoyet/",
        {"basis": "FORHOYET_SAMTYKKE", "reason": "Pasienten har samtykket muntlig i dag.", "confirm": "on"},
    )
    as_fastlege.get(f"/pasient/{handle}/")
    as_fastlege.get(f"/pasient/{handle}/dokument/{doc.document_id}/")
    assert events("document_list")[-1].flagged_for_review
    assert events("document_open")[-1].flagged_for_review


def test_refused_basis_forms_are_logged(as_fastlege, world):
    PrivacyChoice.objects.create(patient=world.patient, kind=PrivacyChoiceKind.RESTRICTION)
    handle = look_up_patient(as_fastlege)
    as_fastlege.post(f"/pasient/{handle}/grunnlag/", {"basis": "FORHOYET_SAMTYKKE", "reason": "x" * 40})
    as_fastlege.post(f"/pasient/{handle}/forhoyet/", {"basis": "FORHOYET_SAMTYKKE", "reason": "x" * 40})
    assert [e.reason_code for e in events("access_denied")][-2:] == [
        "basis_form_invalid",
        "elevated_form_invalid",
    ]


def test_a_restricted_patient_goes_from_the_lookup_to_the_elevated_step(as_fastlege, world):
    PrivacyChoice.objects.create(patient=world.patient, kind=PrivacyChoiceKind.RESTRICTION)
    as_fastlege.post("/pasient/sok/", {"national_id": LIST_PATIENT_ID})
    handle = PatientLookup.objects.latest("id").handle
    assert as_fastlege.get(f"/pasient/{handle}/grunnlag/")["Location"] == f"/pasient/{handle}/forhoyet/"
    page = as_fastlege.get(f"/pasient/{handle}/forhoyet/").content.decode()
    assert 'data-status="restricted"' in page and "forhøyet grunnlag" in page
    offered = set(re.findall(r'data-testid="basis-option-(\w+)"', page))
    assert offered == {"FORHOYET_SAMTYKKE", "FORHOYET_AKUTT"}  # an ordinary basis would open nothing
    assert 'data-testid="patient-name"' in page  # the card: who the patient is, first


def test_block_registered_between_two_requests_applies_to_the_second(as_fastlege, world):
    doc = add_document(world, title="Synlig til blokkering")
    handle = lookup_and_attest(as_fastlege)
    assert "Synlig til blokkering" in as_fastlege.get(f"/pasient/{handle}/").content.decode()
    PrivacyChoice.objects.create(
        patient=world.patient, kind=PrivacyChoiceKind.BLOCKED_CLINICIAN, blocked_hpr_number="910000011"
    )
    assert "Synlig til blokkering" not in as_fastlege.get(f"/pasient/{handle}/").content.decode()
    assert as_fastlege.get(f"/pasient/{handle}/dokument/{doc.document_id}/").status_code == 404
    assert events("access_denied")[-1].reason_code == "clinician_blocked"


def test_expired_attest_needs_a_new_basis(as_fastlege, world):
    handle = lookup_and_attest(as_fastlege)
    AccessAttest.objects.update(expires_at=timezone.now())
    response = as_fastlege.get(f"/pasient/{handle}/")
    assert response.status_code == 302 and response["Location"].endswith("/grunnlag/")


# --- Step 5: open --------------------------------------------------------------------------------


def test_open_pdf_commits_exactly_one_event_and_returns_bytes(as_fastlege, world):
    doc = add_document(world)
    handle = lookup_and_attest(as_fastlege)
    response = as_fastlege.get(f"/pasient/{handle}/dokument/{doc.document_id}/")
    assert response.status_code == 200
    assert b"".join(response.streaming_content).startswith(b"%PDF-")
    assert response["Content-Type"] == "application/pdf"
    assert response["Content-Security-Policy"].startswith("sandbox;")
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Content-Disposition"].startswith("inline")
    assert response["Cache-Control"] == "no-store"
    assert response["X-Content-Type-Options"] == "nosniff"
    [event] = events("document_open")
    assert event.document == doc and event.outcome == "granted"
    assert event.source_orgnr == world.hospital.orgnr
    assert event.attest is not None and event.basis == "UNNTAK"


def test_open_xml_renders_untrusted_text_inert(as_fastlege, world):
    xml = (
        b'<?xml version="1.0" encoding="UTF-8"?><Dokument><Tittel>Svarrapport</Tittel>'
        b"<Innhold><Avsnitt overskrift=\"Funn\">&lt;script&gt;alert('x')&lt;/script&gt; "
        b"Normale funn.</Avsnitt></Innhold></Dokument>"
    )
    doc = add_document(world, content_type="application/xml", data=xml)
    handle = lookup_and_attest(as_fastlege)
    response = as_fastlege.get(f"/pasient/{handle}/dokument/{doc.document_id}/")
    html = response.content.decode()
    assert response.status_code == 200
    assert "Normale funn." in html
    assert "<script>alert" not in html
    assert "&lt;script&gt;alert" in html


def test_xml_with_external_entity_is_not_resolved(as_fastlege, world):
    xml = (
        b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
        b"<Dokument><Tittel>&xxe;</Tittel></Dokument>"
    )
    doc = add_document(world, content_type="application/xml", data=xml)
    handle = lookup_and_attest(as_fastlege)
    response = as_fastlege.get(f"/pasient/{handle}/dokument/{doc.document_id}/")
    assert response.status_code == 200
    assert "root:" not in response.content.decode()


def test_audit_failure_gives_503_and_no_document_bytes(as_fastlege, world, monkeypatch):
    doc = add_document(world)
    handle = lookup_and_attest(as_fastlege)
    original_save = AccessEvent.save

    def failing_save(self, *args, **kwargs):
        if self.event_type == "document_open":
            raise DatabaseError("disk full")
        return original_save(self, *args, **kwargs)

    monkeypatch.setattr(AccessEvent, "save", failing_save)
    response = as_fastlege.get(f"/pasient/{handle}/dokument/{doc.document_id}/")
    assert response.status_code == 503
    assert b"%PDF" not in response.content
    assert "ikke logges" in response.content.decode()
    assert not events("document_open")


def test_document_outside_window_not_found_and_logged(as_fastlege, world):
    old = add_document(world, category="C00-1", days_ago=500)
    handle = lookup_and_attest(as_fastlege)
    response = as_fastlege.get(f"/pasient/{handle}/dokument/{old.document_id}/")
    assert response.status_code == 404
    assert events("access_denied")[-1].reason_code == "outside_window"


def test_other_patients_document_looks_exactly_like_a_missing_one(as_fastlege, world):
    foreign = add_document(world, world.other_patient, title="Annen pasient")
    blocked = add_document(world, confidentiality=ConfidentialityCode.NORS)
    handle = lookup_and_attest(as_fastlege)
    r_foreign = as_fastlege.get(f"/pasient/{handle}/dokument/{foreign.document_id}/")
    r_blocked = as_fastlege.get(f"/pasient/{handle}/dokument/{blocked.document_id}/")
    r_missing = as_fastlege.get(f"/pasient/{handle}/dokument/{uuid.uuid4()}/")
    assert r_foreign.status_code == r_blocked.status_code == r_missing.status_code == 404
    assert comparable(r_foreign) == comparable(r_blocked) == comparable(r_missing)
    reasons = [e.reason_code for e in events("access_denied")]
    assert reasons == ["document_other_patient", "document_blocked", "unknown_document"]


def test_another_users_handle_looks_like_a_missing_one_and_is_logged(as_fastlege, persona_client, world):
    add_document(world)
    handle = lookup_and_attest(as_fastlege)
    other = persona_client("other_clinician")
    r_stolen = other.get(f"/pasient/{handle}/")
    r_random = other.get(f"/pasient/{uuid.uuid4()}/")
    assert r_stolen.status_code == r_random.status_code == 404
    assert comparable(r_stolen) == comparable(r_random)
    denied = events("access_denied")
    assert [e.reason_code for e in denied][-2:] == ["unknown_handle", "unknown_handle"]
    assert denied[-2].actor_user_id == world.other_clinician.pk


# --- Query counts -------------------------------------------------------------------------------


def _list_queries(client, handle):
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(f"/pasient/{handle}/", {"size": 50})
    assert response.status_code == 200
    return len(ctx.captured_queries)


def test_document_list_query_count_is_the_same_for_1_and_50_documents(as_fastlege, world):
    add_document(world)
    handle = lookup_and_attest(as_fastlege)
    one = _list_queries(as_fastlege, handle)
    for i in range(49):
        add_document(world, title=f"Dokument {i}", days_ago=i + 1)
    fifty = _list_queries(as_fastlege, handle)
    assert one == fifty
    # session, user, organisation, roles, authorizations, lookup, privacy choices, attest,
    # source rules, list (count, hidden, page), and the audit row with its chain link.
    assert fifty <= 20


def test_database_outage_gives_a_503_page_not_a_500(as_fastlege, world, monkeypatch):
    from django.db import OperationalError

    from pjd_portal.access import handles

    handle = lookup_and_attest(as_fastlege)

    def down(*args, **kwargs):
        raise OperationalError("could not connect to server")

    monkeypatch.setattr(handles, "live_handle", down)
    response = as_fastlege.get(f"/pasient/{handle}/")
    assert response.status_code == 503
    assert "databasen" in response.content.decode()
    assert response["Retry-After"] == "30"


def test_norwegian_by_default_even_for_an_english_browser(as_fastlege, world):
    page = as_fastlege.get("/", HTTP_ACCEPT_LANGUAGE="en-US,en;q=0.9")
    assert page["Content-Language"] == "nb"
    assert "Slå opp pasient" in page.content.decode()


def test_english_when_the_user_chooses_it(as_fastlege, world):
    as_fastlege.post("/i18n/setlang/", {"language": "en", "next": "/"})
    page = as_fastlege.get("/")
    assert page["Content-Language"] == "en"
    assert "Look up a patient" in page.content.decode()
    as_fastlege.post("/i18n/setlang/", {"language": "nb", "next": "/"})
    assert "Slå opp pasient" in as_fastlege.get("/").content.decode()


def test_database_outage_outside_the_view_is_a_503_not_a_500(as_fastlege, world, monkeypatch):
    """Every query failing, the session middleware included, still gives the 503 page."""
    from django.db import OperationalError
    from django.db.backends.utils import CursorWrapper

    handle = lookup_and_attest(as_fastlege)
    doc = add_document(world)

    def down(*args, **kwargs):
        raise OperationalError("could not connect to server")

    as_fastlege.raise_request_exception = False
    # Undone before the database fixture tears down, which needs the database.
    with monkeypatch.context() as patch:
        patch.setattr(CursorWrapper, "execute", down)
        patch.setattr(CursorWrapper, "executemany", down)
        for method, url in (
            ("get", "/"),
            ("get", f"/pasient/{handle}/"),
            ("get", f"/pasient/{handle}/dokument/{doc.document_id}/"),
            ("post", "/pasient/sok/"),
        ):
            response = getattr(as_fastlege, method)(url)
            assert response.status_code == 503, (url, response.status_code)
            assert b"%PDF" not in response.content
            assert "databasen" in response.content.decode()  # the clear page, not a bare one


def test_xml_with_comments_and_processing_instructions_renders(as_fastlege, world):
    data = (
        b'<?xml version="1.0" encoding="UTF-8"?><?kilde system="x"?><Dokument><!-- top -->'
        b'<Tittel>Notat</Tittel><Innhold><!-- kildesystem --><Avsnitt overskrift="A">tekst'
        b"<!-- inni --></Avsnitt></Innhold></Dokument>"
    )
    doc = add_document(world, content_type="application/xml", data=data)
    handle = lookup_and_attest(as_fastlege)
    response = as_fastlege.get(f"/pasient/{handle}/dokument/{doc.document_id}/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "tekst" in html and "kildesystem" not in html and "inni" not in html


def test_unreadable_xml_says_so_and_is_not_a_500(as_fastlege, world):
    doc = add_document(world, content_type="application/xml", data=b"<Dokument><Tittel>uavsluttet")
    handle = lookup_and_attest(as_fastlege)
    response = as_fastlege.get(f"/pasient/{handle}/dokument/{doc.document_id}/")
    assert response.status_code == 200
    assert 'data-testid="document-unreadable"' in response.content.decode()


def test_missing_document_content_is_a_503_and_the_log_says_not_shown(as_fastlege, world):
    from pjd_portal.documents.models import DocumentContent

    doc = add_document(world)
    DocumentContent.objects.filter(document=doc).delete()
    handle = lookup_and_attest(as_fastlege)
    response = as_fastlege.get(f"/pasient/{handle}/dokument/{doc.document_id}/")
    assert response.status_code == 503
    assert b"%PDF" not in response.content
    opens = [(e.outcome, e.reason_code) for e in events("document_open")]
    assert opens[-1] == ("not_found", "content_unavailable")


def test_document_of_a_type_the_portal_cannot_show_is_refused_like_a_missing_one(as_fastlege, world):
    doc = add_document(world, content_type="text/html", data=b"<script>alert(1)</script>")
    handle = lookup_and_attest(as_fastlege)
    refused = as_fastlege.get(f"/pasient/{handle}/dokument/{doc.document_id}/")
    missing = as_fastlege.get(f"/pasient/{handle}/dokument/{uuid.uuid4()}/")
    assert refused.status_code == missing.status_code == 404
    assert comparable(refused) == comparable(missing)
    assert events("access_denied")[-2].reason_code == "unsupported_content_type"
    assert b"<script>" not in refused.content


@pytest.mark.parametrize("typed", ["1234567890\u00b2", "\u0661" * 11, "12345\u200b678901"])
def test_look_alike_digits_get_the_invalid_id_message_not_a_500(as_fastlege, world, typed):
    response = as_fastlege.post("/pasient/sok/", {"national_id": typed})
    assert response.status_code == 400
    assert 'data-testid="lookup-error"' in response.content.decode()
    assert events("patient_lookup")[-1].outcome == "invalid"


def test_logout_ends_the_session_even_when_the_event_cannot_be_written(as_fastlege, world, monkeypatch):
    from pjd_portal.auditlog import services

    def fail(*args, **kwargs):
        raise services.AuditWriteFailed("down")

    monkeypatch.setattr("pjd_portal.login.views.record_event", fail)
    response = as_fastlege.post("/logg-ut/")
    assert response.status_code == 503
    assert "_auth_user_id" not in as_fastlege.session
    assert 'data-testid="login"' in as_fastlege.get("/").content.decode()


@pytest.mark.parametrize(("method", "path"), [("get", "/pasient/sok/"), ("post", "/logget-ut/")])
def test_wrong_method_gets_a_page_that_says_what_to_do(as_fastlege, world, method, path):
    response = getattr(as_fastlege, method)(path)
    assert response.status_code == 405
    assert "Allow" in response
    assert "forsiden" in response.content.decode()
    assert response["Cache-Control"] == "no-store"


def test_the_list_sends_to_the_basis_page_when_the_policy_says_so(as_fastlege, world, monkeypatch):
    """Which refusal the basis page answers is the policy's (`asks_for_basis`), not the view's."""

    from pjd_portal.access import policy

    handle = lookup_and_attest(as_fastlege)
    monkeypatch.setattr(policy, "asks_for_basis", lambda decision: True)
    response = as_fastlege.get(f"/pasient/{handle}/")
    assert response.status_code == 302 and response["Location"] == f"/pasient/{handle}/grunnlag/"
