"""The group writer (audit/group_commit.py): many requests' events share a commit, and each
request still returns only once its own event is committed (PostgreSQL, where it is on).

What a clinician sees is checked too: when the writer cannot commit, the document open is
the clear 503 page with no document bytes, and nothing claims the document was shown.
"""

from __future__ import annotations

import threading
import time

import pytest
from django.db import DatabaseError, connections, transaction
from django.http import HttpRequest
from django.test import Client

from pjd_portal.accounts.audit_context import actor_of, point_of_care_for, point_of_care_of
from pjd_portal.auditlog import chain, group_commit, writer
from pjd_portal.auditlog import events as kinds
from pjd_portal.auditlog.events import Event
from pjd_portal.auditlog.models import AccessEvent
from pjd_portal.auditlog.services import AuditWriteFailed, build_event, record_event, record_event_committed
from tests.builders import (
    FAKE_PDF,
    World,
    add_document,
    add_sub_unit,
    login,
    lookup_and_attest,
    request_as,
    verify,
)

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def _request(world: World) -> HttpRequest:
    return request_as(world.fastlege, HTTP_USER_AGENT="group-commit-test")


def _committed_elsewhere(event_ids: list[int]) -> dict[int, tuple[int, int, str]]:
    """What a second connection (another process, say) sees of these events."""
    other = connections.create_connection("default")
    try:
        with other.cursor() as cursor:
            cursor.execute(
                "SELECT id, chain, chain_seq, entry_hash FROM audit_accessevent WHERE id = ANY(%s)",
                [event_ids],
            )
            return {row[0]: (row[1], row[2], row[3]) for row in cursor.fetchall()}
    finally:
        other.close()


def test_the_group_writer_is_on_for_postgresql(settings):
    assert settings.AUDIT_GROUP_COMMIT is True


def test_concurrent_events_share_commits_and_each_returns_committed(world):
    committer = group_commit.committer()
    commits_before, events_before = committer.commits, committer.events
    returned: list[AccessEvent] = []
    lock = threading.Lock()
    patients = [world.patient, world.other_patient]

    def worker(n: int) -> None:
        request = _request(world)
        try:
            for i in range(25):
                event = record_event_committed(
                    kinds.DOCUMENT_OPEN(
                        outcome="granted", patient=patients[(n + i) % 2], nhn_event_id=f"{n}-{i}"
                    ),
                    actor=actor_of(request),
                    where=point_of_care_of(request),
                )
                with lock:
                    returned.append(event)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(returned) == 400
    # Each event came back with its id and its place in its chain, as committed.
    stored = _committed_elsewhere([e.pk for e in returned])
    assert len(stored) == 400
    for event in returned:
        assert stored[event.pk] == (event.chain, event.chain_seq, event.entry_hash)
    assert committer.events - events_before == 400
    commits = committer.commits - commits_before
    assert commits < 400, "concurrent events did not share commits"
    # One writer, one chain of its own, gap-free from 1 in commit order.
    assert {e.chain for e in returned} == {chain.WRITER_CHAINS.start}
    assert sorted(e.chain_seq for e in returned) == list(range(1, 401))
    ok, printed = verify()
    assert ok and "OK: 400 events" in printed, printed


def test_a_lone_event_is_committed_when_the_call_returns(world):
    event = record_event(
        kinds.kind("patient_lookup")(outcome="granted"),
        actor=actor_of(_request(world)),
        where=point_of_care_of(_request(world)),
    )
    assert event.pk is not None
    assert _committed_elsewhere([event.pk]) == {event.pk: (event.chain, 1, event.entry_hash)}
    assert event.prev_hash == chain.GENESIS


def test_an_event_inside_a_transaction_rolls_back_with_it(world):
    committer = group_commit.committer()
    events_before = committer.events

    class Boom(Exception):
        pass

    with pytest.raises(Boom), transaction.atomic():
        record_event(
            kinds.kind("patient_lookup")(outcome="granted"),
            actor=actor_of(_request(world)),
            where=point_of_care_of(_request(world)),
        )
        raise Boom
    assert not AccessEvent.objects.exists()
    assert committer.events == events_before  # it never went to the group writer


