"""The patients' privacy choices in the administration area, for the privacy officer.

Lookup by national id (POST) and an opaque per-user handle; registering and lifting a
reservation, a restriction and blocked clinicians; blocking and unblocking documents
(NORS); the history; the audit trail; the effect on the clinician's very next request;
one row for a double submit (concurrently, on PostgreSQL); a constant query count."""

from __future__ import annotations

import datetime
import re
import uuid

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from pjd_portal.access import policy
from pjd_portal.access.models import LookupPurpose, PatientLookup
from pjd_portal.accounts.models import Role
from pjd_portal.auditlog import events as kinds
from pjd_portal.auditlog.events import Outcome
from pjd_portal.auditlog.models import AccessEvent
from pjd_portal.auditlog.services import AuditWriteFailed
from pjd_portal.documents.models import ConfidentialityCode, DocumentBlock, DocumentReference
from pjd_portal.patients.models import PrivacyChoice, PrivacyChoiceKind
from tests.builders import (
    LIST_PATIENT_ID,
    OTHER_PATIENT_ID,
    UNKNOWN_PATIENT_ID,
    add_document,
    comparable,
    events,
    grant_role,
    login,
    lookup_and_attest,
    make_user,
    post_at_once,
    revoke_roles,
    synthetic_id,
)

LOOKUP = "/forvaltning/personvern/"
OTHER_PERSONAS = ["anonymous", "fastlege", "other_clinician", "auditor", "administrator"]
FASTLEGE_HPR = "910000011"
LEGEVAKT_HPR = "910000022"
ACTIONS = {
    "register": "registrer/",
    "lift": "opphev/",
    "block": "sperr-dokument/",
    "unblock": "opphev-dokumentsperre/",
}


# --- fixtures and helpers ----------------------------------------------------------------


def look_up(client: Client, national_id: str = LIST_PATIENT_ID) -> str:
    """Look the patient up; return the patient page's URL (with the handle)."""

    response = client.post(LOOKUP, {"national_id": national_id})
    assert response.status_code == 302, response.content[:500]
    url = response["Location"]
    assert re.fullmatch(r"/forvaltning/personvern/[0-9a-f-]{36}/", url), url
    return url


def request_data(**overrides):
    data = {
        "reference": "PVO-2026/0042",
        "request_date": (timezone.localdate() - datetime.timedelta(days=2)).isoformat(),
        "reason": "Pasienten ønsker ikke at dokumentene deles.",
    }
    data.update(overrides)
    return data


def register(client: Client, page: str, kind: str, hpr: str = "", **overrides):
    return client.post(
        page + ACTIONS["register"], request_data(kind=kind, blocked_hpr_number=hpr, **overrides)
    )


# --- who gets in ----------------------------------------------------------------------------


def test_may_manage_privacy_choices_is_the_privacy_officer_role_in_the_organisation_acted_for():
    officer = policy.StaffFacts(user_id=1, organisation_id=7, roles=frozenset({Role.PRIVACY_OFFICER}))
    assert policy.may_manage_privacy_choices(officer)
    assert not policy.may_manage_privacy_choices(None)
    assert not policy.may_manage_privacy_choices(
        policy.StaffFacts(user_id=1, organisation_id=None, roles=frozenset({Role.PRIVACY_OFFICER}))
    )
    for role in (Role.CLINICIAN, Role.AUDITOR, Role.ACCESS_ADMINISTRATOR):
        staff = policy.StaffFacts(user_id=1, organisation_id=7, roles=frozenset({role}))
        assert policy.may_manage_privacy_choices(staff).reason_code == "not_privacy_officer"


