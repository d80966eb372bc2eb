"""Reads from a replica (lib/replica.py): which database each query of each page went to.

A second connection, named as the replica is, is opened on the test database with writes
refused (as a hot standby refuses them): the log review's pages, the review queue's pages,
the patient's log and the citizen API read the log through it; the gate's reads, the
clinician's path and every write go through the primary's. How far behind it is comes from
`replica.measure`, which these tests answer (the test database is no replica); the real
replica, its real lag and its real query log are in tests/test_replica_system.py.
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
import time
import uuid
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext

from pjd_portal.access.models import Basis
from pjd_portal.accounts.keys import public_jwks
from pjd_portal.accounts.models import User
from pjd_portal.auditlog import events as kinds
from pjd_portal.auditlog.models import AccessEvent
from pjd_portal.lib import replica
from pjd_portal.review.models import ReviewItem, ReviewStatus
from pjd_portal.review.queue import build_queue
from tests.builders import (
    LIST_PATIENT_ID,
    T0,
    add_document,
    build_world,
    hospital_doctor,
    login,
    lookup_and_attest,
    record,
)
from tests.replica_alias import close_replica, open_replica

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WRITES = ("INSERT", "UPDATE", "DELETE", "SELECT PG_ADVISORY", "LOCK")
# Models whose reads decide who may see what: always read from the primary. The query's own
# table is the one Django names without an alias; a subquery (U0, U1 ...) of a risk signal,
# or a name joined onto a row of the log, belongs to the log's read.
PRIMARY_ONLY = re.compile(r'FROM "(?:accounts_|django_session|guardian_|access_|auth_)[a-z_]*"(?! U\d)')
API = "/api/fhir/AuditEvent/_search"
CLIENT_ID = "innbyggerportal"


class FakeMeasure:
    """The replica's answer to `measure`: caught up unless told otherwise."""

    def __init__(self) -> None:
        self.in_recovery = True
        self.caught_up = True
        self.age: float | None = 0.2
        self.calls: list[tuple[str, str, str]] = []

    def __call__(self, alias: str, primary_position: str, own_write_lsn: str) -> replica.Measure:
        self.calls.append((alias, primary_position, own_write_lsn))
        # The test database is the primary itself: its position now is as far as it has got.
        return replica.Measure(
            in_recovery=self.in_recovery,
            caught_up=self.caught_up,
            has_own_write=not own_write_lsn or self.caught_up,
            replay_age_seconds=self.age,
        )


@pytest.fixture
def fake_replica(settings, monkeypatch, django_db_blocker):
    conf = copy.deepcopy(connections[DEFAULT_DB_ALIAS].settings_dict)
    # As a hot standby: a write sent here fails loudly instead of quietly landing.
    conf["OPTIONS"] = {**conf.get("OPTIONS", {}), "options": "-c default_transaction_read_only=on"}
    open_replica(conf, django_db_blocker)
    settings.REPLICA_DATABASE = "replica"
    settings.REPLICA_MAX_LAG_SECONDS = 30.0
    fake = FakeMeasure()
    monkeypatch.setattr(replica, "measure", fake)
    yield fake
    close_replica()


class Routed:
    def __init__(self, response: Any, body: bytes, primary: list[str], on_replica: list[str]) -> None:
        self.response, self.body, self.primary, self.replica = response, body, primary, on_replica

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


def routed(call) -> Routed:
    """Run one request; the SQL each connection of this thread sent (a streamed body read too)."""

    with (
        CaptureQueriesContext(connections[DEFAULT_DB_ALIAS]) as primary,
        CaptureQueriesContext(connections["replica"]) as on_replica,
    ):
        response = call()
        body = b"".join(response.streaming_content) if response.streaming else response.content
    return Routed(response, body, [q["sql"] for q in primary], [q["sql"] for q in on_replica])


def tables(queries: list[str]) -> set[str]:
    return set(re.findall(r'(?:FROM|JOIN) "([a-z_]+)"', " ".join(queries)))


def assert_reads_only_the_log(queries: list[str]) -> None:
    for sql in queries:
        assert not sql.lstrip().upper().startswith(WRITES), sql
        assert not PRIMARY_ONLY.search(sql), sql


