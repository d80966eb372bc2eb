"""Database round trips per request on the clinician path, counted per view, so that a
regression fails `make test` (issue 14), and the two things that keep them low: the
session read from the shared cache and the person's facts kept in the session.

What is counted: every statement a request sends on its own connection, plus one per
access event it writes. On PostgreSQL in production an event outside a transaction is
committed by the group writer in one statement (shared with other requests' events); in a
test's transaction it is written inline (a savepoint, the chain link, the insert), and
those statements are counted as that one. A transaction of the view's own would count
two more (BEGIN and COMMIT): none of these views opens one.
"""

from __future__ import annotations

import os
import re
import time
import uuid
from typing import Any

import pytest
import time_machine
from django.core.cache import cache, caches
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from pjd_portal.accounts import session_store
from pjd_portal.accounts.facts import SESSION_FACTS_KEY
from pjd_portal.accounts.models import HprAuthorization, Role
from pjd_portal.accounts.roles import grant
from pjd_portal.auditlog.models import AccessEvent
from pjd_portal.documents.models import DocumentContent
from pjd_portal.documents.store import STORE_READ_BYTES
from tests.builders import (
    LIST_PATIENT_ID,
    TEST_REDIS_URL,
    add_document,
    login,
    look_up_patient,
    lookup_and_attest,
    redis_up,
    revoke_roles,
)

# The budget per request: the user row (with the facts version), then what the page needs,
# then its event. `/` is the user row alone.
BUDGET = {
    "home": 1,
    "lookup": 4,  # the user, the patient, the handle, the event
    "card": 2,  # the user, the handle with its facts
    "basis": 4,  # the user, the handle, the attest, the event
    "list": 4,  # the user, the handle, the page with its counts, the event
    "open": 4,  # the user, the handle, the document with its first megabyte, the event
}

_AUDIT_STATEMENT = re.compile(r'audit_auditchainhead|INSERT INTO "audit_accessevent"')
_SAVEPOINT = re.compile(r'^(SAVEPOINT|RELEASE SAVEPOINT|ROLLBACK TO SAVEPOINT) "?(\w+)"?')


def round_trips(captured: list[dict[str, Any]], events_written: int) -> int:
    """Statements on the request's connection, the inline audit writes (each savepoint
    block holding only the chain link and the insert) left out, plus one per event; any
    other savepoint block is a transaction of the view's own: BEGIN and COMMIT."""

    counted = 0
    blocks: list[list[str]] = []
    for query in captured:
        sql = query["sql"]
        savepoint = _SAVEPOINT.match(sql)
        if savepoint and savepoint.group(1) == "SAVEPOINT":
            blocks.append([])
            continue
        if savepoint:
            inner = blocks.pop()
            audit_only = bool(inner) and all(_AUDIT_STATEMENT.search(s) for s in inner)
            if not audit_only:
                counted += 2 + len(inner)
            elif blocks:
                blocks[-1].extend(inner)  # an audit write inside the view's own transaction
            continue
        if blocks:
            blocks[-1].append(sql)
        elif not _AUDIT_STATEMENT.search(sql):
            counted += 1
    return counted + events_written


def measured(send: Any) -> tuple[Any, int]:
    before = AccessEvent.objects.count()
    with CaptureQueriesContext(connection) as ctx:
        response = send()
        if getattr(response, "streaming", False):
            b"".join(response.streaming_content)
    return response, round_trips(ctx.captured_queries, AccessEvent.objects.count() - before)


@pytest.fixture(autouse=True)
def _on_redis(settings: Any) -> None:
    """The cache production has (Redis, PJD_CACHE_URL), under a key prefix of this test's
    own: the budget counts the database's round trips, and the database cache the tests
    otherwise use (the demo's, without Redis) would put every session read among them."""

    if not redis_up():
        if os.environ.get("CI") == "true":
            pytest.fail(f"Redis at {TEST_REDIS_URL} is not reachable")
        pytest.skip("needs Redis at 127.0.0.1:6379")
    settings.CACHES = {
        "default": {
            **settings.CACHES["default"],
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": TEST_REDIS_URL,
            "KEY_PREFIX": f"pjd-test-{uuid.uuid4().hex[:12]}",
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.5, "SOCKET_TIMEOUT": 0.5},
        }
    }


