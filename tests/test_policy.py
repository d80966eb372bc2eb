"""The access policy as a decision table: every rule and how the rules interact.

The policy functions are pure, so each row builds the facts and asserts the decision and
its reason code. The last tests check that the list's database filter and the
per-document decision agree.
"""

from __future__ import annotations

import datetime
from dataclasses import replace
from typing import Any

import pytest
from django.utils import timezone

from pjd_portal.access import policy
from pjd_portal.access.policy import AttestFacts, ClinicianFacts, PatientFacts, SourceRules
from pjd_portal.documents.facts import DocumentFacts

NOW = timezone.make_aware(datetime.datetime(2026, 11, 23, 12, 0))
TODAY = timezone.localtime(NOW).date()
LONG_REASON = "Pasienten er bevisstløs etter trafikkulykke."

GP = ClinicianFacts(
    user_id=1,
    hpr_number="910000011",
    authorizations=frozenset({"LE"}),
    organisation_id=10,
    organisation_kind="fastlegekontor",
    has_clinician_role=True,
)
LEGEVAKT_LE = replace(GP, user_id=2, hpr_number="910000022", organisation_id=11, organisation_kind="legevakt")
LEGEVAKT_SP = replace(LEGEVAKT_LE, user_id=3, hpr_number="910000033", authorizations=frozenset({"SP"}))
LEGEVAKT_PS = replace(LEGEVAKT_LE, user_id=4, hpr_number="910000044", authorizations=frozenset({"PS"}))
HOSPITAL_LE = replace(LEGEVAKT_LE, user_id=5, hpr_number="910000055", organisation_kind="helseforetak")
SPECIALIST_LE = replace(LEGEVAKT_LE, user_id=6, hpr_number="910000066", organisation_kind="avtalespesialist")
NURSING_HOME_SP = replace(LEGEVAKT_SP, user_id=7, hpr_number="910000077", organisation_kind="sykehjem")

PATIENT = PatientFacts(patient_id=100, fastlege_hpr_number="910000011", reserved=False, restricted=False)
NOT_LISTED = replace(PATIENT, fastlege_hpr_number="919999999")
RESERVED = replace(PATIENT, reserved=True)
RESTRICTED = replace(PATIENT, restricted=True)
BLOCKS_GP = replace(PATIENT, blocked_hpr_numbers=frozenset({"910000011"}))
BLOCKS_GP_AND_RESERVED = replace(BLOCKS_GP, reserved=True)
BLOCKS_GP_AND_RESTRICTED = replace(BLOCKS_GP, restricted=True)

SOURCE = SourceRules(
    source_id=50,
    list_authorizations=frozenset({"LE", "SP"}),
    list_organisation_kinds=frozenset({"fastlegekontor", "legevakt", "sykehjem", "helseforetak"}),
    open_authorizations=frozenset({"LE", "SP"}),
    open_organisation_kinds=frozenset({"fastlegekontor", "legevakt", "sykehjem", "helseforetak"}),
)
DOCTORS_ONLY_OPEN = replace(SOURCE, open_authorizations=frozenset({"LE"}))
HELSE_NORD = replace(DOCTORS_ONLY_OPEN, list_only_if_may_open=True)
NO_NURSING_HOMES = replace(SOURCE, open_organisation_kinds=frozenset({"fastlegekontor", "legevakt"}))


def attest(clinician: ClinicianFacts, basis: str = "UNNTAK", **changes: Any) -> AttestFacts:
    facts = AttestFacts(
        basis=basis,
        user_id=clinician.user_id,
        organisation_id=clinician.organisation_id or 0,
        patient_id=PATIENT.patient_id,
        expires_at=NOW + datetime.timedelta(minutes=30),
    )
    return replace(facts, **changes)


def days_since(years: int, extra_days: int = 0, today: datetime.date = TODAY) -> int:
    """Days back to the same calendar day `years` years ago, plus `extra_days`."""
    return (today - today.replace(year=today.year - years)).days + extra_days