@pytest.fixture
def scene():
    """The world, one flagged emergency open in the hospital auditor's scope, its review
    item, and logged-in auditor and privacy officer."""

    world = build_world()
    doctor = hospital_doctor(world)
    doc = add_document(world)
    event = record(
        world,
        T0,
        kinds.DOCUMENT_OPEN.name,
        user=doctor,
        org=world.hospital,
        patient=world.patient,
        document=doc,
        basis=Basis.AKUTT,
        reason_text="Innlagt bevisstløs, trenger medisinliste.",
    )
    build_queue(T0.replace(day=1), T0.replace(day=28), rate=0.0, key=b"t")
    item = ReviewItem.objects.get(event_id=event.event_id)
    return {
        "world": world,
        "event": event,
        "item": item,
        "document": doc,
        "auditor": login(Client(), world.auditor, world.hospital),
        "privacy_officer": login(Client(), world.privacy_officer, world.forvaltning),
    }


@pytest.fixture
def citizen_api(settings):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    jwks = public_jwks(key)
    settings.CITIZEN_PORTAL_CLIENT_ID = CLIENT_ID
    settings.CITIZEN_PORTAL_JWKS = json.dumps(jwks)

    def call(client: Client):
        now = int(time.time())
        claims = {
            "iss": CLIENT_ID,
            "sub": CLIENT_ID,
            "aud": f"http://testserver{API}",
            "iat": now,
            "exp": now + 60,
            "jti": str(uuid.uuid4()),
        }
        assertion = jwt.encode(claims, key, algorithm="RS256", headers={"kid": jwks["keys"][0]["kid"]})
        return client.post(
            API,
            data=f"patient={LIST_PATIENT_ID}",
            content_type="application/x-www-form-urlencoded",
            HTTP_AUTHORIZATION=f"Bearer {assertion}",
        )

    return call


# Each page that reads the log: how to ask for it, and the event it logs of itself.
PAGES = {
    "log_search": (
        lambda s: s["auditor"].post("/forvaltning/loggkontroll/", {"national_id": ""}),
        "log_search",
    ),
    "log_event": (
        lambda s: s["auditor"].get(f"/forvaltning/loggkontroll/hendelse/{s['event'].event_id}/"),
        "log_event_view",
    ),
    "log_export": (
        lambda s: s["auditor"].post("/forvaltning/loggkontroll/eksport/", {"national_id": LIST_PATIENT_ID}),
        "log_export",
    ),
    "log_overview": (
        lambda s: s["auditor"].get(
            "/forvaltning/loggkontroll/oversikt/?date_from=2026-06-15&date_to=2026-07-15"
        ),
        "log_overview_view",
    ),
    "review_queue": (lambda s: s["auditor"].get("/forvaltning/loggkontroll/ko/"), "log_search"),
    "review_item": (
        lambda s: s["auditor"].get(f"/forvaltning/loggkontroll/ko/{s['item'].item_id}/"),
        "log_event_view",
    ),
    "patient_log": (
        lambda s: s["privacy_officer"].post("/forvaltning/innsyn/", {"national_id": LIST_PATIENT_ID}),
        "patient_log_read",
    ),
}


@pytest.mark.parametrize("page", [*PAGES, "citizen_api"])
def test_each_log_page_reads_the_log_from_the_replica_and_writes_its_event_on_the_primary(
    fake_replica, scene, citizen_api, page
):
    if page == "citizen_api":
        ask, event_type = (lambda s: citizen_api(Client())), "patient_log_read"
    else:
        ask, event_type = PAGES[page]
    before = AccessEvent.objects.filter(event_type=event_type).count()

    result = routed(lambda: ask(scene))

    assert result.response.status_code == 200, result.text[:2000]
    # The log itself came from the replica ...
    assert any('"audit_accessevent"' in sql for sql in result.replica), sorted(tables(result.replica))
    # ... nothing was written there, and neither roles, sessions nor users were read there.
    assert_reads_only_the_log(result.replica)
    # The page's own access event is committed (on the primary: the replica refuses writes).
    assert AccessEvent.objects.filter(event_type=event_type).count() == before + 1
    if page != "citizen_api":
        # The gate read the person's roles from the primary.
        assert any('"accounts_' in sql for sql in result.primary), result.primary
    if page in ("log_search", "log_event", "log_overview", "review_queue", "review_item", "patient_log"):
        assert "Loggen vises fra en lesekopi som er à jour." in result.text
    if page == "log_export":
        assert "Epikrise etter innleggelse" in result.text  # the rows, streamed from the replica
    if page == "citizen_api":
        assert json.loads(result.body)["resourceType"] == "Bundle"