def test_one_bad_event_in_a_batch_fails_alone(world):
    """A value the database refuses fails its own request; the rest of the batch commits."""

    events = [
        build_event(
            kinds.kind("patient_lookup")(outcome="granted", patient=world.patient),
            actor=actor_of(_request(world)),
            where=point_of_care_of(_request(world)),
        )
        for _ in range(5)
    ]
    events[2].actor_hpr_number = "x" * 50  # longer than the column: the INSERT fails
    batch = [group_commit._Pending(event) for event in events]
    group_commit.committer()._write_batch(batch)

    assert all(p.is_answered() for p in batch)
    assert [p.error is None for p in batch] == [True, True, False, True, True]
    assert events[2].pk is None
    assert AccessEvent.objects.count() == 4
    ok, printed = verify()
    assert ok, printed


def test_a_failing_commit_raises_audit_write_failed_and_leaves_nothing(world, monkeypatch):
    def broken(*args):
        raise DatabaseError("connection lost")

    monkeypatch.setattr(group_commit, "_append", broken)
    with pytest.raises(AuditWriteFailed):
        record_event_committed(
            kinds.kind("document_open")(outcome="granted"),
            actor=actor_of(_request(world)),
            where=point_of_care_of(_request(world)),
        )
    assert not AccessEvent.objects.exists()


def test_a_writer_that_does_not_answer_in_time_is_audit_write_failed(world, monkeypatch, settings):
    settings.AUDIT_WRITE_TIMEOUT = 0.2
    gate = threading.Event()
    original = group_commit.GroupCommitter._commit

    def slow(self, events, **kwargs):
        gate.wait(5)
        return original(self, events, **kwargs)

    monkeypatch.setattr(group_commit.GroupCommitter, "_commit", slow)
    started = time.monotonic()
    with pytest.raises(AuditWriteFailed):
        record_event_committed(
            kinds.kind("document_open")(outcome="granted"),
            actor=actor_of(_request(world)),
            where=point_of_care_of(_request(world)),
        )
    assert time.monotonic() - started < 2
    gate.set()
    # The event may still land after its request gave up and answered 503: then the log
    # says at once that it was never delivered (a second event), not only that it was opened.
    group_commit.committer().stop()
    opens = AccessEvent.objects.filter(event_type="document_open").order_by("id")
    assert [(e.outcome, e.reason_code) for e in opens] == [("granted", ""), ("interrupted", "not_delivered")]
    assert opens[1].details["unavailable"] == "answer_not_sent"


def test_its_chain_head_held_elsewhere_fails_after_the_lock_timeout_then_recovers(world, settings):
    settings.AUDIT_LOCK_TIMEOUT_MS = 200
    group_commit.committer().stop()  # a fresh writer connection takes the setting
    first = record_event(
        kinds.kind("patient_lookup")(outcome="granted"),
        actor=actor_of(_request(world)),
        where=point_of_care_of(_request(world)),
    )
    other = connections.create_connection("default")
    try:
        other.set_autocommit(False)
        with other.cursor() as cursor:  # say, an operator's transaction left open
            cursor.execute("SELECT seq FROM audit_auditchainhead WHERE chain = %s FOR UPDATE", [first.chain])
        started = time.monotonic()
        with pytest.raises(AuditWriteFailed):
            record_event(
                kinds.kind("patient_lookup")(outcome="granted"),
                actor=actor_of(_request(world)),
                where=point_of_care_of(_request(world)),
            )
        assert time.monotonic() - started < 3
        other.rollback()
    finally:
        other.close()
    again = record_event(
        kinds.kind("patient_lookup")(outcome="granted"),
        actor=actor_of(_request(world)),
        where=point_of_care_of(_request(world)),
    )
    assert again.pk is not None
    ok, printed = verify()
    assert ok, printed
    assert AccessEvent.objects.count() == 2