@pytest.mark.parametrize("persona", OTHER_PERSONAS)
def test_everyone_but_the_privacy_officer_gets_the_404_of_a_missing_page(
    world, persona_client, persona, as_privacy_officer
):
    doc = add_document(world)
    page = look_up(as_privacy_officer)  # a real, live handle
    client = persona_client(persona)
    missing = client.get("/forvaltning/finnes-ikke/")
    assert missing.status_code == 404
    urls = [LOOKUP, page] + [page + action for action in ACTIONS.values()]
    data = {**request_data(kind=PrivacyChoiceKind.RESERVATION), "national_id": LIST_PATIENT_ID}
    data["document"] = str(doc.document_id)
    for url in urls:
        for method in ("get", "post"):
            response = getattr(client, method)(url, data)
            assert response.status_code == 404, (persona, method, url)
            assert comparable(response) == comparable(missing)
            assert "Ingrid" not in response.content.decode()
    assert not PrivacyChoice.objects.exists() and not DocumentBlock.objects.exists()
    doc.refresh_from_db()
    assert doc.confidentiality_code == ConfidentialityCode.NORMAL
    denied = AccessEvent.objects.filter(
        event_type=kinds.ACCESS_DENIED.name, reason_code="not_privacy_officer"
    )
    assert denied.count() == (0 if persona == "anonymous" else 2 * len(urls))


def test_a_privacy_officer_role_elsewhere_or_revoked_does_not_open_the_area(world, privacy_officer):
    user, org = privacy_officer
    grant_role(user, world.hospital, Role.AUDITOR)
    assert login(Client(), user, world.hospital).get(LOOKUP).status_code == 404
    revoke_roles(user, role=Role.PRIVACY_OFFICER)
    assert login(Client(), user, org).get(LOOKUP).status_code == 404


def test_the_privacy_officer_sees_the_lookup_form_and_the_area_links_to_it(world, as_privacy_officer):
    response = as_privacy_officer.get(LOOKUP)
    assert response.status_code == 200
    body = response.content.decode()
    assert 'data-testid="privacy-lookup-form"' in body and 'method="post"' in body
    assert "Pasienters personvernvalg" in body  # the heading, in bokmål
    assert f'href="{LOOKUP}"' in as_privacy_officer.get("/forvaltning/innsyn/").content.decode()


def test_actions_are_post_only(world, as_privacy_officer):
    page = look_up(as_privacy_officer)
    for action in ACTIONS.values():
        assert as_privacy_officer.get(page + action).status_code == 405
    assert as_privacy_officer.post(page).status_code == 405
    assert as_privacy_officer.put(LOOKUP).status_code == 405


# --- lookup and handle --------------------------------------------------------------------


def test_lookup_leads_to_the_patient_page_and_is_logged(world, as_privacy_officer):
    page = look_up(as_privacy_officer)
    response = as_privacy_officer.get(page)
    assert response.status_code == 200
    body = response.content.decode()
    assert "Ingrid Testesen" in body
    assert 'data-testid="privacy-none-in-force"' in body
    # The lookup, and the view of the page (which shows the patient), are both logged,
    # each as what it is.
    (lookup,) = events(kinds.PATIENT_LOOKUP.name)
    (view,) = events(kinds.PRIVACY_CHOICES_VIEWED.name)
    for event in (lookup, view):
        assert (event.outcome, event.patient, event.details["channel"]) == (
            Outcome.GRANTED,
            world.patient,
            "privacy_officer",
        )
        assert event.actor_name == "Pia Personvern" and event.organisation_orgnr == "310900001"
    assert "view" not in view.details  # its type says what it was
    # The patient reads both in their own access log: the page showed who they are.
    from pjd_portal.logreading.selectors import patient_log_page

    listed = [e.event_type for e in patient_log_page(world.patient.pk, cursor=None, limit=50).events]
    assert sorted(listed) == sorted([kinds.PATIENT_LOOKUP.name, kinds.PRIVACY_CHOICES_VIEWED.name])


