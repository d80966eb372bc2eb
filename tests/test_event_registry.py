"""The event registry (auditlog/events.py): one entry per type, and every reader uses it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pjd_portal.accounts.audit_context import actor_of, point_of_care_of
from pjd_portal.auditlog import events as kinds
from pjd_portal.auditlog.actor import Actor
from pjd_portal.auditlog.events import Balp, Outcome
from pjd_portal.auditlog.models import AccessEvent
from pjd_portal.auditlog.services import record_event
from pjd_portal.logreading import fhir, risk, selectors
from tests.builders import request_as

ROOT = Path(__file__).resolve().parent.parent


def test_a_detail_the_type_does_not_know_is_refused_before_anything_is_written():
    with pytest.raises(TypeError, match="records no detail"):
        kinds.DOCUMENT_OPEN(outcome=Outcome.GRANTED, handl="typo")


def test_a_patient_on_a_type_that_carries_none_is_refused(world):
    with pytest.raises(TypeError, match="carries no patient"):
        kinds.ROLE_GRANTED(outcome=Outcome.GRANTED, patient=world.patient)
    with pytest.raises(TypeError, match="carries no document"):
        kinds.LOGIN(outcome=Outcome.GRANTED, source_orgnr="974557746")
    with pytest.raises(TypeError, match="unknown outcome"):
        kinds.LOGIN(outcome="maybe")


def test_names_are_unique_and_fit_the_column():
    names = [kind.name for kind in kinds.KINDS.values()]
    assert len(names) == len(set(names)) >= 23
    column = AccessEvent._meta.get_field("event_type")
    assert column.max_length is not None and all(len(name) <= column.max_length for name in names)
    # The column has no choices: a new type is an entry here, not a migration.
    assert not column.choices


def test_every_type_has_a_balp_pattern_and_a_label():
    patterns = {fhir.PATIENT_READ, fhir.PATIENT_QUERY, fhir.PATIENT_CREATE, fhir.LOGIN, fhir.LOGOUT}
    for kind in kinds.KINDS.values():
        assert str(kind.label) and str(kind.label) != kind.name
        if kind.balp != Balp.AS_REFUSED:
            assert kind.balp in fhir._BY_BALP, kind.name
        if kind.patient_access:
            # An access to a patient follows one of BALP's patient patterns.
            assert kind.balp == Balp.AS_REFUSED or fhir._BY_BALP[kind.balp] in patterns, kind.name


def test_the_patients_log_and_the_risk_signals_read_the_registry():
    assert selectors.PATIENT_LOG_EVENT_TYPES == {k.name for k in kinds.KINDS.values() if k.patient_access}
    assert risk.CLINICAL_EVENT_TYPES == selectors.PATIENT_LOG_EVENT_TYPES
    assert risk.CONTACT_EVENT_TYPES == {k.name for k in kinds.KINDS.values() if k.contact}
    assert kinds.ACCESS_DENIED.name not in risk.CONTACT_EVENT_TYPES
    # Reading the log and the admin's work are no accesses to the patient's records in the
    # patient's own log. The privacy officer's page is: it shows who the patient is and
    # their documents' titles (as when it was logged as a lookup, before the registry).
    assert kinds.PRIVACY_CHOICES_VIEWED.patient_access
    for kind in (
        kinds.PATIENT_LOG_READ,
        kinds.DOCUMENT_BLOCKED,
        kinds.LOG_SEARCH,
    ):
        assert not kind.patient_access


def test_an_event_row_copies_the_actor_and_point_of_care(world):
    request = request_as(world.fastlege, REMOTE_ADDR="10.1.2.3", HTTP_USER_AGENT="EPJ\x00 browser")
    row = record_event(
        kinds.LOGIN(outcome=Outcome.GRANTED, claimed_orgnr="310900001"),
        actor=actor_of(request, world.fastlege),
        where=point_of_care_of(request),
    )
    stored = AccessEvent.objects.get(pk=row.pk)
    assert (stored.actor_pid, stored.actor_hpr_number, stored.client_ip) == (
        world.fastlege.pid,
        world.fastlege.hpr_number,
        "10.1.2.3",
    )
    assert stored.user_agent == "EPJ browser"  # a NUL cannot be stored: taken out
    assert stored.details == {"claimed_orgnr": "310900001"}
    assert stored.get_event_type_display() == str(kinds.LOGIN.label)


def test_a_system_job_is_an_actor_without_a_person():
    actor = Actor.system("deactivate_unused_accounts")
    assert (actor.user_id, actor.pid, actor.client_ip) == (None, "", None)
    assert actor.request_id == "command:deactivate_unused_accounts"


def test_a_type_retired_from_the_registry_still_shows_as_stored():
    assert kinds.label("a_type_no_longer_written") == "a_type_no_longer_written"


def test_no_migration_is_missing():
    result = subprocess.run(
        [sys.executable, "manage.py", "makemigrations", "--check", "--dry-run"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_in_production_a_misfit_event_is_still_written_and_the_fault_logged(world, settings, caplog):
    """Strict where the code is tested; in production losing the access (or failing the
    page) over a misnamed detail would be the worse fault."""

    settings.AUDIT_STRICT_EVENTS = False
    with caplog.at_level("ERROR", logger="pjd_portal.auditlog.events"):
        event = kinds.LOGIN(outcome=Outcome.GRANTED, handl="typo")
    assert dict(event.details) == {"handl": "typo"}
    assert "login records no detail ['handl']" in caplog.text and "typo" not in caplog.text