def test_each_writer_connection_holds_a_chain_of_its_own(world):
    """Two writers (two processes, say) never share a chain: the second takes the next."""

    mine = record_event(
        kinds.kind("patient_lookup")(outcome="granted"),
        actor=actor_of(_request(world)),
        where=point_of_care_of(_request(world)),
    )
    other = group_commit.GroupCommitter()
    try:
        theirs = build_event(
            kinds.kind("patient_lookup")(outcome="granted"),
            actor=actor_of(_request(world)),
            where=point_of_care_of(_request(world)),
        )
        other.write(theirs)
    finally:
        other.stop()
    assert mine.chain == chain.WRITER_CHAINS.start
    assert theirs.chain == chain.WRITER_CHAINS.start + 1 and theirs.chain_seq == 1
    # The first writer's chain goes on where it was.
    again = record_event(
        kinds.kind("patient_lookup")(outcome="granted"),
        actor=actor_of(_request(world)),
        where=point_of_care_of(_request(world)),
    )
    assert (again.chain, again.chain_seq, again.prev_hash) == (mine.chain, 2, mine.entry_hash)
    ok, printed = verify()
    assert ok, printed


def _rogue_append(event, head):
    """An append to a writer's chain from another connection (a bug, a rogue client)."""
    conn = connections["default"]
    conn.ensure_connection()
    conn.connection.pgconn.prepare(group_commit._APPEND_NAME, group_commit._APPEND.encode())
    group_commit._append(conn, head, [event], [chain.content_digest(event)])


def test_a_head_moved_behind_the_writers_back_fails_the_batch_and_is_reloaded(world):
    """The database moves a chain's head only from where its writer last left it: an
    append by anyone else makes the writer reload, never fork the chain."""

    first = record_event(
        kinds.kind("patient_lookup")(outcome="granted"),
        actor=actor_of(_request(world)),
        where=point_of_care_of(_request(world)),
    )
    rogue = build_event(
        kinds.kind("patient_lookup")(outcome="granted"),
        actor=actor_of(_request(world)),
        where=point_of_care_of(_request(world)),
    )
    _rogue_append(rogue, group_commit._Head(chain=first.chain, seq=1, last_hash=first.entry_hash))
    # The writer's next batch is refused, then written again with the reloaded head.
    second = record_event(
        kinds.kind("patient_lookup")(outcome="granted"),
        actor=actor_of(_request(world)),
        where=point_of_care_of(_request(world)),
    )
    assert (second.chain, second.chain_seq, second.prev_hash) == (first.chain, 3, rogue.entry_hash)
    ok, printed = verify()
    assert ok and "OK: 3 events" in printed, printed


def test_the_head_moves_only_from_the_exact_link_seq_and_hash(world):
    first = record_event(
        kinds.kind("patient_lookup")(outcome="granted"),
        actor=actor_of(_request(world)),
        where=point_of_care_of(_request(world)),
    )
    wrong = build_event(
        kinds.kind("patient_lookup")(outcome="granted"),
        actor=actor_of(_request(world)),
        where=point_of_care_of(_request(world)),
    )
    import psycopg

    with pytest.raises(psycopg.errors.SerializationFailure, match="no longer at seq 1"):
        _rogue_append(wrong, group_commit._Head(chain=first.chain, seq=1, last_hash="f" * 64))
    assert AccessEvent.objects.count() == 1
    ok, printed = verify()
    assert ok, printed


def test_a_database_that_does_not_answer_times_the_writer_out(world, settings):
    """A network that swallows packets must not hold the writer (and every request of its
    process) until TCP gives up: the wait has a deadline of its own."""
    from django.db import connections as conns

    settings.AUDIT_STATEMENT_TIMEOUT_MS = 100  # deadline: 0.1 s + 1 s
    conn = conns["default"]
    conn.ensure_connection()
    started = time.monotonic()
    import psycopg

    with pytest.raises(psycopg.OperationalError, match="timed out waiting for the database"):
        group_commit._timed(conn.connection, lambda pg: pg.send_query(b"SELECT pg_sleep(5)"))
    assert 1.0 <= time.monotonic() - started < 3
    conn.close()