@pytest.mark.parametrize(
    ("value", "status", "message"),
    [
        ("", 400, "Skriv inn pasientens fødselsnummer"),
        ("1234", 400, "11 siffer"),
        (LIST_PATIENT_ID[:-1] + str((int(LIST_PATIENT_ID[-1]) + 1) % 10), 400, "kontrollsiffer"),
        (UNKNOWN_PATIENT_ID, 404, "Fant ingen pasient"),
    ],
)
def test_a_bad_or_unknown_national_id_gets_a_clear_norwegian_message(
    world, as_privacy_officer, value, status, message
):
    response = as_privacy_officer.post(LOOKUP, {"national_id": value})
    assert response.status_code == status
    assert message in response.content.decode()
    assert "Location" not in response
    assert not PatientLookup.objects.filter(purpose=LookupPurpose.PRIVACY_OFFICER).exists()


def test_another_users_handle_an_expired_handle_and_an_unknown_handle_are_404(world, as_privacy_officer):
    page = look_up(as_privacy_officer)
    colleague = make_user("t-personvern2", synthetic_id(2, 6, 81, 222), "", "Per Personvern")
    grant_role(colleague, world.forvaltning, Role.PRIVACY_OFFICER)
    other = login(Client(), colleague, world.forvaltning)
    missing = other.get("/forvaltning/finnes-ikke/")
    for url in (page, f"/forvaltning/personvern/{uuid.uuid4()}/"):
        response = other.get(url)
        assert response.status_code == 404
        assert comparable(response) == comparable(missing)
    response = other.post(page + ACTIONS["register"], request_data(kind=PrivacyChoiceKind.RESERVATION))
    assert response.status_code == 404
    assert not PrivacyChoice.objects.exists()
    assert AccessEvent.objects.filter(reason_code="unknown_handle").count() == 3

    # The owner's handle expires.
    assert as_privacy_officer.get(page).status_code == 200
    PatientLookup.objects.filter(purpose=LookupPurpose.PRIVACY_OFFICER).update(
        expires_at=timezone.now() - datetime.timedelta(seconds=1)
    )
    assert as_privacy_officer.get(page).status_code == 404


# --- registering and lifting ------------------------------------------------------------------


def test_registering_each_kind_records_the_request_the_person_and_an_audit_event(world, as_privacy_officer):
    page = look_up(as_privacy_officer)
    for kind, hpr in (
        (PrivacyChoiceKind.RESERVATION, ""),
        (PrivacyChoiceKind.RESTRICTION, ""),
        (PrivacyChoiceKind.BLOCKED_CLINICIAN, LEGEVAKT_HPR),
    ):
        response = register(as_privacy_officer, page, kind, hpr)
        assert response.status_code == 302 and response["Location"] == page
        assert "registrert" in as_privacy_officer.get(page).content.decode()
    choices = list(PrivacyChoice.objects.order_by("pk"))
    assert [(c.kind, c.blocked_hpr_number) for c in choices] == [
        ("reservation", ""),
        ("restriction", ""),
        ("blocked_clinician", LEGEVAKT_HPR),
    ]
    assert choices[0].registered_by is not None and choices[0].registered_by.display_name == "Pia Personvern"
    assert all(c.reference == "PVO-2026/0042" and c.lifted_at is None for c in choices)
    assert choices[0].request_date == timezone.localdate() - datetime.timedelta(days=2)
    registered = events(kinds.PRIVACY_CHOICE_REGISTERED.name)
    assert [(e.outcome, e.details["kind"]) for e in registered] == [
        (Outcome.GRANTED, "reservation"),
        (Outcome.GRANTED, "restriction"),
        (Outcome.GRANTED, "blocked_clinician"),
    ]
    assert registered[2].details["blocked_hpr_number"] == LEGEVAKT_HPR
    assert registered[0].patient == world.patient and registered[0].details["reference"] == "PVO-2026/0042"
    assert registered[0].reason_text == "Pasienten ønsker ikke at dokumentene deles."
    body = as_privacy_officer.get(page).content.decode()
    assert body.count('data-testid="privacy-choice-in-force"') == 3
    assert body.count('data-testid="privacy-history-row"') == 3
    assert LEGEVAKT_HPR in body and "PVO-2026/0042" in body


TOO_LONG = "x" * 101