def document(category: str = "A00-1", days_ago: int = 10, **changes: Any) -> DocumentFacts:
    facts = DocumentFacts(
        category=category,
        service_date=TODAY - datetime.timedelta(days=days_ago),
        confidentiality_code="N",
        patient_id=PATIENT.patient_id,
        source_id=SOURCE.source_id,
    )
    return replace(facts, **changes)


# --- 1. who may use the clinical portal, and state which basis ----------------------

BASIS_TABLE = [
    ("blocked clinician, emergency", GP, BLOCKS_GP, "AKUTT", LONG_REASON, "clinician_blocked"),
    (
        "blocked clinician, elevated",
        GP,
        BLOCKS_GP_AND_RESTRICTED,
        "FORHOYET_AKUTT",
        LONG_REASON,
        "clinician_blocked",
    ),
    ("reserved, any basis", LEGEVAKT_LE, RESERVED, "AKUTT", LONG_REASON, "patient_reserved"),
    # (case, clinician, patient, basis, reason, expected reason code)
    ("gp unntak own list patient", GP, PATIENT, "UNNTAK", "", "ok"),
    ("gp unntak not own list patient", GP, NOT_LISTED, "UNNTAK", "", "unntak_not_list_patient"),
    (
        "gp unntak patient without fastlege",
        GP,
        replace(PATIENT, fastlege_hpr_number=""),
        "UNNTAK",
        "",
        "unntak_not_list_patient",
    ),
    ("gp samtykke not own list patient", GP, NOT_LISTED, "SAMTYKKE", "", "ok"),
    ("gp akutt with a reason", GP, NOT_LISTED, "AKUTT", LONG_REASON, "ok"),
    ("gp akutt without a reason", GP, NOT_LISTED, "AKUTT", "", "reason_required"),
    ("gp akutt with a word for a reason", GP, NOT_LISTED, "AKUTT", "akutt", "reason_required"),
    ("legevakt doctor unntak", LEGEVAKT_LE, NOT_LISTED, "UNNTAK", "", "ok"),
    ("legevakt nurse unntak", LEGEVAKT_SP, NOT_LISTED, "UNNTAK", "", "ok"),
    ("legevakt psychologist unntak", LEGEVAKT_PS, NOT_LISTED, "UNNTAK", "", "unntak_not_applicable"),
    ("legevakt psychologist samtykke", LEGEVAKT_PS, NOT_LISTED, "SAMTYKKE", "", "ok"),
    ("hospital doctor unntak", HOSPITAL_LE, NOT_LISTED, "UNNTAK", "", "ok"),
    ("contract specialist unntak", SPECIALIST_LE, NOT_LISTED, "UNNTAK", "", "ok"),
    ("nursing home nurse unntak", NURSING_HOME_SP, NOT_LISTED, "UNNTAK", "", "unntak_not_applicable"),
    ("nursing home nurse samtykke", NURSING_HOME_SP, NOT_LISTED, "SAMTYKKE", "", "ok"),
    (
        "elevated for an unrestricted patient",
        GP,
        PATIENT,
        "FORHOYET_SAMTYKKE",
        LONG_REASON,
        "elevated_not_needed",
    ),
    ("elevated for a restricted patient", GP, RESTRICTED, "FORHOYET_SAMTYKKE", LONG_REASON, "ok"),
    # An ordinary basis opens nothing a patient has restricted: not stored, not told.
    (
        "emergency for a restricted patient",
        LEGEVAKT_LE,
        RESTRICTED,
        "AKUTT",
        LONG_REASON,
        "elevated_basis_required",
    ),
    ("own list patient, restricted", GP, RESTRICTED, "UNNTAK", "", "elevated_basis_required"),
    (
        "elevated emergency for a restricted patient",
        LEGEVAKT_LE,
        RESTRICTED,
        "FORHOYET_AKUTT",
        LONG_REASON,
        "ok",
    ),
    ("elevated without a reason", GP, RESTRICTED, "FORHOYET_AKUTT", "", "reason_required"),
    ("unknown basis", GP, PATIENT, "TRUST_ME", "", "invalid_basis"),
    ("no clinician role", replace(GP, has_clinician_role=False), PATIENT, "UNNTAK", "", "no_clinician_role"),
    ("no organisation", replace(GP, organisation_id=None), PATIENT, "UNNTAK", "", "no_clinician_role"),
    ("no hpr number", replace(GP, hpr_number=""), PATIENT, "SAMTYKKE", "", "no_hpr_number"),
    (
        "no health personnel authorization",
        replace(GP, authorizations=frozenset()),
        PATIENT,
        "SAMTYKKE",
        "",
        "no_authorization",
    ),
]