def test_what_is_stored_is_what_was_hashed_for_awkward_content(world):
    """Floats jsonb would rewrite, keys of mixed types, text overflowing its column with
    spaces (PostgreSQL would cut them silently), IPv6 and IPv4-mapped client addresses."""
    request = _request(world)
    events = [
        record_event(
            # Built directly: the registry would refuse these made-up detail keys.
            Event(
                kind=kinds.PATIENT_LOOKUP,
                outcome="granted",
                reason_code="invalid_x" + " " * 60,
                details={"f": 1e20, "z": -0.0, "n": [0.1, {"k": 2.5}], "u": "\u2028 æøå", 1: "one"},  # type: ignore[dict-item,list-item]
            ),
            actor=actor_of(request),
            where=point_of_care_of(request),
        )
    ]
    for address in ("2001:db8::1", "::ffff:10.0.0.1"):
        request = request_as(world.fastlege, REMOTE_ADDR=address)
        events.append(
            record_event(
                kinds.kind("patient_lookup")(outcome="granted"),
                actor=actor_of(request),
                where=point_of_care_of(request),
            )
        )
    stored = AccessEvent.objects.get(pk=events[0].pk)
    assert stored.details["1"] == "one" and stored.details["f"] == "1e+20"
    assert len(stored.reason_code) == 50
    ok, printed = verify()
    assert ok and "OK: 3 events" in printed, printed


def test_every_field_the_group_writer_is_given_comes_back_as_it_went_in(world):
    """The group writer inserts the hashed JSON: a column it did not carry would come back
    as its default (tests/test_audit_integrity.py ties the field lists; this ties the data)."""
    request = _request(world)
    event = build_event(
        kinds.DOCUMENT_OPEN(outcome="granted"), actor=actor_of(request), where=point_of_care_of(request)
    )
    for field in AccessEvent._meta.concrete_fields:
        if field.attname in chain.CONTENT_FIELDS and field.get_internal_type() == "CharField":
            setattr(event, field.attname, ("x" + field.attname)[: field.max_length])
    event.actor_user_id, event.patient_id, event.document_id, event.attest_id = 11, 12, 13, 14
    event.flagged_for_review, event.client_ip, event.details = True, "192.0.2.7", {"k": ["v", 1]}
    event.reason_text = "fritekst"
    writer.write(event)
    stored = AccessEvent.objects.get(pk=event.pk)
    for field in AccessEvent._meta.concrete_fields:
        assert getattr(stored, field.attname) == getattr(event, field.attname), field.attname


def test_the_writer_reconnects_after_its_connection_is_killed(world):
    first = record_event(
        kinds.kind("patient_lookup")(outcome="granted"),
        actor=actor_of(_request(world)),
        where=point_of_care_of(_request(world)),
    )
    with connections["default"].cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
        )
    # The dead connection fails the batch; the event is retried alone on a new one.
    second = record_event(
        kinds.kind("patient_lookup")(outcome="granted"),
        actor=actor_of(_request(world)),
        where=point_of_care_of(_request(world)),
    )
    assert second.pk is not None and second.pk != first.pk
    assert AccessEvent.objects.count() == 2


def test_a_document_open_whose_event_cannot_commit_is_a_503_without_the_document(world, monkeypatch):
    doc = add_document(world)
    client = login(Client(), world.fastlege, world.gp_office)
    handle = lookup_and_attest(client)
    opened = client.get(f"/pasient/{handle}/dokument/{doc.document_id}/")
    assert opened.status_code == 200 and b"".join(opened.streaming_content) == FAKE_PDF  # type: ignore[attr-defined]

    def broken(*args):
        raise DatabaseError("disk full")

    monkeypatch.setattr(group_commit, "_append", broken)
    response = client.get(f"/pasient/{handle}/dokument/{doc.document_id}/")
    assert response.status_code == 503
    body = response.content
    assert FAKE_PDF not in body and response["Content-Type"].startswith("text/html")
    assert "no-store" in response["Cache-Control"]
    assert AccessEvent.objects.filter(event_type="document_open", outcome="granted").count() == 1


