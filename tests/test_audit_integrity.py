"""Tamper evidence and the database layers of the access log.

Rows are edited, deleted and reordered behind the triggers' back (as a database owner
could) and `verify_audit` must name the first broken link. On PostgreSQL: the table is
partitioned by month, every partition refuses TRUNCATE, and the production role from
`deploy/postgres/portal_role.sql` can only INSERT and SELECT on it.
"""

from __future__ import annotations

import datetime
import uuid
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction
from django.test import RequestFactory
from django.utils import timezone

from pjd_portal.audit import chain
from pjd_portal.audit.models import AccessEvent, AuditChainHead
from pjd_portal.audit.services import record_event
from tests.conftest import World, set_audit_triggers

ROOT = Path(__file__).resolve().parent.parent


def write_events(world: World, n: int, patient=None) -> list[AccessEvent]:
    request = RequestFactory().get("/")
    request.user = world.fastlege
    request.session = {}
    return [
        record_event(
            request=request,
            event_type="patient_lookup",
            outcome="granted",
            patient=patient or world.patient,
            details={"n": i},
        )
        for i in range(n)
    ]


def verify() -> tuple[bool, str]:
    out, err = StringIO(), StringIO()
    try:
        call_command("verify_audit", stdout=out, stderr=err)
    except CommandError as exc:
        return False, err.getvalue() + str(exc)
    return True, out.getvalue()


def behind_the_triggers(sql: str, params: list[object]) -> None:
    set_audit_triggers(False)
    try:
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
    finally:
        set_audit_triggers(True)


@pytest.mark.django_db
def test_events_form_one_chain_per_shard(world):
    events = write_events(world, 3) + write_events(world, 2, patient=world.other_patient)
    same = [e for e in events if e.patient == world.patient]
    assert [e.chain_seq for e in same] == [1, 2, 3]
    assert same[0].prev_hash == chain.GENESIS
    assert same[1].prev_hash == same[0].entry_hash and same[2].prev_hash == same[1].entry_hash
    assert AuditChainHead.objects.get(chain=same[0].chain).last_hash == same[2].entry_hash
    for event in AccessEvent.objects.all():  # what was hashed is what was stored
        assert chain.entry_hash(event) == event.entry_hash
    ok, printed = verify()
    assert ok and "OK: 5 events" in printed


@pytest.mark.django_db
def test_an_edited_row_is_found(world):
    events = write_events(world, 4)
    behind_the_triggers("UPDATE audit_accessevent SET outcome = 'denied' WHERE id = %s", [events[2].pk])
    ok, printed = verify()
    assert not ok
    assert f"seq 3 (event {events[2].event_id}): content does not match its hash (edited)" in printed


@pytest.mark.django_db
def test_a_deleted_row_is_found(world):
    events = write_events(world, 4)
    behind_the_triggers("DELETE FROM audit_accessevent WHERE id = %s", [events[1].pk])
    ok, printed = verify()
    assert not ok and "seq 2 is missing (deleted)" in printed


@pytest.mark.django_db
def test_a_deleted_tail_is_found(world):
    events = write_events(world, 3)
    behind_the_triggers("DELETE FROM audit_accessevent WHERE id = %s", [events[2].pk])
    ok, printed = verify()
    assert not ok and "tail deleted" in printed


@pytest.mark.django_db
def test_reordered_rows_are_found(world):
    """Swapping two events' places (their sequence numbers) breaks the chain."""
    events = write_events(world, 4)
    a, b = events[1], events[2]
    behind_the_triggers("UPDATE audit_accessevent SET chain_seq = -1 WHERE id = %s", [a.pk])
    behind_the_triggers("UPDATE audit_accessevent SET chain_seq = %s WHERE id = %s", [a.chain_seq, b.pk])
    behind_the_triggers("UPDATE audit_accessevent SET chain_seq = %s WHERE id = %s", [b.chain_seq, a.pk])
    ok, printed = verify()
    assert not ok and "seq 2" in printed and "reordered" in printed


@pytest.mark.django_db
def test_a_rewritten_history_with_recomputed_hashes_is_found_at_the_head(world):
    """Even an attacker who recomputes every hash after an edit leaves the head behind
    unless they can also write the head row, and then the tail check still needs it."""
    events = write_events(world, 2)
    last = events[-1]
    behind_the_triggers("DELETE FROM audit_accessevent WHERE id = %s", [last.pk])
    ok, printed = verify()
    assert not ok and "tail deleted" in printed


@pytest.mark.django_db
def test_verify_names_each_broken_chain(world):
    write_events(world, 2)
    others = write_events(world, 2, patient=world.other_patient)
    behind_the_triggers("UPDATE audit_accessevent SET reason_code = 'x' WHERE id = %s", [others[0].pk])
    ok, printed = verify()
    assert not ok
    assert printed.count("BROKEN chain") == 1 and f"chain {others[0].chain}, seq 1" in printed