@pytest.mark.parametrize(
    ("clinician", "patient", "basis", "reason", "expected"),
    [row[1:] for row in BASIS_TABLE],
    ids=[row[0] for row in BASIS_TABLE],
)
def test_may_state_basis(clinician, patient, basis, reason, expected) -> None:
    decision = policy.may_state_basis(clinician, patient, basis, reason)
    assert decision.reason_code == expected
    assert bool(decision) is (expected == "ok")
    if not decision:
        assert decision.message  # the user is told why


@pytest.mark.parametrize(
    ("clinician", "basis", "expected"),
    [
        (GP, "UNNTAK", "TREAT"),
        (LEGEVAKT_LE, "UNNTAK", "ETREAT"),
        (GP, "AKUTT", "BTG"),
        (GP, "FORHOYET_SAMTYKKE", "BTG"),
    ],
)
def test_purpose_of_use(clinician, basis, expected) -> None:
    assert policy.purpose_of_use(clinician, basis) == expected


# --- 2. the status pre-check: may the list be shown? --------------------------------

LIST_TABLE = [
    ("valid attest", GP, PATIENT, attest(GP), "ok"),
    ("no attest", GP, PATIENT, None, "no_valid_attest"),
    (
        "expired attest",
        GP,
        PATIENT,
        attest(GP, expires_at=NOW - datetime.timedelta(seconds=1)),
        "no_valid_attest",
    ),
    ("attest expiring this instant", GP, PATIENT, attest(GP, expires_at=NOW), "no_valid_attest"),
    ("attest for another patient", GP, PATIENT, attest(GP, patient_id=101), "no_valid_attest"),
    ("attest of another user", GP, PATIENT, attest(LEGEVAKT_LE), "no_valid_attest"),
    ("attest from another organisation", GP, PATIENT, attest(GP, organisation_id=99), "no_valid_attest"),
    ("blocked clinician, ordinary basis", GP, BLOCKS_GP, attest(GP), "clinician_blocked"),
    ("blocked beats emergency", GP, BLOCKS_GP, attest(GP, "AKUTT"), "clinician_blocked"),
    (
        "blocked beats elevated emergency",
        GP,
        BLOCKS_GP_AND_RESTRICTED,
        attest(GP, "FORHOYET_AKUTT"),
        "clinician_blocked",
    ),
    ("blocked beats reservation in the reason", GP, BLOCKS_GP_AND_RESERVED, attest(GP), "clinician_blocked"),
    ("another clinician's block does not apply", LEGEVAKT_LE, BLOCKS_GP, attest(LEGEVAKT_LE, "AKUTT"), "ok"),
    ("reserved, ordinary basis", GP, RESERVED, attest(GP), "patient_reserved"),
    ("reserved beats emergency", LEGEVAKT_LE, RESERVED, attest(LEGEVAKT_LE, "AKUTT"), "patient_reserved"),
    (
        "reserved beats elevated",
        GP,
        replace(RESERVED, restricted=True),
        attest(GP, "FORHOYET_SAMTYKKE"),
        "patient_reserved",
    ),
    ("restricted, ordinary basis", GP, RESTRICTED, attest(GP), "patient_restricted"),
    (
        "restricted, emergency is not enough",
        LEGEVAKT_LE,
        RESTRICTED,
        attest(LEGEVAKT_LE, "AKUTT"),
        "patient_restricted",
    ),
    ("restricted, elevated consent", GP, RESTRICTED, attest(GP, "FORHOYET_SAMTYKKE"), "ok"),
    ("restricted, elevated emergency", LEGEVAKT_LE, RESTRICTED, attest(LEGEVAKT_LE, "FORHOYET_AKUTT"), "ok"),
    (
        "no clinician role beats everything",
        replace(GP, has_clinician_role=False),
        PATIENT,
        attest(GP),
        "no_clinician_role",
    ),
]