@pytest.mark.parametrize(
    ("kind", "hpr", "overrides", "message"),
    [
        ("", "", {}, "Velg hva som skal registreres"),
        ("nonsense", "", {}, "Velg hva som skal registreres"),
        (
            PrivacyChoiceKind.RESERVATION,
            "",
            {"reference": ""},
            "Skriv inn referansen til pasientens henvendelse",
        ),
        (PrivacyChoiceKind.RESERVATION, "", {"reference": TOO_LONG}, "høyst 100 tegn"),
        (
            PrivacyChoiceKind.RESERVATION,
            "",
            {"request_date": ""},
            "Skriv inn datoen for pasientens henvendelse",
        ),
        (PrivacyChoiceKind.RESERVATION, "", {"request_date": "31.02.2026"}, "dd.mm.åååå"),
        (
            PrivacyChoiceKind.RESERVATION,
            "",
            {"request_date": (timezone.localdate() + datetime.timedelta(days=1)).isoformat()},
            "kan ikke være fram i tid",
        ),
        (PrivacyChoiceKind.RESERVATION, "", {"reason": "   "}, "Skriv begrunnelsen for endringen"),
        (PrivacyChoiceKind.BLOCKED_CLINICIAN, "", {}, "Skriv inn HPR-nummeret"),
        (PrivacyChoiceKind.BLOCKED_CLINICIAN, "91000001", {}, "HPR-nummer har 9 siffer"),
        (PrivacyChoiceKind.BLOCKED_CLINICIAN, "91000001X", {}, "HPR-nummer har 9 siffer"),
        (PrivacyChoiceKind.RESERVATION, FASTLEGE_HPR, {}, "bare når du blokkerer helsepersonell"),
    ],
)
def test_validation_errors_are_clear_and_change_nothing(
    world, as_privacy_officer, kind, hpr, overrides, message
):
    page = look_up(as_privacy_officer)
    response = register(as_privacy_officer, page, kind, hpr, **overrides)
    assert response.status_code == 400
    body = response.content.decode()
    assert message in body, body[body.find("privacy-error") - 200 : body.find("privacy-error") + 300]
    assert not PrivacyChoice.objects.exists()
    assert not events(kinds.PRIVACY_CHOICE_REGISTERED.name)


def test_a_date_may_be_written_the_norwegian_way(world, as_privacy_officer):
    page = look_up(as_privacy_officer)
    response = register(as_privacy_officer, page, PrivacyChoiceKind.RESTRICTION, request_date="01.03.2026")
    assert response.status_code == 302
    assert PrivacyChoice.objects.get().request_date == datetime.date(2026, 3, 1)


def test_a_choice_already_in_force_is_registered_once(world, as_privacy_officer):
    page = look_up(as_privacy_officer)
    for _ in range(2):
        assert register(as_privacy_officer, page, PrivacyChoiceKind.RESERVATION).status_code == 302
        assert (
            register(as_privacy_officer, page, PrivacyChoiceKind.BLOCKED_CLINICIAN, FASTLEGE_HPR).status_code
            == 302
        )
    body = as_privacy_officer.get(page).content.decode()
    assert "allerede registrert" in body
    assert PrivacyChoice.objects.filter(kind=PrivacyChoiceKind.RESERVATION).count() == 1
    assert PrivacyChoice.objects.filter(kind=PrivacyChoiceKind.BLOCKED_CLINICIAN).count() == 1
    # Another clinician is another block.
    register(as_privacy_officer, page, PrivacyChoiceKind.BLOCKED_CLINICIAN, LEGEVAKT_HPR)
    assert PrivacyChoice.objects.filter(kind=PrivacyChoiceKind.BLOCKED_CLINICIAN).count() == 2
    outcomes = [(e.outcome, e.reason_code) for e in events(kinds.PRIVACY_CHOICE_REGISTERED.name)]
    assert outcomes.count((Outcome.GRANTED, "")) == 3
    assert outcomes.count((Outcome.INVALID, "already")) == 2