@pytest.fixture(autouse=True)
def _session_cache_awake(monkeypatch: pytest.MonkeyPatch) -> None:
    # Another test's broken cache may have put the session cache to rest in this process.
    monkeypatch.setattr(session_store, "_cache_down_until", 0.0)


@pytest.fixture
def settled(as_fastlege: Client) -> Client:
    """The fastlege after a first request: the facts are kept, the stamp is fresh."""

    assert as_fastlege.get("/").status_code == 200
    return as_fastlege


def test_the_clinician_path_keeps_its_round_trip_budget(settled, world):
    client = settled
    document = add_document(world, title="Epikrise", data=b"%PDF-1.4\n" + b"x" * 200_000)
    for i in range(30):  # a full page, and more
        add_document(world, title=f"Dokument {i}", days_ago=i + 1)

    response, trips = measured(lambda: client.get("/"))
    assert response.status_code == 200 and trips <= BUDGET["home"], trips

    response, trips = measured(lambda: client.post("/pasient/sok/", {"national_id": LIST_PATIENT_ID}))
    assert response.status_code == 302 and trips <= BUDGET["lookup"], trips
    handle = response["Location"].split("/")[2]

    response, trips = measured(lambda: client.get(f"/pasient/{handle}/grunnlag/"))
    assert response.status_code == 200 and trips <= BUDGET["card"], trips

    response, trips = measured(
        lambda: client.post(f"/pasient/{handle}/grunnlag/", {"basis": "UNNTAK", "reason": ""})
    )
    assert response.status_code == 302 and trips <= BUDGET["basis"], trips

    response, trips = measured(lambda: client.get(f"/pasient/{handle}/"))
    assert response.status_code == 200 and trips <= BUDGET["list"], trips
    assert "Dokument 0" in response.content.decode()

    response, trips = measured(lambda: client.get(f"/pasient/{handle}/dokument/{document.document_id}/"))
    assert response.status_code == 200 and trips <= BUDGET["open"], trips


def test_the_list_costs_the_same_for_one_document_and_a_thousand(settled, world):
    add_document(world)
    handle = lookup_and_attest(settled)
    _response, one = measured(lambda: settled.get(f"/pasient/{handle}/"))
    for i in range(120):
        add_document(world, title=f"Dokument {i}", days_ago=i % 300 + 1)
    _response, many = measured(lambda: settled.get(f"/pasient/{handle}/", {"page": 3}))
    assert one == many <= BUDGET["list"]


def test_a_page_past_the_last_is_the_last_page_with_the_same_counts(settled, world):
    for i in range(25):
        add_document(world, title=f"Dokument {i}", days_ago=i + 1)
    handle = lookup_and_attest(settled)
    first = settled.get(f"/pasient/{handle}/", {"page": 2}).content.decode()
    past = settled.get(f"/pasient/{handle}/", {"page": 99}).content.decode()
    assert "Dokument 24" in first and "Dokument 24" in past
    huge = settled.get(f"/pasient/{handle}/", {"page": 10**40})
    assert huge.status_code == 200 and "Dokument 24" in huge.content.decode()