@pytest.mark.parametrize(
    ("clinician", "patient", "attest_facts", "expected"),
    [row[1:] for row in LIST_TABLE],
    ids=[row[0] for row in LIST_TABLE],
)
def test_may_see_patient_documents(clinician, patient, attest_facts, expected) -> None:
    decision = policy.may_see_patient_documents(clinician, patient, attest_facts, NOW)
    assert decision.reason_code == expected


@pytest.mark.parametrize(
    ("clinician", "patient", "expected"),
    [(GP, PATIENT, True), (GP, BLOCKS_GP, False), (LEGEVAKT_LE, BLOCKS_GP, True), (GP, RESERVED, False)],
)
def test_who_may_see_who_the_patient_is(clinician, patient, expected) -> None:
    assert policy.may_see_patient_identity(clinician, patient) is expected


@pytest.mark.parametrize(
    ("patient", "expected"),
    [(PATIENT, True), (replace(PATIENT, address_protected=True), False), (RESERVED, False)],
)
def test_who_may_see_the_address(patient, expected) -> None:
    assert policy.may_see_patient_address(GP, patient) is expected


# --- 3. one document: windows, blocked documents, formats, source rules -------------

OPEN_TABLE = [
    ("epikrise, 20 years old", GP, document("A00-1", 20 * 365), SOURCE, "ok"),
    ("prøvesvar inside 1 year", GP, document("C00-1", 364), SOURCE, "ok"),
    ("prøvesvar at exactly 1 year", GP, document("C00-1", days_since(1)), SOURCE, "ok"),
    ("prøvesvar a day older than 1 year", GP, document("C00-1", days_since(1, 1)), SOURCE, "outside_window"),
    ("organfunksjon at exactly 5 calendar years", GP, document("D00-1", days_since(5)), SOURCE, "ok"),
    (
        "organfunksjon a day older than 5 years",
        GP,
        document("D00-1", days_since(5, 1)),
        SOURCE,
        "outside_window",
    ),
    ("bildediagnostikk inside 5 years", GP, document("E00-1", 4 * 365), SOURCE, "ok"),
    ("bildediagnostikk older than 5 years", GP, document("E00-1", 6 * 365), SOURCE, "outside_window"),
    ("henvisning inside 1 year", GP, document("I00-1", 100), SOURCE, "ok"),
    ("henvisning older than 1 year", GP, document("I00-1", 400), SOURCE, "outside_window"),
    ("a category outside the regulation", GP, document("B00-1", 1), SOURCE, "category_not_allowed"),
    ("blocked document (NORS)", GP, document(confidentiality_code="NORS"), SOURCE, "document_blocked"),
    (
        "citizen-denied code is still for clinicians",
        GP,
        document(confidentiality_code="NORN_FNR"),
        SOURCE,
        "ok",
    ),
    ("another patient's document", GP, document(patient_id=101), SOURCE, "document_other_patient"),
    (
        "a format the portal cannot show",
        GP,
        document(content_type="text/html"),
        SOURCE,
        "unsupported_content_type",
    ),
    ("xml", GP, document(content_type="application/xml"), SOURCE, "ok"),
    ("source lets only doctors open: doctor", GP, document(), DOCTORS_ONLY_OPEN, "ok"),
    (
        "source lets only doctors open: nurse",
        NURSING_HOME_SP,
        document(),
        DOCTORS_ONLY_OPEN,
        "source_rule_open",
    ),
    ("source excludes nursing homes", NURSING_HOME_SP, document(), NO_NURSING_HOMES, "source_rule_open"),
    (
        "source opens but does not list to this clinician",
        GP,
        document(),
        replace(SOURCE, list_authorizations=frozenset({"SP"})),
        "source_rule_open",
    ),
    ("source rules unknown", GP, document(), None, "unknown_source"),
    ("rules of another source", GP, document(), replace(SOURCE, source_id=51), "unknown_source"),
]