def test_lifting_keeps_the_history_and_a_new_choice_can_follow(world, as_privacy_officer):
    page = look_up(as_privacy_officer)
    register(as_privacy_officer, page, PrivacyChoiceKind.RESERVATION)
    choice = PrivacyChoice.objects.get()
    lift = request_data(
        choice=choice.pk, reference="PVO-2026/0050", reason="Pasienten trekker reservasjonen."
    )
    response = as_privacy_officer.post(page + ACTIONS["lift"], lift)
    assert response.status_code == 302
    choice.refresh_from_db()
    assert choice.lifted_at is not None and choice.lifted_by is not None
    assert choice.lifted_by.display_name == "Pia Personvern"
    assert (choice.lift_reference, choice.lift_reason) == (
        "PVO-2026/0050",
        "Pasienten trekker reservasjonen.",
    )
    assert choice.reference == "PVO-2026/0042"  # the registration is kept as it was
    body = as_privacy_officer.get(page).content.decode()
    assert "opphevet" in body
    assert 'data-testid="privacy-none-in-force"' in body
    [row] = re.findall(r'<tr data-testid="privacy-history-row" data-in-force="false">(.*?)</tr>', body, re.S)
    assert "PVO-2026/0042" in row and "PVO-2026/0050" in row and "Pia Personvern" in row
    assert "Pasienten trekker reservasjonen." in row
    # Lifting again changes nothing.
    assert as_privacy_officer.post(page + ACTIONS["lift"], lift).status_code == 302
    assert "ikke lenger gjeldende" in as_privacy_officer.get(page).content.decode()
    choice_before = choice.lifted_at
    choice.refresh_from_db()
    assert choice.lifted_at == choice_before
    # The patient may reserve again: a new row, the old one stays.
    register(as_privacy_officer, page, PrivacyChoiceKind.RESERVATION)
    assert PrivacyChoice.objects.count() == 2
    lifted = events(kinds.PRIVACY_CHOICE_LIFTED.name)
    assert [(e.outcome, e.details["kind"]) for e in lifted] == [
        (Outcome.GRANTED, "reservation"),
        (Outcome.INVALID, "reservation"),
    ]


def test_lift_validation_errors_and_other_patients_choices_change_nothing(world, as_privacy_officer):
    page = look_up(as_privacy_officer)
    register(as_privacy_officer, page, PrivacyChoiceKind.RESTRICTION)
    choice = PrivacyChoice.objects.get()
    response = as_privacy_officer.post(page + ACTIONS["lift"], request_data(choice=choice.pk, reason=""))
    assert response.status_code == 400
    assert "Skriv begrunnelsen for endringen" in response.content.decode()
    # The other patient's choice, through this patient's handle.
    foreign = PrivacyChoice.objects.create(patient=world.other_patient, kind=PrivacyChoiceKind.RESERVATION)
    assert as_privacy_officer.post(page + ACTIONS["lift"], request_data(choice=foreign.pk)).status_code == 302
    assert not PrivacyChoice.objects.filter(lifted_at__isnull=False).exists()
    [refused] = events(kinds.PRIVACY_CHOICE_LIFTED.name)
    assert (refused.outcome, refused.reason_code) == (Outcome.INVALID, "not_in_force")


def test_an_audit_failure_leaves_nothing_half_written(world, as_privacy_officer, monkeypatch):
    page = look_up(as_privacy_officer)
    doc = add_document(world)

    def fail(*args, **kwargs):
        raise AuditWriteFailed("OperationalError")

    monkeypatch.setattr("pjd_portal.forvaltning.privacy_services.record_event", fail)
    response = register(as_privacy_officer, page, PrivacyChoiceKind.RESERVATION)
    assert response.status_code == 503
    assert "kunne ikke logges" in response.content.decode()
    response = as_privacy_officer.post(page + ACTIONS["block"], request_data(document=doc.document_id))
    assert response.status_code == 503
    assert not PrivacyChoice.objects.exists() and not DocumentBlock.objects.exists()
    doc.refresh_from_db()
    assert doc.confidentiality_code == ConfidentialityCode.NORMAL


# --- the effect on the clinician's next request -----------------------------------------------


