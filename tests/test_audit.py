"""The access-event table is append-only: in the ORM and in the database itself."""

from __future__ import annotations

import pytest
from django.db import DatabaseError, connection, transaction

from pjd_portal.accounts.audit_context import actor_of, point_of_care_for, point_of_care_of
from pjd_portal.auditlog import events as kinds
from pjd_portal.auditlog.models import AccessEvent, AppendOnlyError
from pjd_portal.auditlog.services import AuditWriteFailed, record_event, record_event_committed
from tests.builders import request_as


@pytest.fixture
def event(world):
    request = request_as(world.fastlege)
    return record_event(
        kinds.kind("patient_lookup")(outcome="granted", patient=world.patient),
        actor=actor_of(request),
        where=point_of_care_of(request),
    )


def test_event_copies_who_and_whom(event, world):
    assert event.actor_pid == world.fastlege.pid
    assert event.actor_hpr_number == "910000011"
    assert event.actor_authorizations == "LE"
    assert event.patient_national_id == world.patient.national_id


def test_raw_sql_update_is_refused_by_the_database(event):
    with pytest.raises(DatabaseError), transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("UPDATE audit_accessevent SET outcome = 'denied' WHERE id = %s", [event.pk])
    event.refresh_from_db()
    assert event.outcome == "granted"


def test_raw_sql_delete_is_refused_by_the_database(event):
    with pytest.raises(DatabaseError), transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM audit_accessevent WHERE id = %s", [event.pk])
    assert AccessEvent.objects.filter(pk=event.pk).exists()


@pytest.mark.postgres
def test_truncate_is_refused_on_postgresql(event):
    with pytest.raises(DatabaseError), transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("TRUNCATE audit_accessevent CASCADE")
    assert AccessEvent.objects.filter(pk=event.pk).exists()


def test_orm_refuses_update_and_delete(event):
    with pytest.raises(AppendOnlyError):
        AccessEvent.objects.filter(pk=event.pk).update(outcome="denied")
    with pytest.raises(AppendOnlyError):
        AccessEvent.objects.filter(pk=event.pk).delete()
    with pytest.raises(AppendOnlyError):
        event.delete()
    event.outcome = "denied"
    with pytest.raises(AppendOnlyError):
        event.save()


@pytest.mark.django_db(transaction=True)
def test_committed_write_is_visible_to_another_connection_before_returning(world):
    """record_event_committed returns only after COMMIT: a second connection sees the row."""

    from django.db import connections

    request = request_as(world.fastlege)
    event = record_event_committed(
        kinds.kind("document_open")(outcome="granted"),
        actor=actor_of(request),
        where=point_of_care_of(request),
    )
    other = connections.create_connection("default")
    try:
        with other.cursor() as cursor:
            cursor.execute("SELECT COUNT(*) FROM audit_accessevent WHERE id = %s", [event.pk])
            assert cursor.fetchone()[0] == 1
    finally:
        other.close()


@pytest.mark.django_db(transaction=True)
def test_committed_write_refuses_to_run_inside_an_open_transaction(world):
    request = request_as(world.fastlege)
    with pytest.raises(RuntimeError), transaction.atomic():
        record_event_committed(
            kinds.kind("document_open")(outcome="granted"),
            actor=actor_of(request),
            where=point_of_care_of(request),
        )


def test_database_failure_becomes_audit_write_failed(world, monkeypatch):
    def broken(*args, **kwargs):
        raise DatabaseError("connection lost")

    monkeypatch.setattr(AccessEvent, "save", broken)
    request = request_as(world.fastlege)
    with pytest.raises(AuditWriteFailed):
        record_event(
            kinds.kind("document_open")(outcome="granted"),
            actor=actor_of(request),
            where=point_of_care_of(request),
        )