@pytest.mark.parametrize(
    ("clinician", "document_facts", "source", "expected"),
    [row[1:] for row in OPEN_TABLE],
    ids=[row[0] for row in OPEN_TABLE],
)
def test_may_open_document(clinician, document_facts, source, expected) -> None:
    basis = "UNNTAK" if clinician is GP else "SAMTYKKE"
    decision = policy.may_open_document(
        clinician, PATIENT, attest(clinician, basis), document_facts, source=source, now=NOW
    )
    assert decision.reason_code == expected


@pytest.mark.parametrize(
    ("today", "expected_start"),
    [
        (datetime.date(2028, 2, 29), datetime.date(2027, 2, 28)),
        (datetime.date(2027, 3, 1), datetime.date(2026, 3, 1)),
        (datetime.date(2026, 11, 23), datetime.date(2025, 11, 23)),
    ],
)
def test_one_year_window_in_calendar_years(today, expected_start) -> None:
    assert policy.window_start("C00-1", today) == expected_start
    assert policy.window_start("A00-1", today) is None


def test_document_rules_come_after_the_patient_rules() -> None:
    """A blocked clinician gets the block, not a window or source answer, for any document."""
    decision = policy.may_open_document(
        GP, BLOCKS_GP, attest(GP, "AKUTT"), document("C00-1", 900), source=None, now=NOW
    )
    assert decision.reason_code == "clinician_blocked"


SOURCE_LIST_TABLE = [
    ("ordinary source, doctor", GP, SOURCE, True, True),
    ("ordinary source, nurse", NURSING_HOME_SP, SOURCE, True, True),
    ("doctors open, nurse still sees the list", NURSING_HOME_SP, DOCTORS_ONLY_OPEN, True, False),
    ("helse nord, doctor", GP, HELSE_NORD, True, True),
    ("helse nord, nurse sees no list", NURSING_HOME_SP, HELSE_NORD, False, False),
    ("list not for this organisation kind", SPECIALIST_LE, SOURCE, False, False),
    ("list not for this authorization", LEGEVAKT_PS, SOURCE, False, False),
]


@pytest.mark.parametrize(
    ("clinician", "source", "may_list", "may_open"),
    [row[1:] for row in SOURCE_LIST_TABLE],
    ids=[row[0] for row in SOURCE_LIST_TABLE],
)
def test_source_rules(clinician, source, may_list, may_open) -> None:
    assert policy.source_allows_list(clinician, source) is may_list
    assert policy.source_allows_open(clinician, source) is may_open
    assert (source.source_id in policy.listable_source_ids(clinician, [source])) is may_list
    assert (source.source_id in policy.openable_source_ids(clinician, [source])) is may_open


@pytest.mark.parametrize(
    ("clinician", "source", "may_list", "may_open"),
    [row[1:] for row in SOURCE_LIST_TABLE],
    ids=[row[0] for row in SOURCE_LIST_TABLE],
)
def test_one_sources_part_of_the_list_follows_the_list_rule(clinician, source, may_list, may_open) -> None:
    decision = policy.may_list_source(clinician, source, known=True)
    assert bool(decision) is may_list
    assert decision.reason_code == ("ok" if may_list else "source_rule_list")


def test_a_source_the_portal_does_not_ask_or_has_no_rules_for_is_refused() -> None:
    assert policy.may_list_source(GP, SOURCE, known=False).reason_code == "unknown_source"
    assert policy.may_list_source(GP, None, known=True).reason_code == "source_rule_list"


def test_only_a_missing_attest_sends_the_list_to_the_basis_page() -> None:
    without = policy.may_see_patient_documents(GP, PATIENT, None, NOW)
    assert policy.asks_for_basis(without) and not policy.offers_elevated_access(without)
    restricted = policy.may_see_patient_documents(GP, RESTRICTED, attest(GP), NOW)
    assert not policy.asks_for_basis(restricted) and policy.offers_elevated_access(restricted)
    assert not policy.asks_for_basis(policy.ALLOW)