def test_a_block_applies_to_the_clinicians_very_next_request_and_its_lifting_too(
    world, as_fastlege, as_privacy_officer
):
    add_document(world, title="Synlig til blokkering")
    handle = lookup_and_attest(as_fastlege)
    assert "Synlig til blokkering" in as_fastlege.get(f"/pasient/{handle}/").content.decode()

    page = look_up(as_privacy_officer)
    assert (
        register(as_privacy_officer, page, PrivacyChoiceKind.BLOCKED_CLINICIAN, FASTLEGE_HPR).status_code
        == 302
    )

    body = as_fastlege.get(f"/pasient/{handle}/").content.decode()
    assert "Synlig til blokkering" not in body and "blokkert" in body
    assert events(kinds.ACCESS_DENIED.name)[-1].reason_code == "clinician_blocked"

    choice = PrivacyChoice.objects.get()
    as_privacy_officer.post(page + ACTIONS["lift"], request_data(choice=choice.pk))
    assert "Synlig til blokkering" in as_fastlege.get(f"/pasient/{handle}/").content.decode()


def test_a_reservation_applies_to_every_clinicians_next_request(world, as_fastlege, as_privacy_officer):
    add_document(world, title="Synlig til reservasjon")
    handle = lookup_and_attest(as_fastlege)
    page = look_up(as_privacy_officer)
    register(as_privacy_officer, page, PrivacyChoiceKind.RESERVATION)
    body = as_fastlege.get(f"/pasient/{handle}/").content.decode()
    assert "Synlig til reservasjon" not in body
    assert events(kinds.ACCESS_DENIED.name)[-1].reason_code == "patient_reserved"


# --- blocked documents (NORS) ------------------------------------------------------------------


def _hidden_count(body: str) -> int:
    match = re.search(r'data-testid="hidden-count" data-count="(\d+)"', body)
    return int(match.group(1)) if match else 0


def test_blocking_a_document_hides_it_and_unblocking_restores_the_old_code(
    world, as_fastlege, as_privacy_officer
):
    restricted = add_document(world, title="Notat med kode R", confidentiality=ConfidentialityCode.RESTRICTED)
    add_document(world, title="Vanlig epikrise", days_ago=20)
    handle = lookup_and_attest(as_fastlege)
    body = as_fastlege.get(f"/pasient/{handle}/").content.decode()
    assert "Notat med kode R" in body and _hidden_count(body) == 0

    page = look_up(as_privacy_officer)
    block = request_data(document=restricted.document_id, reference="PVO-2026/0077")
    assert as_privacy_officer.post(page + ACTIONS["block"], block).status_code == 302
    restricted.refresh_from_db()
    assert restricted.confidentiality_code == ConfidentialityCode.NORS
    record = DocumentBlock.objects.get()
    assert (record.previous_code, record.reference) == (ConfidentialityCode.RESTRICTED, "PVO-2026/0077")
    assert record.blocked_by.display_name == "Pia Personvern"

    body = as_fastlege.get(f"/pasient/{handle}/").content.decode()
    assert "Notat med kode R" not in body and "Vanlig epikrise" in body
    assert _hidden_count(body) == 1 and "sperret" in body
    assert as_fastlege.get(f"/pasient/{handle}/dokument/{restricted.document_id}/").status_code == 404

    # Blocking twice changes nothing.
    assert as_privacy_officer.post(page + ACTIONS["block"], block).status_code == 302
    assert DocumentBlock.objects.count() == 1
    page_body = as_privacy_officer.get(page).content.decode()
    assert "allerede sperret" in page_body
    assert 'data-state="blocked_here"' in page_body

    unblock = request_data(document=restricted.document_id, reference="PVO-2026/0080")
    assert as_privacy_officer.post(page + ACTIONS["unblock"], unblock).status_code == 302
    restricted.refresh_from_db()
    assert restricted.confidentiality_code == ConfidentialityCode.RESTRICTED
    record.refresh_from_db()
    assert record.unblocked_at is not None and record.unblock_reference == "PVO-2026/0080"
    body = as_fastlege.get(f"/pasient/{handle}/").content.decode()
    assert "Notat med kode R" in body and _hidden_count(body) == 0

    # The history shows the block, lifted.
    page_body = as_privacy_officer.get(page).content.decode()
    [row] = re.findall(
        r'<tr data-testid="privacy-history-row" data-in-force="false">(.*?)</tr>', page_body, re.S
    )
    assert "Notat med kode R" in row and "PVO-2026/0077" in row and "PVO-2026/0080" in row
    audited = [
        (e.event_type, e.outcome, e.details["kind"], e.document_id)
        for e in AccessEvent.objects.filter(details__kind="blocked_document").order_by("pk")
    ]
    assert audited == [
        (kinds.DOCUMENT_BLOCKED.name, Outcome.GRANTED, "blocked_document", restricted.pk),
        (kinds.DOCUMENT_BLOCKED.name, Outcome.INVALID, "blocked_document", restricted.pk),
        (kinds.DOCUMENT_UNBLOCKED.name, Outcome.GRANTED, "blocked_document", restricted.pk),
    ]