def test_the_production_role_can_run_the_group_writer_and_still_not_rewrite_the_log(world):
    """deploy/postgres/portal_role.sql: the group writer's functions work under the role
    with only INSERT and SELECT on the log (they run with the caller's rights)."""

    import uuid

    from tests.test_audit_integrity import ROOT

    role = f"pjd_app_test_{uuid.uuid4().hex[:8]}"
    script = (ROOT / "deploy" / "postgres" / "portal_role.sql").read_text(encoding="utf-8")
    admin = connections.create_connection("default")
    app = connections.create_connection("default")
    try:
        with admin.cursor() as cursor:
            cursor.execute(f"CREATE ROLE {role} NOLOGIN")
            cursor.execute(script.replace(":'app_role'", f"'{role}'").replace(":app_role", role))
        with app.cursor() as cursor:
            cursor.execute(f"SET ROLE {role}")
            cursor.execute("SELECT * FROM audit_claim_writer_chain(1000, 1999)")
            claimed, seq, last = cursor.fetchone()
            event = build_event(
                kinds.kind("patient_lookup")(outcome="granted"),
                actor=actor_of(_request(world)),
                where=point_of_care_of(_request(world)),
            )
            canonical, digest = chain.content_digest(event)
            event.entry_hash = chain.link_hash(last, claimed, seq + 1, digest)
            row = (
                f'{canonical[:-1]},"chain":{claimed},"chain_seq":{seq + 1},"prev_hash":"{last}",'
                f'"entry_hash":"{event.entry_hash}"}}'
            )
            cursor.execute(
                "SELECT new_id FROM audit_append_batch(%s::smallint, %s::bigint, %s::varchar, %s::varchar, %s::jsonb)",
                [claimed, seq, last, event.entry_hash, f"[{row}]"],
            )
            [(new_id,)] = cursor.fetchall()
            with pytest.raises(DatabaseError, match="permission denied"):
                cursor.execute("UPDATE audit_accessevent SET outcome = 'denied'")
    finally:
        app.close()
        with admin.cursor() as cursor:
            cursor.execute(f"DROP OWNED BY {role}")
            cursor.execute(f"DROP ROLE {role}")
        admin.close()
    assert AccessEvent.objects.filter(pk=new_id, outcome="granted").exists()
    ok, printed = verify()
    assert ok, printed


def test_the_group_writer_records_the_legal_entity_of_a_sub_unit(world):
    unit = add_sub_unit(world)
    at_unit = record_event(
        kinds.kind("document_list")(outcome="granted"),
        actor=actor_of(_request(world)),
        where=point_of_care_for(unit),
    )
    alone = record_event(
        kinds.kind("document_list")(outcome="granted"),
        actor=actor_of(_request(world)),
        where=point_of_care_for(None),
    )
    rows = {e.pk: e for e in AccessEvent.objects.filter(pk__in=[at_unit.pk, alone.pk])}
    assert rows[at_unit.pk].legal_entity_orgnr == world.hospital.orgnr
    assert rows[at_unit.pk].legal_entity_name == world.hospital.name
    assert rows[alone.pk].legal_entity_orgnr == ""  # written without the key: the column's empty value
    ok, printed = verify()
    assert ok, printed


def test_with_the_database_gone_a_batch_fails_at_once_not_event_by_event(world, monkeypatch):
    """Two tries (the second on a fresh connection), then every request is answered: no
    connect timeout waited out per event."""
    from django.db import OperationalError

    calls = []

    def unreachable(self, batch, **kwargs):
        calls.append(len(batch))
        raise OperationalError("connection refused")

    monkeypatch.setattr(group_commit.GroupCommitter, "_commit", unreachable)
    batch = [
        group_commit._Pending(
            build_event(
                kinds.kind("patient_lookup")(outcome="granted"),
                actor=actor_of(_request(world)),
                where=point_of_care_of(_request(world)),
            )
        )
        for _ in range(5)
    ]
    group_commit.GroupCommitter()._write_batch(batch)
    assert calls == [5, 5]
    assert all(p.is_answered() and isinstance(p.error, OperationalError) for p in batch)