def test_a_document_larger_than_one_read_streams_whole(settled, world):
    data = b"%PDF-1.4\n" + bytes(range(256)) * ((3 * STORE_READ_BYTES) // 256 + 7)
    document = add_document(world, title="Stor", data=data)
    handle = lookup_and_attest(settled)
    response, trips = measured(lambda: settled.get(f"/pasient/{handle}/dokument/{document.document_id}/"))
    assert response.status_code == 200
    # Three more slices were read while it streamed, never the whole at once.
    assert trips == BUDGET["open"] + 3
    again = settled.get(f"/pasient/{handle}/dokument/{document.document_id}/")
    assert b"".join(again.streaming_content) == data


def test_a_document_without_content_is_the_503_page(settled, world):
    document = add_document(world, title="Uten innhold")
    DocumentContent.objects.filter(pk=document.pk).delete()
    handle = lookup_and_attest(settled)
    response = settled.get(f"/pasient/{handle}/dokument/{document.document_id}/")
    assert response.status_code == 503


# --- the session: read from the cache, written only when it changes ------------------------


def test_a_request_within_a_minute_of_the_last_writes_no_session(settled):
    with CaptureQueriesContext(connection) as ctx:
        assert settled.get("/").status_code == 200
    assert not [q for q in ctx.captured_queries if "django_session" in q["sql"]]


def test_the_activity_stamp_moves_once_a_minute_and_the_idle_limit_holds(client, world):
    start = time.time()
    with time_machine.travel(start, tick=False) as clock:
        login(client, world.fastlege, world.gp_office)
        clock.shift(30)
        assert client.get("/").status_code == 200
        assert client.session["pjd_activity_at"] == int(start)  # not moved: under a minute
        clock.shift(40)
        assert client.get("/").status_code == 200
        assert client.session["pjd_activity_at"] == int(start) + 70
        # Idle for 20 minutes after the last stamp: ended, however the stamp was moved.
        clock.shift(20 * 60)
        assert client.get("/")["Location"] == "/sesjon-utlopt/"


def test_a_cache_that_fails_leaves_the_session_to_the_database(settled, monkeypatch):
    def down(*args: Any, **kwargs: Any) -> Any:
        raise ConnectionError("cache down")

    for name in ("get", "set", "delete", "__contains__"):
        monkeypatch.setattr(caches["default"], name, down)
    page = settled.get("/")
    assert page.status_code == 200 and 'data-testid="lookup-form"' in page.content.decode()
    # Left alone a while after the failure: a hanging cache costs one timeout, not two a request.
    assert session_store._cache_resting()
    # A logout that cannot reach the cache is not reported done: the 503 page. The row is
    # gone; once the cache answers, logging out again ends the copy too.
    assert settled.post("/logg-ut/").status_code == 503
    monkeypatch.undo()
    session_store._cache_down_until = 0.0
    assert settled.post("/logg-ut/").status_code in (200, 302)
    assert 'data-testid="login"' in settled.get("/").content.decode()


def test_a_logout_ends_the_session_in_the_cache_as_in_the_database(settled):
    """The cached copy goes with the row: another process reading the same cookie (the
    cache is shared) finds no session."""

    from django.conf import settings
    from django.contrib.sessions.backends.base import SessionBase
    from django.utils.module_loading import import_string

    key = settled.cookies[settings.SESSION_COOKIE_NAME].value
    store_class = import_string(f"{settings.SESSION_ENGINE}.SessionStore")
    assert "_auth_user_id" in store_class(key).load()
    settled.post("/logg-ut/")
    store: SessionBase = store_class(key)
    assert "_auth_user_id" not in store.load()


# --- the person's facts: kept, and gone with the next change -------------------------------


def test_facts_are_kept_and_a_revoked_role_is_gone_from_the_next_request(settled, world):
    assert settled.session[SESSION_FACTS_KEY]["roles"] == [Role.CLINICIAN]
    handle = look_up_patient(settled)
    revoke_roles(world.fastlege, role=Role.CLINICIAN)
    response = settled.get(f"/pasient/{handle}/grunnlag/")
    assert response.status_code in (403, 404)
    assert settled.post("/pasient/sok/", {"national_id": LIST_PATIENT_ID}).status_code in (302, 403)
    assert settled.session[SESSION_FACTS_KEY]["roles"] == []


def test_a_granted_role_and_a_new_authorization_reach_the_next_request(settled, world):
    assert settled.session[SESSION_FACTS_KEY]["authorizations"] == ["LE"]
    HprAuthorization.objects.create(hpr_number=world.fastlege.hpr_number, code="SP")
    grant(world.fastlege, world.gp_office, Role.AUDITOR)
    assert settled.get("/").status_code == 200
    facts = settled.session[SESSION_FACTS_KEY]
    assert facts["authorizations"] == ["LE", "SP"]
    assert set(facts["roles"]) == {Role.CLINICIAN, Role.AUDITOR}


def test_a_user_saved_after_a_role_change_does_not_bring_the_old_facts_back(settled, world):
    stale = type(world.fastlege).objects.get(pk=world.fastlege.pk)
    revoke_roles(world.fastlege, role=Role.CLINICIAN)
    stale.display_name = "Kari Fastlege"
    stale.save()
    settled.get("/")
    assert settled.session[SESSION_FACTS_KEY]["roles"] == []


# --- a lookup and an ordinary basis: the row, then its event (no transaction of their own) --


def _failing_event_write(monkeypatch: pytest.MonkeyPatch) -> None:
    from pjd_portal.access import services
    from pjd_portal.auditlog.services import AuditWriteFailed

    def fails(*args: Any, **kwargs: Any) -> Any:
        raise AuditWriteFailed("OperationalError")

    monkeypatch.setattr(services, "record_event", fails)


def test_a_lookup_whose_event_cannot_be_written_leaves_no_handle(settled, monkeypatch):
    from pjd_portal.access.models import PatientLookup

    before = PatientLookup.objects.count()
    _failing_event_write(monkeypatch)
    response = settled.post("/pasient/sok/", {"national_id": LIST_PATIENT_ID})
    assert response.status_code == 503
    assert PatientLookup.objects.count() == before


def test_an_attest_whose_event_cannot_be_written_opens_nothing(settled, world, monkeypatch):
    from pjd_portal.access.models import AccessAttest

    document = add_document(world, title="Epikrise")
    handle = look_up_patient(settled)
    with monkeypatch.context() as patch:
        _failing_event_write(patch)
        response = settled.post(f"/pasient/{handle}/grunnlag/", {"basis": "UNNTAK", "reason": ""})
    assert response.status_code == 503
    assert AccessAttest.objects.count() == 1  # stored, but without the event that states it
    assert settled.get(f"/pasient/{handle}/")["Location"] == f"/pasient/{handle}/grunnlag/"
    assert settled.get(f"/pasient/{handle}/dokument/{document.document_id}/").status_code == 404
    # Stated again, with its event: now it holds.
    response = settled.post(f"/pasient/{handle}/grunnlag/", {"basis": "UNNTAK", "reason": ""})
    assert response.status_code == 302
    assert settled.get(f"/pasient/{handle}/dokument/{document.document_id}/").status_code == 200


# --- the connection: checked only after it has rested -------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_connection_used_a_moment_ago_is_not_checked_again(settings, monkeypatch):
    from django.db import connections

    conn: Any = connections["default"]
    checks: list[bool] = []
    real = type(conn).is_usable

    def counted(self: Any) -> bool:
        checks.append(True)
        return bool(real(self))

    monkeypatch.setattr(type(conn), "is_usable", counted)
    settings.DB_HEALTH_CHECK_AFTER_IDLE_SECONDS = 5.0
    conn.health_check_enabled = True
    conn.ensure_connection()
    with conn.cursor() as cursor:
        cursor.execute("SELECT 1")
    conn.close_if_unusable_or_obsolete()  # a request ends: the next would check
    with conn.cursor() as cursor:
        cursor.execute("SELECT 1")
    assert checks == []  # used a moment ago: no SELECT 1 of its own
    monkeypatch.setattr(conn, "_pjd_used_at", time.monotonic() - 6)
    conn.close_if_unusable_or_obsolete()
    with conn.cursor() as cursor:
        cursor.execute("SELECT 1")
    assert checks == [True]  # rested: checked before use


# --- what travels: pages compressed, documents as they are ---------------------------------


def test_pages_travel_compressed_and_documents_as_they_are(settled, world):
    import gzip

    document = add_document(world, title="Epikrise", data=b"%PDF-1.4\n" + b"x" * 50_000)
    for i in range(20):
        add_document(world, title=f"Dokument {i}", days_ago=i + 1)
    handle = lookup_and_attest(settled)
    plain = settled.get(f"/pasient/{handle}/", headers={"HX-Request": "true"})
    packed = settled.get(f"/pasient/{handle}/", headers={"HX-Request": "true", "Accept-Encoding": "gzip"})
    assert packed["Content-Encoding"] == "gzip" and "Accept-Encoding" in packed["Vary"]
    assert len(packed.content) < len(plain.content) / 3
    # The CSRF token is masked anew for each answer; apart from it the page is the same.
    unmask = re.compile(rb'name="csrfmiddlewaretoken" value="[^"]+"|"X-CSRFToken": "[^"]+"')
    assert unmask.sub(b"", gzip.decompress(packed.content)) == unmask.sub(b"", plain.content)
    assert packed["Cache-Control"] == plain["Cache-Control"]
    pdf = settled.get(
        f"/pasient/{handle}/dokument/{document.document_id}/", headers={"Accept-Encoding": "gzip"}
    )
    assert pdf.status_code == 200 and not pdf.has_header("Content-Encoding")
    assert b"".join(pdf.streaming_content).startswith(b"%PDF-1.4")


# --- compiled once, run with the request's values ------------------------------------------


def test_a_compiled_query_takes_the_requests_values_or_fails_loudly():
    from pjd_portal.lib.compiled import with_values

    assert with_values(["x", -5, 3, -5], {-5: 9}, expected=2) == ["x", 9, 3, 9]
    with pytest.raises(RuntimeError):
        with_values(["x", 3], {-5: 9}, expected=1)  # the stand-in is gone: never run as it is


def test_an_expired_or_foreign_handle_is_refused_by_the_compiled_query(settled, world):
    import datetime

    from django.utils import timezone

    from pjd_portal.access.models import PatientLookup

    handle = look_up_patient(settled)
    other = login(Client(), world.other_clinician, world.legevakt)
    assert other.get(f"/pasient/{handle}/grunnlag/").status_code == 404
    PatientLookup.objects.filter(handle=handle).update(
        expires_at=timezone.now() - datetime.timedelta(seconds=1)
    )
    assert settled.get(f"/pasient/{handle}/grunnlag/").status_code == 404


# --- after the review: a session's copy never outlives its logout or its last write ----


def _cache_call_fails(monkeypatch: pytest.MonkeyPatch, *names: str) -> None:
    def down(*args: Any, **kwargs: Any) -> Any:
        raise ConnectionError("cache timeout")

    for name in names:
        monkeypatch.setattr(caches["default"], name, down)


def test_a_logout_ends_the_session_for_every_process_that_reads_the_cache(settled):
    from django.conf import settings

    key = settled.cookies[settings.SESSION_COOKIE_NAME].value
    elsewhere = Client()  # another process, the same cookie
    elsewhere.cookies[settings.SESSION_COOKIE_NAME] = key
    assert 'data-testid="lookup-form"' in elsewhere.get("/").content.decode()
    settled.post("/logg-ut/")
    assert 'data-testid="login"' in elsewhere.get("/").content.decode()
    # A request that read the row just before the logout cannot put the copy back.
    assert cache.add(f"django.contrib.sessions.cached_db{key}", {"_auth_user_id": "1"}) is False


def test_a_session_write_the_cache_cannot_take_leaves_no_old_copy(settled, world, monkeypatch):
    from pjd_portal.access.models import PatientLookup

    grant(world.fastlege, world.legevakt, Role.CLINICIAN)
    assert settled.get("/").status_code == 200
    with monkeypatch.context() as patch:
        _cache_call_fails(patch, "set")
        response = settled.post("/velg-virksomhet/", {"organisation": str(world.legevakt.pk)})
        assert response.status_code == 302
    session_store._cache_down_until = 0.0  # ten seconds later, or another process
    assert settled.post("/pasient/sok/", {"national_id": LIST_PATIENT_ID}).status_code == 302
    assert PatientLookup.objects.latest("created_at").organisation_id == world.legevakt.pk


def test_a_session_write_that_reaches_the_cache_in_no_way_is_the_503_page(settled, world, monkeypatch):
    grant(world.fastlege, world.legevakt, Role.CLINICIAN)
    assert settled.get("/").status_code == 200
    _cache_call_fails(monkeypatch, "set", "delete")
    response = settled.post("/velg-virksomhet/", {"organisation": str(world.legevakt.pk)})
    assert response.status_code == 503
    assert "Cache-Control" in response and "no-store" in response["Cache-Control"]


def test_the_list_without_a_source_that_lists_to_this_clinician(settled, world):
    from pjd_portal.documents.models import DocumentSource

    add_document(world, title="Epikrise fra et sted")
    DocumentSource.objects.filter(pk=world.source.pk).update(list_authorizations=["JM"])
    handle = lookup_and_attest(settled)
    response = settled.get(f"/pasient/{handle}/")
    assert response.status_code == 200 and "Epikrise fra et sted" not in response.content.decode()


def test_the_list_of_a_portal_without_sources(settled, world):
    from pjd_portal.documents.models import DocumentSource

    DocumentSource.objects.all().delete()
    handle = lookup_and_attest(settled)
    assert settled.get(f"/pasient/{handle}/").status_code == 200


def test_a_grant_row_given_to_another_person_is_gone_from_the_first(settled, world):
    from pjd_portal.accounts.roles import grants_in_force

    row = grants_in_force().get(user=world.fastlege, content_object=world.gp_office)
    row.user = world.other_clinician
    row.save()
    settled.get("/")
    assert settled.session[SESSION_FACTS_KEY]["roles"] == []
