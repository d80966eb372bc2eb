"""The demo data `make run` loads: synthetic, consistent with the dev identity provider's
users, usable through the clinician path, and safe to load twice."""

from __future__ import annotations

import json
import re
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.test import Client

from pjd_portal.accounts.models import Organisation, Role, User
from pjd_portal.accounts.roles import grants_in_force
from pjd_portal.auditlog.models import AccessEvent
from pjd_portal.documents.management.commands.seed_demo import NHN_TEST_PATIENTS, USERS_FILE
from pjd_portal.documents.models import DocumentContent, DocumentReference
from pjd_portal.patients.models import AddressProtection, Patient, PrivacyChoice, PrivacyChoiceKind
from pjd_portal.patients.national_id import has_valid_check_digits
from tests.builders import login, lookup_and_attest

pytestmark = pytest.mark.django_db


def seed(**options: int) -> str:
    out = StringIO()
    call_command("seed_demo", patients=9, min_documents=6, max_documents=8, stdout=out, **options)
    return out.getvalue()


def test_seed_loads_consistent_synthetic_data() -> None:
    printed = seed()
    assert "12 patients" in printed
    patients = list(Patient.objects.all())
    assert len(patients) == 12
    for patient in patients:
        value = patient.national_id
        assert has_valid_check_digits(value), value
        # Synthetic: NHN's published test patients, or Tenor style (month + 80).
        assert value in NHN_TEST_PATIENTS or int(value[2:4]) > 80, value
    per_patient = [DocumentReference.objects.filter(patient=p).count() for p in patients]
    assert min(per_patient) >= 6 and max(per_patient) <= 8
    assert DocumentContent.objects.count() == DocumentReference.objects.count()
    kinds = set(PrivacyChoice.objects.values_list("kind", flat=True))
    assert kinds == {
        PrivacyChoiceKind.RESERVATION,
        PrivacyChoiceKind.RESTRICTION,
        PrivacyChoiceKind.BLOCKED_CLINICIAN,
    }
    assert Patient.objects.filter(address_protection=AddressProtection.STRENGT_FORTROLIG).count() == 1


def test_staff_match_the_identity_providers_users() -> None:
    seed()
    users = json.loads(USERS_FILE.read_text(encoding="utf-8"))["users"]
    for username, role in (
        ("fastlege", Role.CLINICIAN),
        ("revisor", Role.AUDITOR),
        ("personvern", Role.PRIVACY_OFFICER),
        ("tilgangsstyrer", Role.ACCESS_ADMINISTRATOR),
    ):
        claims = users[username]
        user = User.objects.get(pid=claims["pid"])
        assert user.hpr_number == (claims["hpr"] or "")
        held = grants_in_force().select_related("permission", "content_object").get(user=user)
        assert held.role == role
        assert held.content_object.orgnr == claims["orgnr_parent"]
    # Those the provider lets through but the portal must refuse have no clinical role.
    assert not User.objects.filter(pid=users["uten-hpr"]["pid"]).exists()


def test_running_it_twice_changes_nothing() -> None:
    seed()
    counts = (Patient.objects.count(), DocumentReference.objects.count(), User.objects.count())
    assert "nothing changed" in seed()
    assert (Patient.objects.count(), DocumentReference.objects.count(), User.objects.count()) == counts


def test_fastlege_sees_and_opens_seeded_documents_of_a_list_patient() -> None:
    seed()
    users = json.loads(USERS_FILE.read_text(encoding="utf-8"))["users"]
    fastlege = User.objects.get(pid=users["fastlege"]["pid"])
    client = login(Client(), fastlege, Organisation.objects.get(orgnr=users["fastlege"]["orgnr_parent"]))
    handle = lookup_and_attest(client, national_id=NHN_TEST_PATIENTS[0])
    listing = client.get(f"/pasient/{handle}/")
    assert listing.status_code == 200
    rows = listing.content.decode().count('data-testid="document-row"')
    assert rows >= 1
    doc = (
        DocumentReference.objects.filter(
            patient__national_id=NHN_TEST_PATIENTS[0], content_type="application/pdf"
        )
        .order_by("-service_date")
        .first()
    )
    assert doc is not None
    opened = client.get(f"/pasient/{handle}/dokument/{doc.document_id}/")
    assert opened.status_code == 200 and opened.getvalue().startswith(b"%PDF-")
    assert (
        AccessEvent.objects.filter(event_type="document_open", document=doc, outcome="granted").count() == 1
    )


def test_readme_lists_the_seeded_test_patients_and_their_states() -> None:
    """The README's patient table is what a new user tries first: keep it true."""
    seed()
    readme = (USERS_FILE.parent.parent / "README.md").read_text(encoding="utf-8")
    rows = dict(re.findall(r"^\| `(\d{11})` \| (.+?) \|$", readme, flags=re.M))
    assert len(rows) == 9
    fastlege_hpr = json.loads(USERS_FILE.read_text(encoding="utf-8"))["users"]["fastlege"]["hpr"]
    for national_id, text in rows.items():
        patient = Patient.objects.get(national_id=national_id)
        kinds = set(patient.privacy_choices.values_list("kind", flat=True))
        if text.startswith("reservation"):
            assert kinds == {PrivacyChoiceKind.RESERVATION}
        elif text.startswith("restriction"):
            assert kinds == {PrivacyChoiceKind.RESTRICTION}
        elif text.startswith("has blocked"):
            blocked = patient.privacy_choices.get(kind=PrivacyChoiceKind.BLOCKED_CLINICIAN).blocked_hpr_number
            assert f"HPR {blocked}" in text
        elif "strengt fortrolig" in text:
            assert patient.address_protection == AddressProtection.STRENGT_FORTROLIG
        elif "fortrolig" in text:
            assert patient.address_protection == AddressProtection.FORTROLIG
        elif text.startswith("not on the list"):
            assert patient.fastlege_hpr_number != fastlege_hpr and not kinds
        else:
            assert patient.fastlege_hpr_number == fastlege_hpr and not kinds