def test_a_document_blocked_at_the_source_cannot_be_unblocked_here(world, as_privacy_officer):
    doc = add_document(world, title="Sperret ved kilden", confidentiality=ConfidentialityCode.NORS)
    page = look_up(as_privacy_officer)
    body = as_privacy_officer.get(page).content.decode()
    assert 'data-state="blocked_at_source"' in body
    assert (
        as_privacy_officer.post(page + ACTIONS["unblock"], request_data(document=doc.document_id)).status_code
        == 302
    )
    assert (
        as_privacy_officer.post(page + ACTIONS["block"], request_data(document=doc.document_id)).status_code
        == 302
    )
    doc.refresh_from_db()
    assert doc.confidentiality_code == ConfidentialityCode.NORS
    assert not DocumentBlock.objects.exists()


def test_another_patients_document_is_404_and_block_validation_changes_nothing(world, as_privacy_officer):
    foreign = add_document(world, world.other_patient, title="Annen pasient")
    own = add_document(world)
    page = look_up(as_privacy_officer)
    response = as_privacy_officer.post(page + ACTIONS["block"], request_data(document=foreign.document_id))
    assert response.status_code == 404
    response = as_privacy_officer.post(
        page + ACTIONS["block"], request_data(document=own.document_id, reference="")
    )
    assert response.status_code == 400
    assert "Skriv inn referansen til pasientens henvendelse" in response.content.decode()
    assert set(DocumentReference.objects.values_list("confidentiality_code", flat=True)) == {"N"}
    assert not DocumentBlock.objects.exists()


# --- query count and URLs ------------------------------------------------------------------------


def test_the_page_costs_the_same_queries_for_1_and_20_choices(world, as_privacy_officer):
    for patient, n in ((world.patient, 1), (world.other_patient, 20)):
        for i in range(n):
            PrivacyChoice.objects.create(
                patient=patient,
                kind=PrivacyChoiceKind.BLOCKED_CLINICIAN,
                blocked_hpr_number=f"{920000000 + i}",
                reference=f"REF-{i}",
                lifted_at=timezone.now() if i % 2 else None,
            )
            doc = add_document(world, patient, title=f"Dokument {i}")
            DocumentBlock.objects.create(
                document=doc,
                previous_code="N",
                reference=f"B-{i}",
                request_date=timezone.localdate(),
                reason="Ønske",
                blocked_at=timezone.now(),
                blocked_by=world.auditor,
            )
    pages = {1: look_up(as_privacy_officer), 20: look_up(as_privacy_officer, OTHER_PATIENT_ID)}
    counts = {}
    for n, page in pages.items():
        with CaptureQueriesContext(connection) as queries:
            response = as_privacy_officer.get(page)
        assert response.status_code == 200
        assert response.content.decode().count('data-testid="privacy-history-row"') == 2 * n
        counts[n] = len(queries)
    assert counts[1] == counts[20], counts