def test_the_table_has_enough_rows() -> None:
    rows = len(BASIS_TABLE) + len(LIST_TABLE) + len(OPEN_TABLE) + len(SOURCE_LIST_TABLE)
    assert rows >= 40, rows


# --- 4. the list filter and the per-document decision agree --------------------------


@pytest.mark.django_db
def test_list_filter_agrees_with_the_document_decision(world) -> None:
    from pjd_portal.documents.models import DocumentReference
    from tests.builders import add_document

    today = timezone.localdate()
    cases = []
    for category in ("A00-1", "C00-1", "D00-1", "E00-1", "I00-1"):
        for days in (0, 364, 366, 5 * 365 - 1, 5 * 365 + 2, 30 * 365):
            for code in ("N", "NORS"):
                for content_type in ("application/pdf", "text/html"):
                    cases.append(
                        add_document(
                            world,
                            category=category,
                            days_ago=days,
                            confidentiality=code,
                            content_type=content_type,
                        )
                    )
    source = replace(SOURCE, source_id=world.source.pk)
    listable = policy.listable_source_ids(GP, [source])
    in_list = set(
        DocumentReference.objects.filter(
            policy.listable_documents_q(today, listable), patient=world.patient
        ).values_list("pk", flat=True)
    )
    now = timezone.now()
    for doc in cases:
        facts = DocumentFacts(
            category=doc.category,
            service_date=doc.service_date,
            confidentiality_code=doc.confidentiality_code,
            patient_id=PATIENT.patient_id,
            source_id=doc.source_id,
            content_type=doc.content_type,
        )
        opens = policy.may_open_document(
            GP,
            PATIENT,
            attest(GP, expires_at=now + datetime.timedelta(minutes=5)),
            facts,
            source=source,
            now=now,
        )
        assert (doc.pk in in_list) is bool(opens), (
            doc.category,
            doc.service_date,
            doc.confidentiality_code,
            doc.content_type,
        )
    # A source that does not list to this clinician empties the list.
    assert not DocumentReference.objects.filter(
        policy.listable_documents_q(today, frozenset()), patient=world.patient
    ).exists()


# --- who may log in at all ------------------------------------------------------------


@pytest.mark.parametrize(
    ("pid", "level", "hpr", "roles", "reason"),
    [
        ("13116900216", "4", "910000011", frozenset(), "ok"),
        ("", "4", "910000011", frozenset(), "missing_pid"),
        ("13116900216", "3", "910000011", frozenset(), "security_level_too_low"),
        ("13116900216", "4", "", frozenset(), "no_hpr_number"),
        ("13116900216", "4", "", frozenset({"clinician"}), "no_hpr_number"),  # clinicians need one
        ("13116900216", "4", "", frozenset({"auditor"}), "ok"),
        ("13116900216", "4", "", frozenset({"privacy_officer"}), "ok"),
        ("13116900216", "4", "", frozenset({"access_administrator"}), "ok"),
    ],
)
def test_who_may_log_in(pid, level, hpr, roles, reason):
    decision = policy.may_log_in(
        policy.LoginFacts(pid=pid, security_level=level, hpr_number=hpr, active_roles=roles)
    )
    assert decision.reason_code == reason and bool(decision) is (reason == "ok")


def test_an_administrator_revoked_a_moment_ago_no_longer_administers():
    assert policy.still_administers(7, frozenset({7, 8}))
    assert policy.still_administers(7, frozenset({8})).reason_code == "no_longer_administrator"


def test_a_basis_refused_for_its_reason_is_told_apart_from_one_refused_for_its_choice() -> None:
    assert policy.refusal_is_about_the_reason(policy.Decision(False, "reason_required"))
    assert not policy.refusal_is_about_the_reason(policy.Decision(False, "basis_not_allowed"))