def test_verify_while_writers_append_sees_one_view_and_no_false_break(world):
    stop = threading.Event()
    written = []

    def writer() -> None:
        request = _request(world)
        try:
            while not stop.is_set():
                written.append(
                    record_event(
                        kinds.kind("patient_lookup")(outcome="granted"),
                        actor=actor_of(request),
                        where=point_of_care_of(request),
                    )
                )
        finally:
            connections.close_all()

    threads = [threading.Thread(target=writer) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(0.3)
        results = [verify() for _ in range(5)]
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert all(ok for ok, _ in results), [printed for ok, printed in results if not ok]
    assert len(written) > 50


def _open_event(world: World) -> AccessEvent:
    return build_event(
        kinds.kind("document_open")(outcome="granted"),
        actor=actor_of(_request(world)),
        where=point_of_care_of(_request(world)),
    )


def _answer_lost_after_commit(monkeypatch: pytest.MonkeyPatch, *, then_down: bool) -> list[str]:
    """The first COMMIT happens and its answer is lost (a crash right after it); the retry's
    connection then works, or (`then_down`) fails as a database still starting up."""
    from django.db import OperationalError

    original = group_commit._append
    calls: list[str] = []

    def lost(conn, head, events, contents):
        calls.append("append")
        original(conn, head, events, contents)
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(group_commit, "_append", lost)
    if then_down:
        original_commit = group_commit.GroupCommitter._commit

        def retry_down(self, batch, *, maybe_written=False):
            if maybe_written:
                calls.append("retry")
                raise OperationalError("the database system is starting up")
            return original_commit(self, batch)

        monkeypatch.setattr(group_commit.GroupCommitter, "_commit", retry_down)
    return calls


def test_a_commit_whose_answer_was_lost_is_found_on_retry_not_written_twice(world, monkeypatch):
    calls = _answer_lost_after_commit(monkeypatch, then_down=False)
    pending = group_commit._Pending(_open_event(world))
    committer = group_commit.GroupCommitter()
    committer._write_batch([pending])
    assert calls == ["append"]  # the retry found it: not appended again
    assert pending.is_answered() and pending.error is None and pending.event.pk is not None
    assert AccessEvent.objects.filter(event_type="document_open").count() == 1
    committer._reset_connection()


def test_an_open_committed_while_its_request_was_told_it_failed_gets_its_second_event(world, monkeypatch):
    """The request answered the 503 page (no document), the log holds the granted open:
    once the database can say so, the writer adds `interrupted`."""
    calls = _answer_lost_after_commit(monkeypatch, then_down=True)
    pending = group_commit._Pending(_open_event(world))
    committer = group_commit.GroupCommitter()
    committer._write_batch([pending])
    assert calls == ["append", "retry"]
    assert pending.is_answered() and pending.error is not None  # the request showed nothing
    monkeypatch.undo()  # the database is back

    later = group_commit._Pending(
        build_event(
            kinds.kind("patient_lookup")(outcome="granted"),
            actor=actor_of(_request(world)),
            where=point_of_care_of(_request(world)),
        )
    )
    committer._resolve_in_doubt()
    batch, committer._follow_ups = [*committer._follow_ups, later], []
    committer._write_batch(batch)
    assert later.error is None
    opens = AccessEvent.objects.filter(event_type="document_open").order_by("id")
    assert [(e.outcome, e.reason_code) for e in opens] == [("granted", ""), ("interrupted", "not_delivered")]
    assert opens[1].details["unavailable"] == "answer_not_sent"
    assert opens[1].actor_user_id == opens[0].actor_user_id
    assert verify()[0]
    committer._reset_connection()