@pytest.mark.parametrize(
    ("proxies", "forwarded", "expected"),
    [
        (0, "203.0.113.5", "127.0.0.1"),  # no proxy of ours: the header is the client's own words
        (1, "203.0.113.5", "203.0.113.5"),
        (1, "198.51.100.9, 203.0.113.5", "203.0.113.5"),  # the client wrote the first one itself
        (2, "198.51.100.9, 203.0.113.5, 10.1.2.3", "203.0.113.5"),
        (2, "203.0.113.5", "203.0.113.5"),
        (1, "not-an-address", "127.0.0.1"),
        (1, "", "127.0.0.1"),
        (1, "2001:db8:0:0:0:0:0:1", "2001:db8::1"),
    ],
)
def test_the_client_address_behind_our_proxies_is_the_one_the_outermost_saw(
    world, settings, proxies, forwarded, expected
):
    settings.TRUSTED_PROXY_COUNT = proxies
    request = request_as(world.fastlege, HTTP_X_FORWARDED_FOR=forwarded, REMOTE_ADDR="127.0.0.1")
    event = record_event(
        kinds.kind("patient_lookup")(outcome="granted"),
        actor=actor_of(request),
        where=point_of_care_of(request),
    )
    assert AccessEvent.objects.get(pk=event.pk).client_ip == expected


# --- where: the point of care and its legal entity ---------------------------------------


def _event_for(world, organisation):
    request = request_as(world.fastlege)
    return record_event(
        kinds.kind("document_list")(outcome="granted", patient=world.patient),
        actor=actor_of(request),
        where=point_of_care_for(organisation),
    )


def test_an_event_at_a_sub_unit_records_the_point_of_care_and_its_legal_entity(world):
    from tests.builders import add_sub_unit

    unit = add_sub_unit(world)
    stored = AccessEvent.objects.get(pk=_event_for(world, unit).pk)
    assert (stored.organisation_orgnr, stored.organisation_name) == ("974589095", "OUS, Akuttmottaket")
    assert (stored.legal_entity_orgnr, stored.legal_entity_name) == (
        world.hospital.orgnr,
        world.hospital.name,
    )


def test_an_organisation_without_a_parent_is_its_own_legal_entity(world):
    stored = AccessEvent.objects.get(pk=_event_for(world, world.gp_office).pk)
    assert stored.legal_entity_orgnr == stored.organisation_orgnr == world.gp_office.orgnr


def test_events_from_before_the_legal_entity_keep_their_hashes(world):
    """Fields added to the hash later are hashed only when set: an event without them
    hashes exactly as it did before they existed (in the retired whole-JSON scheme the
    patient chains used then, and in the content digest of the one scheme now)."""
    import hashlib
    import json

    from pjd_portal.auditlog import chain

    event = AccessEvent.objects.get(pk=_event_for(world, None).pk)
    assert event.legal_entity_orgnr == ""
    old_fields = [f for f in chain.HASHED_FIELDS if f not in chain.LATER_FIELDS]
    content = {name: getattr(event, name) for name in old_fields}
    content["occurred_at"] = event.occurred_at.isoformat(timespec="microseconds")
    content["event_id"] = str(event.event_id)
    content["client_ip"] = event.client_ip or ""
    before = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    assert chain.whole_json_hash(event) == hashlib.sha256(before.encode()).hexdigest()
    without_place = {k: v for k, v in content.items() if k not in chain.PLACE_FIELDS}
    digest_before = json.dumps(
        without_place, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
    )
    assert chain.content_digest(event)[1] == hashlib.sha256(digest_before.encode()).hexdigest()
    assert chain.entry_hash(event) == event.entry_hash


def test_a_patient_or_document_the_log_refers_to_cannot_be_deleted(world):
    """No database foreign keys on the log (migration 0015), but the ORM still refuses."""
    from django.db.models import ProtectedError

    from tests.builders import add_document

    doc = add_document(world)
    request = request_as(world.fastlege)
    record_event(
        kinds.kind("document_open")(outcome="granted", patient=world.patient, document=doc),
        actor=actor_of(request),
        where=point_of_care_of(request),
    )
    for referred in (doc, world.patient):
        with pytest.raises(ProtectedError) as refused:
            referred.delete()
        assert any(isinstance(o, AccessEvent) for o in refused.value.protected_objects)