def test_the_clinicians_path_never_touches_the_replica(fake_replica, scene):
    world, doc = scene["world"], scene["document"]
    fastlege = login(Client(), world.fastlege, world.gp_office)

    def path():
        handle = lookup_and_attest(fastlege, LIST_PATIENT_ID, basis="UNNTAK")
        listed = fastlege.get(f"/pasient/{handle}/")
        assert listed.status_code == 200
        opened = fastlege.get(f"/pasient/{handle}/dokument/{doc.document_id}/")
        assert opened.status_code == 200
        return opened

    result = routed(path)

    assert result.replica == []
    assert fake_replica.calls == []  # not even asked how far behind it is
    assert AccessEvent.objects.filter(event_type="document_open", actor_user_id=world.fastlege.pk).exists()


def test_a_status_change_is_written_on_the_primary_and_read_back_from_it_until_the_replica_has_it(
    fake_replica, scene
):
    auditor, item = scene["auditor"], scene["item"]
    changed = routed(
        lambda: auditor.post(
            f"/forvaltning/loggkontroll/ko/{item.item_id}/status/",
            {
                "status": ReviewStatus.JUSTIFIED,
                "comment": "Innlagt bevisstløs; i orden.",
                "version": item.version,
            },
        )
    )
    assert changed.response.status_code == 302
    assert changed.replica == []
    assert any(sql.startswith("UPDATE") and "review_reviewitem" in sql for sql in changed.primary)

    # The replica has not replayed the change: the item's page reads from the primary.
    fake_replica.caught_up = False
    shown = routed(lambda: auditor.get(f"/forvaltning/loggkontroll/ko/{item.item_id}/"))
    assert shown.response.status_code == 200
    assert shown.replica == []
    assert "Din siste endring har ikke nådd lesekopien ennå: loggen vises fra hoveddatabasen." in shown.text
    assert fake_replica.calls[-1][2]  # the primary's position after the change, from the session

    # Once it has (caught up past that position), the replica again.
    fake_replica.caught_up = True
    again = routed(lambda: auditor.get(f"/forvaltning/loggkontroll/ko/{item.item_id}/"))
    assert any("review_reviewitem" in sql for sql in again.replica)


def test_the_page_says_how_far_behind_the_replica_is(fake_replica, scene):
    fake_replica.caught_up, fake_replica.age = False, 12.3
    result = routed(lambda: scene["auditor"].post("/forvaltning/loggkontroll/", {"national_id": ""}))
    assert result.response.status_code == 200
    assert any('"audit_accessevent"' in sql for sql in result.replica)
    assert (
        "Loggen vises fra en lesekopi med inntil 13 sekunders forsinkelse: de aller siste hendelsene kan mangle."
        in result.text
    )


@pytest.mark.parametrize(
    ("age", "recovery", "message"),
    [
        (
            45.0,
            True,
            "Lesekopien ligger 45 sekunder etter, mer enn tillatt: loggen vises fra hoveddatabasen.",
        ),
        (
            None,
            True,
            "Det er ikke kjent hvor langt etter lesekopien ligger: loggen vises fra hoveddatabasen.",
        ),
        (0.0, False, "Lesekopien er ikke tilgjengelig: loggen vises fra hoveddatabasen."),
    ],
)
def test_a_replica_too_far_behind_or_not_replaying_is_not_used_and_the_page_says_so(
    fake_replica, scene, age, recovery, message
):
    fake_replica.caught_up, fake_replica.age, fake_replica.in_recovery = False, age, recovery
    result = routed(lambda: scene["auditor"].post("/forvaltning/loggkontroll/", {"national_id": ""}))
    assert result.response.status_code == 200
    assert result.replica == []
    assert any('"audit_accessevent"' in sql for sql in result.primary)
    assert message in result.text


def test_a_replica_that_is_down_costs_one_try_then_the_primary_answers(settings, scene, django_db_blocker):
    settings.REPLICA_DATABASE = "replica"
    settings.REPLICA_RETRY_SECONDS = 60.0
    conf = copy.deepcopy(connections[DEFAULT_DB_ALIAS].settings_dict)
    conf["HOST"], conf["PORT"] = "127.0.0.1", "8749"  # nothing listens here (this test's range)
    conf["OPTIONS"] = {**conf.get("OPTIONS", {}), "connect_timeout": 1}
    open_replica(conf, django_db_blocker)
    try:
        for _ in range(2):
            started = time.monotonic()
            with CaptureQueriesContext(connections[DEFAULT_DB_ALIAS]) as primary:
                response = scene["auditor"].post("/forvaltning/loggkontroll/", {"national_id": ""})
            assert response.status_code == 200
            assert (
                "Lesekopien er ikke tilgjengelig: loggen vises fra hoveddatabasen."
                in response.content.decode()
            )
            assert any('"audit_accessevent"' in q["sql"] for q in primary.captured_queries)
            assert connections["replica"].connection is None
        assert time.monotonic() - started < 1.0  # the second page did not try it again
    finally:
        close_replica()