def test_readme_rule_examples_hold_in_the_demo_data() -> None:
    # The default document counts: NHN's test patients then get exactly the documents
    # `make run` gives them (the generator is seeded; fewer synthetic patients only
    # shortens the tail).
    call_command("seed_demo", patients=6, min_documents=10, max_documents=50, stdout=StringIO())
    users = json.loads(USERS_FILE.read_text(encoding="utf-8"))["users"]

    def client_for(username: str) -> Client:
        claims = users[username]
        return login(
            Client(),
            User.objects.get(pid=claims["pid"]),
            Organisation.objects.get(orgnr=claims["orgnr_parent"]),
        )

    # Source rules, as the nursing home nurse sees them.
    nurse = client_for("sykepleier")
    refused = nurse.post("/pasient/sok/", {"national_id": NHN_TEST_PATIENTS[0]})
    handle = refused["Location"].split("/")[2]
    assert nurse.post(f"/pasient/{handle}/grunnlag/", {"basis": "UNNTAK"}).status_code == 400
    nurse.post(f"/pasient/{handle}/grunnlag/", {"basis": "SAMTYKKE"})
    page = nurse.get(f"/pasient/{handle}/?size=50").content.decode()
    assert 'data-testid="open-document"' in page and 'data-testid="not-openable"' in page
    # Helse Nord lists only to those who may open: none of its rows, and the list says so
    # by the source's name, without a count (issue 13 item 4).
    assert "<td>Universitetssykehuset Nord-Norge HF</td>" not in page
    assert (
        "Universitetssykehuset Nord-Norge HF viser dokumentlisten bare til helsepersonell som kan åpne dokumentene."
        in page
    )
    assert "Oslo universitetssykehus" in page and "Helse Bergen" in page
    # The first NHN test patient's five henvisninger older than their one-year window.
    doctor = client_for("fastlege")
    doctor_handle = lookup_and_attest(doctor, national_id=NHN_TEST_PATIENTS[0])
    doctor_page = doctor.get(f"/pasient/{doctor_handle}/?size=50").content.decode()
    assert "5 henvisninger eldre enn 1 år vises ikke (kjernejournalforskriften)." in doctor_page
    assert "Universitetssykehuset Nord-Norge HF viser dokumentlisten" not in doctor_page

    # Blocked documents are counted for the second NHN test patient.
    fastlege = client_for("fastlege")
    handle = lookup_and_attest(fastlege, national_id=NHN_TEST_PATIENTS[1])
    assert 'data-count="1"' in fastlege.get(f"/pasient/{handle}/").content.decode()


def test_the_remote_source_has_the_demo_patients_documents(tmp_path) -> None:
    """`make run` seeds the test FHIR server with St. Olavs hospital HF's documents: a dozen
    for NHN's first test patient (one blocked, one without a content type), 260 for the
    second, so the portal pages through the source."""

    from pjd_portal.documents.management.commands.seed_demo import REMOTE_SOURCE_ORGNR

    seed()
    assert not DocumentReference.objects.filter(source__organisation__orgnr=REMOTE_SOURCE_ORGNR).exists()
    path = tmp_path / "seed.json"
    out = StringIO()
    call_command("seed_remote_demo", str(path), stdout=out)
    bundle = json.loads(path.read_text(encoding="utf-8"))
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "batch"
    patients = {
        e["fullUrl"]: e["resource"]["identifier"][0]["value"]
        for e in bundle["entry"]
        if e["resource"]["resourceType"] == "Patient"
    }
    references = [
        e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "DocumentReference"
    ]
    per_patient: dict[str, list[dict[str, Any]]] = {}
    for reference in references:
        per_patient.setdefault(patients[reference["subject"]["reference"]], []).append(reference)
        assert reference["custodian"]["identifier"]["value"] == REMOTE_SOURCE_ORGNR
    first, second = NHN_TEST_PATIENTS[0], NHN_TEST_PATIENTS[1]
    assert len(per_patient[first]) == 12 and len(per_patient[second]) == 260
    codes = [r["securityLabel"][0]["coding"][0]["code"] for r in per_patient[first]]
    assert codes.count("NORS") == 1
    assert sum("contentType" not in r["content"][0]["attachment"] for r in per_patient[first]) == 1
    assert f"Wrote {len(references)} documents" in out.getvalue()
    # Written once: a second run changes nothing.
    again = StringIO()
    call_command("seed_remote_demo", str(path), stdout=again)
    assert "nothing changed" in again.getvalue()