# --- PostgreSQL: partitions and the production role -----------------------------------


def partitions() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'audit_accessevent'::regclass ORDER BY 1"
        )
        return [row[0] for row in cursor.fetchall()]


@pytest.mark.postgres
@pytest.mark.django_db
def test_the_table_is_partitioned_by_month_with_a_default(world):
    names = partitions()
    this_month = timezone.now().astimezone(datetime.UTC).strftime("audit_accessevent_%Y_%m")
    assert "audit_accessevent_default" in names and this_month in names
    [event] = write_events(world, 1)
    with connection.cursor() as cursor:
        cursor.execute("SELECT tableoid::regclass::text FROM audit_accessevent WHERE id = %s", [event.pk])
        assert cursor.fetchone()[0] == this_month


@pytest.mark.postgres
@pytest.mark.django_db
def test_partitions_are_made_ahead_and_each_refuses_truncate(world):
    out = StringIO()
    call_command("audit_partitions", months_ahead=14, stdout=out)
    ahead = (
        timezone.now().astimezone(datetime.UTC).replace(day=1) + datetime.timedelta(days=14 * 31)
    ).strftime("audit_accessevent_%Y_%m")
    assert ahead in partitions()
    for name in partitions():
        with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(f'TRUNCATE "{name}"')


@pytest.mark.postgres
@pytest.mark.django_db
def test_an_event_far_outside_the_partitions_still_lands(world):
    request = RequestFactory().get("/")
    request.user = world.fastlege
    request.session = {}
    event = record_event(request=request, event_type="login", outcome="granted")
    event_far = AccessEvent(
        event_id=uuid.uuid4(),
        occurred_at=timezone.now() + datetime.timedelta(days=3650),
        event_type="login",
        outcome="granted",
    )
    chain.link(event_far)
    event_far.save(force_insert=True)
    with connection.cursor() as cursor:
        cursor.execute("SELECT tableoid::regclass::text FROM audit_accessevent WHERE id = %s", [event_far.pk])
        assert cursor.fetchone()[0] == "audit_accessevent_default"
    assert event.pk != event_far.pk


@pytest.mark.postgres
@pytest.mark.django_db
def test_the_production_role_may_only_insert_and_select_the_log(world):
    [event] = write_events(world, 1)
    role = f"pjd_app_test_{uuid.uuid4().hex[:8]}"
    script = (ROOT / "deploy" / "postgres" / "portal_role.sql").read_text(encoding="utf-8")
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE ROLE {role} NOLOGIN")
        try:
            cursor.execute(script.replace(":'app_role'", f"'{role}'").replace(":app_role", role))
            cursor.execute(f"SET ROLE {role}")
            # The portal's own work goes on: read, and append through the service.
            cursor.execute("SELECT count(*) FROM audit_accessevent")
            write_events(world, 1)
            for sql in (
                "UPDATE audit_accessevent SET outcome = 'denied'",
                "DELETE FROM audit_accessevent",
                "TRUNCATE audit_accessevent",
                f"TRUNCATE {partitions()[0]}",
                f"UPDATE {partitions()[-1]} SET outcome = 'denied'",
            ):
                with pytest.raises(DatabaseError, match="permission denied"), transaction.atomic():
                    cursor.execute(sql)
        finally:
            cursor.execute("RESET ROLE")
            cursor.execute(f"DROP OWNED BY {role}")
            cursor.execute(f"DROP ROLE {role}")
    assert AccessEvent.objects.filter(pk=event.pk, outcome="granted").exists()


# --- under load: every 200 has exactly one committed event (PostgreSQL) ---------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_opens_reconcile_with_committed_events(world):
    import threading

    from django.db import connections
    from django.test import Client

    from tests.conftest import add_document, login, lookup_and_attest

    doc = add_document(world)
    owner = login(Client(), world.fastlege, world.gp_office)
    handle = lookup_and_attest(owner)
    cookie = owner.cookies[settings.SESSION_COOKIE_NAME].value
    url = f"/pasient/{handle}/dokument/{doc.document_id}/"
    results: list[tuple[int, str]] = []
    lock = threading.Lock()

    def worker() -> None:
        client = Client()
        client.cookies[settings.SESSION_COOKIE_NAME] = cookie
        try:
            for _ in range(10):
                response = client.get(url)
                with lock:
                    results.append((response.status_code, response["X-Request-ID"]))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    ok_ids = [request_id for status, request_id in results if status == 200]
    assert len(results) == 80 and len(ok_ids) == 80, sorted({s for s, _ in results})
    opened = list(
        AccessEvent.objects.filter(event_type="document_open", outcome="granted", document=doc).values_list(
            "request_id", flat=True
        )
    )
    assert sorted(opened) == sorted(ok_ids)  # one committed event per 200, none extra
    ok, printed = verify()  # and the chains stayed whole under concurrent writers
    assert ok, printed