def test_a_replica_lost_in_the_middle_of_a_page_gives_the_503_page_and_the_next_try_the_primary(
    fake_replica, scene
):
    lost = connections["replica"]
    with lost.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
    auditor = scene["auditor"]

    failed = auditor.post("/forvaltning/loggkontroll/", {"national_id": ""})
    assert failed.status_code == 503
    assert not AccessEvent.objects.filter(event_type="log_search").exists()  # nothing shown, nothing logged

    again = auditor.post("/forvaltning/loggkontroll/", {"national_id": ""})
    assert again.status_code == 200
    assert "Lesekopien er ikke tilgjengelig: loggen vises fra hoveddatabasen." in again.content.decode()
    assert len(fake_replica.calls) == 1  # set aside: not asked again


def test_the_router_keeps_writes_transactions_and_accounts_on_the_primary(fake_replica, scene):
    world = scene["world"]
    with replica.reading_from_replica() as state:
        assert state.on_replica
        with CaptureQueriesContext(connections["replica"]) as on_replica:
            event = AccessEvent.objects.order_by("id").first()
            assert event is not None
            User.objects.get(pk=world.auditor.pk)
            with transaction.atomic():
                # A read inside a write's transaction belongs to it.
                ReviewItem.objects.select_for_update().get(pk=scene["item"].pk)
            item = ReviewItem.objects.get(pk=scene["item"].pk)
            item.comment = "lest fra lesekopien, lagret på primæren"
            item.save(update_fields=["comment"])  # the replica refuses writes: this would fail there
    tables = " ".join(q["sql"] for q in on_replica.captured_queries)
    assert '"audit_accessevent"' in tables
    assert '"accounts_user"' not in tables
    assert "FOR UPDATE" not in tables
    assert ReviewItem.objects.get(pk=scene["item"].pk).comment.startswith("lest fra")
    assert replica.current() is None  # the decision ends with the block


def test_without_a_replica_nothing_is_said_and_nothing_measured(settings, scene, monkeypatch):
    settings.REPLICA_DATABASE = ""
    monkeypatch.setattr(replica, "measure", lambda *a: pytest.fail("measured without a replica"))
    response = scene["auditor"].post("/forvaltning/loggkontroll/", {"national_id": ""})
    assert response.status_code == 200
    assert 'data-testid="replica-notice"' not in response.content.decode()


def _settings_in_a_process(**env: str) -> subprocess.CompletedProcess[str]:
    code = (
        "import json; from django.conf import settings; "
        "r = settings.DATABASES.get('replica'); "
        "print(json.dumps({'alias': settings.REPLICA_DATABASE, 'replica': r and "
        "{k: r[k] for k in ('ENGINE', 'HOST', 'PORT', 'NAME', 'OPTIONS', 'TEST')}}))"
    )
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "pjd_portal.settings", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.django_db(transaction=False)
def test_database_replica_url_makes_a_read_only_replica_alias_next_to_the_primary():
    done = _settings_in_a_process(
        DATABASE_URL="postgres://postgres@127.0.0.1:5432/pjd_x",
        DATABASE_REPLICA_URL="postgres://postgres@127.0.0.1:5442/pjd_x",
    )
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert found["alias"] == "replica"
    assert found["replica"]["PORT"] == 5442
    assert found["replica"]["NAME"] == "pjd_x"
    assert found["replica"]["ENGINE"] == "pjd_portal.lib.postgresql"
    assert "default_transaction_read_only=on" in found["replica"]["OPTIONS"]["options"]
    assert found["replica"]["TEST"] == {"MIRROR": "default"}

    refused = _settings_in_a_process(
        DATABASE_URL="sqlite:///x.sqlite3", DATABASE_REPLICA_URL="postgres://postgres@127.0.0.1:5442/x"
    )
    assert refused.returncode != 0
    assert "DATABASE_REPLICA_URL needs PostgreSQL" in refused.stderr

    unset = _settings_in_a_process(DATABASE_REPLICA_URL="")
    assert json.loads(unset.stdout) == {"alias": "", "replica": None}