def test_no_national_id_in_any_url(world, as_privacy_officer):
    doc = add_document(world)
    responses = [
        as_privacy_officer.get(LOOKUP),
        as_privacy_officer.post(LOOKUP, {"national_id": LIST_PATIENT_ID}),
        as_privacy_officer.post(LOOKUP, {"national_id": "1234"}),
        as_privacy_officer.post(LOOKUP, {"national_id": UNKNOWN_PATIENT_ID}),
    ]
    page = look_up(as_privacy_officer)
    responses += [
        register(as_privacy_officer, page, PrivacyChoiceKind.RESTRICTION),
        register(as_privacy_officer, page, PrivacyChoiceKind.RESERVATION, reason=""),
        as_privacy_officer.post(page + ACTIONS["block"], request_data(document=doc.document_id)),
        as_privacy_officer.get(page),
    ]
    for response in responses:
        assert LIST_PATIENT_ID not in response.get("Location", "")
        body = response.content.decode()
        urls = re.findall(r'(?:action|href|src|hx-get|hx-post)="([^"]*)"', body)
        assert urls or response.status_code == 302
        assert all(LIST_PATIENT_ID not in url and UNKNOWN_PATIENT_ID not in url for url in urls)
        for form in re.findall(r"<form[^>]*>", body):
            assert 'method="post"' in form, form


# --- a double submit at the same moment (PostgreSQL) ------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_concurrent_double_submit_creates_one_row(world, privacy_officer):
    user, org = privacy_officer
    owner = login(Client(), user, org)
    page = look_up(owner)
    doc = add_document(world, confidentiality=ConfidentialityCode.RESTRICTED)

    for kind, hpr in (
        (PrivacyChoiceKind.RESERVATION, ""),
        (PrivacyChoiceKind.BLOCKED_CLINICIAN, FASTLEGE_HPR),
    ):
        statuses = post_at_once(
            owner, page + ACTIONS["register"], request_data(kind=kind, blocked_hpr_number=hpr)
        )
        assert statuses == [302] * 8, statuses
        assert PrivacyChoice.objects.filter(kind=kind, lifted_at__isnull=True).count() == 1
        outcomes = list(
            AccessEvent.objects.filter(
                event_type=kinds.PRIVACY_CHOICE_REGISTERED.name, details__kind=kind
            ).values_list("outcome", flat=True)
        )
        assert sorted(outcomes) == [Outcome.GRANTED] + [Outcome.INVALID] * 7

    statuses = post_at_once(owner, page + ACTIONS["block"], request_data(document=doc.document_id))
    assert statuses == [302] * 8, statuses
    [block] = DocumentBlock.objects.all()
    assert block.previous_code == ConfidentialityCode.RESTRICTED  # never NORS from a racing block
    doc.refresh_from_db()
    assert doc.confidentiality_code == ConfidentialityCode.NORS

    choice = PrivacyChoice.objects.get(kind=PrivacyChoiceKind.RESERVATION)
    statuses = post_at_once(owner, page + ACTIONS["lift"], request_data(choice=choice.pk))
    assert statuses == [302] * 8
    lifted = AccessEvent.objects.filter(event_type=kinds.PRIVACY_CHOICE_LIFTED.name)
    assert sorted(lifted.values_list("outcome", flat=True)) == [Outcome.GRANTED] + [Outcome.INVALID] * 7


def test_the_constraint_also_holds_below_the_views(world):
    """The database refuses a second choice of a kind in force, whoever writes it."""

    from django.db import IntegrityError, transaction

    PrivacyChoice.objects.create(patient=world.patient, kind=PrivacyChoiceKind.RESERVATION)
    with pytest.raises(IntegrityError), transaction.atomic():
        PrivacyChoice.objects.create(patient=world.patient, kind=PrivacyChoiceKind.RESERVATION)
    PrivacyChoice.objects.update(lifted_at=timezone.now())
    PrivacyChoice.objects.create(patient=world.patient, kind=PrivacyChoiceKind.RESERVATION)
    assert PrivacyChoice.objects.count() == 2
