"""Told means told: every AKUTT and FORHØYET access is a notice to the patient, delivered by
the worker to the citizen portal (here the stub in noticestub/, a process of its own), with
retries and backoff, each attempt logged, and visible to the privacy officer whatever came of it."""

from __future__ import annotations

import datetime
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import time_machine
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from pjd_portal.access.models import AccessAttest
from pjd_portal.auditlog import events as kinds
from pjd_portal.auditlog.events import Outcome
from pjd_portal.auditlog.services import AuditWriteFailed
from pjd_portal.notices import delivery, signing
from pjd_portal.notices.models import NoticeKind, NoticeStatus, PatientNotice
from pjd_portal.patients.models import PrivacyChoice, PrivacyChoiceKind
from tests.builders import LIST_PATIENT_ID, World, events, look_up_patient, lookup_and_attest

ROOT = Path(__file__).resolve().parent.parent
KEY = "test-patient-notice-key-0123456789abcdef"
AKUTT_REASON = "Pasienten er bevisstløs etter ulykke."
FORHOYET_REASON = "Pasienten har samtykket muntlig til innsyn i dag."


# --- the stub, the settings and the worker -------------------------------------------------


@dataclass
class Stub:
    base: str
    store: Path

    @property
    def url(self) -> str:
        return f"{self.base}/notices"

    def failing(self, status: int) -> str:
        return f"{self.base}/fail/{status}"

    def received(self) -> list[dict[str, Any]]:
        if not self.store.exists():
            return []
        return [json.loads(line) for line in self.store.read_text(encoding="utf-8").splitlines() if line]

    def clear(self) -> None:
        self.store.write_text("", encoding="utf-8")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="session")
def notice_stub_process(tmp_path_factory: Any) -> Iterator[Stub]:
    folder = tmp_path_factory.mktemp("noticestub")
    port = _free_port()
    stub = Stub(f"http://127.0.0.1:{port}", folder / "received.jsonl")
    log = (folder / "stub.log").open("wb")
    env = {
        **os.environ,
        "NOTICE_STUB_PORT": str(port),
        "NOTICE_STUB_KEY": KEY,
        "NOTICE_STUB_FILE": str(stub.store),
    }
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "noticestub" / "server.py")], env=env, stdout=log, stderr=log
    )
    try:
        deadline = time.monotonic() + 10
        while socket.socket().connect_ex(("127.0.0.1", port)) != 0:
            assert time.monotonic() < deadline, "the notice stub did not come up"
            time.sleep(0.05)
        yield stub
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


@pytest.fixture
def stub(notice_stub_process: Stub, settings: Any) -> Stub:
    notice_stub_process.clear()
    settings.PATIENT_NOTICE_URL = notice_stub_process.url
    settings.PATIENT_NOTICE_KEY = KEY
    settings.PATIENT_NOTICE_MAX_ATTEMPTS = 3
    settings.PATIENT_NOTICE_BASE_DELAY_SECONDS = 10
    settings.PATIENT_NOTICE_MAX_DELAY_SECONDS = 3600
    settings.PATIENT_NOTICE_CONNECT_TIMEOUT = 1
    settings.PATIENT_NOTICE_READ_TIMEOUT = 2
    return notice_stub_process


def run_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    """django-tasks' own worker (`db_worker --batch`), in this process: every task due now.
    Inside the test's transaction it must not close the connection between tasks."""

    monkeypatch.setattr("django_tasks_db.management.commands.db_worker.close_old_connections", lambda: None)
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGQUIT)}
    try:
        call_command(
            "db_worker", "--batch", "--no-startup-delay", "--no-reload", "--queue-name", "patient_notices",
            "--interval", "0", verbosity=0,
        )  # fmt: skip
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)


def akutt(client: Client) -> str:
    return lookup_and_attest(client, basis="AKUTT", reason=AKUTT_REASON)


def forhoyet(client: Client, world: World, basis: str = "FORHOYET_SAMTYKKE") -> str:
    PrivacyChoice.objects.get_or_create(patient=world.patient, kind=PrivacyChoiceKind.RESTRICTION)
    handle = look_up_patient(client)
    response = client.post(
        f"/pasient/{handle}/forhoyet/", {"basis": basis, "reason": FORHOYET_REASON, "confirm": "on"}
    )
    assert response.status_code == 302, response.content[:500]
    return handle


def notice_tasks() -> list[DBTaskResult[Any, Any]]:
    return list(DBTaskResult.objects.filter(queue_name="patient_notices").order_by("enqueued_at"))


# --- one notice per flagged access, in its transaction ------------------------------------------


def test_an_akutt_attest_writes_one_notice_with_its_event_and_its_task(world, as_fastlege):
    akutt(as_fastlege)
    [notice] = PatientNotice.objects.all()
    attest = AccessAttest.objects.get(basis="AKUTT")
    assert (notice.kind, notice.basis, notice.attest_id, notice.patient) == (
        NoticeKind.AKUTT,
        "AKUTT",
        attest.attest_id,
        world.patient,
    )
    assert (notice.status, notice.attempts) == (NoticeStatus.PENDING, 0)
    assert (notice.organisation_orgnr, notice.organisation_name) == (
        world.gp_office.orgnr,
        world.gp_office.name,
    )
    assert (notice.clinician_name, notice.clinician_role) == ("Kari Fastlege", "Lege")
    [event] = events("emergency_access")
    assert event.details == {"notice_id": str(notice.notice_id), "situation": "unconscious"}
    [task] = notice_tasks()
    assert task.task_path == "pjd_portal.notices.delivery.deliver_patient_notice"
    assert task.args_kwargs == {"args": [str(notice.notice_id), 1], "kwargs": {}}
    # The task table holds ids, never the patient's national id.
    assert LIST_PATIENT_ID not in json.dumps(task.args_kwargs)


@pytest.mark.parametrize("basis", ["FORHOYET_SAMTYKKE", "FORHOYET_AKUTT"])
def test_a_forhoyet_attest_writes_one_notice(world, as_fastlege, basis):
    forhoyet(as_fastlege, world, basis)
    [notice] = PatientNotice.objects.all()
    assert (notice.kind, notice.basis) == (NoticeKind.FORHOYET, basis)
    assert len(notice_tasks()) == 1
    assert events("emergency_access")[-1].details == {"notice_id": str(notice.notice_id)}


@pytest.mark.parametrize("basis", ["UNNTAK", "SAMTYKKE"])
def test_unntak_and_samtykke_tell_the_patient_nothing(world, as_fastlege, basis):
    lookup_and_attest(as_fastlege, basis=basis)
    assert AccessAttest.objects.filter(basis=basis).exists()
    assert not PatientNotice.objects.exists() and not notice_tasks()
    assert events("basis_stated")[-1].details == {}


def test_the_notice_kinds_follow_the_flagged_bases():
    from pjd_portal.access import policy

    assert policy.PATIENT_NOTICE_KIND.keys() == policy.FLAGGED_FOR_REVIEW


@pytest.mark.parametrize("flow", ["akutt", "forhoyet"])
def test_an_audit_failure_rolls_back_the_attest_the_notice_and_its_task(
    world, as_fastlege, monkeypatch, flow
):
    PrivacyChoice.objects.create(patient=world.patient, kind=PrivacyChoiceKind.RESTRICTION)
    handle = look_up_patient(as_fastlege)
    attests = AccessAttest.objects.count()

    def fail(*args, **kwargs):
        raise AuditWriteFailed("down")

    monkeypatch.setattr("pjd_portal.access.services.record_event", fail)
    if flow == "akutt":
        PrivacyChoice.objects.all().delete()
        response = as_fastlege.post(
            f"/pasient/{handle}/grunnlag/",
            {"basis": "AKUTT", "situation": "unconscious", "reason": AKUTT_REASON, "confirmed": "on"},
        )
    else:
        response = as_fastlege.post(
            f"/pasient/{handle}/forhoyet/",
            {"basis": "FORHOYET_AKUTT", "reason": FORHOYET_REASON, "confirm": "on"},
        )
    assert response.status_code == 503
    assert AccessAttest.objects.count() == attests
    assert not PatientNotice.objects.exists()
    assert not notice_tasks()


@pytest.mark.django_db(transaction=True)
def test_a_notice_outside_a_transaction_is_refused(world):
    from pjd_portal.notices.services import create_notice

    with pytest.raises(RuntimeError, match="transaction"):
        create_notice(
            kind=NoticeKind.AKUTT,
            basis="AKUTT",
            patient=world.patient,
            attest_id=uuid.uuid4(),
            accessed_at=timezone.now(),
            organisation_orgnr="310000000",
            organisation_name="x",
            clinician_name="y",
            clinician_authorizations=["LE"],
        )


# --- delivery ------------------------------------------------------------------------------------


def test_the_worker_delivers_a_signed_notice_to_the_stub(world, as_fastlege, stub, monkeypatch):
    akutt(as_fastlege)
    notice = PatientNotice.objects.get()
    run_worker(monkeypatch)

    notice.refresh_from_db()
    assert (notice.status, notice.attempts, notice.last_error) == (NoticeStatus.SENT, 1, "")
    assert notice.sent_at is not None
    [received] = stub.received()  # the stub checked the signature with its own code
    body = received["notice"]
    assert body == {
        "notice_id": str(notice.notice_id),
        "kind": "AKUTT",
        "basis": "AKUTT",
        "accessed_at": notice.accessed_at.astimezone(datetime.UTC).isoformat(),
        "organisation": {"orgnr": world.gp_office.orgnr, "name": world.gp_office.name},
        "clinician": {"name": "Kari Fastlege", "role": "Lege"},
        "patient": {"national_id": LIST_PATIENT_ID},
    }
    assert abs(received["timestamp"] - time.time()) < 60
    [event] = events(kinds.PATIENT_NOTICE_DELIVERED.name)
    assert (event.outcome, event.patient_id, event.actor_user_id) == (Outcome.GRANTED, world.patient.pk, None)
    assert event.request_id == "command:patient_notices"
    assert event.details == {"notice_id": str(notice.notice_id), "kind": "AKUTT", "attempt": 1}
    assert [t.status for t in notice_tasks()] == ["SUCCESSFUL"]
    # Nothing more to do: a second run sends nothing again.
    run_worker(monkeypatch)
    assert len(stub.received()) == 1


def test_the_stub_refuses_a_bad_signature_and_an_old_timestamp(stub):
    import requests

    body = b'{"notice_id": "x"}'
    now = int(time.time())
    good = signing.signed_headers(KEY, now, body)
    assert requests.post(stub.url, data=body, headers=good, timeout=5).status_code == 202
    wrong_key = signing.signed_headers("another-key-0123456789abcdef0123456789", now, body)
    assert requests.post(stub.url, data=body, headers=wrong_key, timeout=5).status_code == 401
    changed = requests.post(stub.url, data=body + b" ", headers=good, timeout=5)
    assert changed.status_code == 401
    stale = signing.signed_headers(KEY, now - signing.MAX_SKEW_SECONDS - 10, body)
    assert requests.post(stub.url, data=body, headers=stale, timeout=5).status_code == 401
    assert len(stub.received()) == 1
    # The portal's own check agrees with the stub's.
    assert signing.verify(KEY, good, body, now=now)
    assert not signing.verify(KEY, wrong_key, body, now=now)
    assert not signing.verify(KEY, stale, body, now=now)


def test_a_failing_endpoint_is_retried_with_backoff_and_the_notice_ends_failed_still_visible(
    world, as_fastlege, stub, settings, monkeypatch
):
    settings.PATIENT_NOTICE_URL = stub.failing(503)
    with time_machine.travel(timezone.now(), tick=False) as clock:
        akutt(as_fastlege)
        notice = PatientNotice.objects.get()
        delays = []
        for attempt in (1, 2, 3):
            run_worker(monkeypatch)
            notice.refresh_from_db()
            assert (notice.attempts, notice.last_error) == (attempt, "HTTP 503")
            if attempt < 3:
                assert notice.status == NoticeStatus.PENDING
                [waiting] = DBTaskResult.objects.filter(queue_name="patient_notices", status="READY")
                assert waiting.args_kwargs["args"] == [str(notice.notice_id), attempt + 1]
                assert waiting.run_after == notice.next_attempt_at
                assert notice.last_attempt_at is not None
                delays.append((notice.next_attempt_at - notice.last_attempt_at).total_seconds())
                # Not before its time.
                run_worker(monkeypatch)
                notice.refresh_from_db()
                assert notice.attempts == attempt
                clock.move_to(notice.next_attempt_at)
        assert delays == [10, 20]  # base * 2**(n-1)
        assert notice.status == NoticeStatus.FAILED
        assert not DBTaskResult.objects.filter(queue_name="patient_notices", status="READY").exists()
        clock.shift(datetime.timedelta(days=1))
        run_worker(monkeypatch)
    notice.refresh_from_db()
    assert (notice.status, notice.attempts) == (NoticeStatus.FAILED, 3)  # failed, not retried, not gone
    assert not stub.received()

    failures = events(kinds.PATIENT_NOTICE_FAILED.name)
    assert [(e.details["attempt"], e.reason_code, e.details["error"]) for e in failures] == [
        (1, "will_retry", "HTTP 503"),
        (2, "will_retry", "HTTP 503"),
        (3, "gave_up", "HTTP 503"),
    ]
    assert all(e.outcome == Outcome.DENIED and e.patient_id == world.patient.pk for e in failures)
    assert failures[-1].details["next_attempt_at"] is None
    assert not events(kinds.PATIENT_NOTICE_DELIVERED.name)


def test_an_endpoint_that_comes_back_gets_the_notice_on_the_next_attempt(
    world, as_fastlege, stub, settings, monkeypatch
):
    closed = _free_port()  # nothing listens here
    settings.PATIENT_NOTICE_URL = f"http://127.0.0.1:{closed}/notices"
    settings.PATIENT_NOTICE_BASE_DELAY_SECONDS = 1
    akutt(as_fastlege)
    run_worker(monkeypatch)
    notice = PatientNotice.objects.get()
    assert (notice.status, notice.attempts, notice.last_error) == (NoticeStatus.PENDING, 1, "ConnectionError")
    settings.PATIENT_NOTICE_URL = stub.url
    with time_machine.travel(notice.next_attempt_at, tick=True):
        run_worker(monkeypatch)
    notice.refresh_from_db()
    assert (notice.status, notice.attempts, notice.last_error) == (NoticeStatus.SENT, 2, "")
    assert [e.event_type for e in events() if e.event_type.startswith("patient_notice")] == [
        "patient_notice_failed",
        "patient_notice_delivered",
    ]
    assert len(stub.received()) == 1


def test_without_a_url_notices_wait_pending_and_are_sent_once_it_is_set(
    world, as_fastlege, stub, settings, monkeypatch
):
    settings.PATIENT_NOTICE_URL = ""
    akutt(as_fastlege)
    run_worker(monkeypatch)
    notice = PatientNotice.objects.get()
    assert (notice.status, notice.attempts) == (NoticeStatus.PENDING, 0)  # waiting, not dropped
    assert not events(kinds.PATIENT_NOTICE_FAILED.name)
    call_command("requeue_patient_notices", "--older-than", "0", stdout=open(os.devnull, "w"))  # noqa: SIM115
    assert len(notice_tasks()) == 1  # no new task while there is nowhere to send it
    settings.PATIENT_NOTICE_URL = stub.url
    call_command("requeue_patient_notices", "--older-than", "0", stdout=open(os.devnull, "w"))  # noqa: SIM115
    run_worker(monkeypatch)
    notice.refresh_from_db()
    assert (notice.status, notice.attempts) == (NoticeStatus.SENT, 1)


def test_a_duplicate_task_does_not_send_a_notice_twice(world, as_fastlege, stub, monkeypatch):
    akutt(as_fastlege)
    notice = PatientNotice.objects.get()
    delivery.enqueue_attempt(notice, attempt=1, run_after=None)  # a second task for attempt 1
    call_command("requeue_patient_notices", "--older-than", "0", stdout=open(os.devnull, "w"))  # noqa: SIM115
    assert len(notice_tasks()) == 3
    run_worker(monkeypatch)
    notice.refresh_from_db()
    assert (notice.status, notice.attempts) == (NoticeStatus.SENT, 1)
    assert len(stub.received()) == 1
    assert sorted(t.return_value for t in notice_tasks()) == ["not_claimed", "not_claimed", "sent"]


def test_no_national_id_in_any_url_or_log_line(world, as_fastlege, stub, settings, monkeypatch, caplog):
    seen_urls: list[str] = []
    import requests

    real_post = requests.post

    def spying_post(url, *args, **kwargs):
        seen_urls.append(url)
        assert LIST_PATIENT_ID not in json.dumps(dict(kwargs.get("headers") or {}))
        return real_post(url, *args, **kwargs)

    monkeypatch.setattr(requests, "post", spying_post)
    with caplog.at_level(logging.DEBUG):
        akutt(as_fastlege)
        settings.PATIENT_NOTICE_URL = stub.failing(500)
        run_worker(monkeypatch)
        settings.PATIENT_NOTICE_URL = stub.url
        with time_machine.travel(PatientNotice.objects.get().next_attempt_at, tick=True):
            run_worker(monkeypatch)
        page = privacy_officer_page(world)
    assert PatientNotice.objects.get().status == NoticeStatus.SENT
    assert seen_urls == [stub.failing(500), stub.url]
    assert all(LIST_PATIENT_ID not in url for url in seen_urls)
    assert "patient notice" in caplog.text
    assert LIST_PATIENT_ID not in caplog.text
    assert 'data-testid="privacy-notice"' in page
    stub_log = Path(stub.store.parent / "stub.log").read_text(encoding="utf-8")
    assert "received" in stub_log and LIST_PATIENT_ID not in stub_log


# --- the privacy officer sees them -------------------------------------------------------------


def privacy_officer_page(world: World) -> str:
    from tests.builders import login_as

    client = login_as(world, "privacy_officer")
    response = client.post("/forvaltning/personvern/", {"national_id": LIST_PATIENT_ID})
    assert response.status_code == 302
    page = client.get(response["Location"])
    assert page.status_code == 200
    return str(page.content.decode())


def test_the_privacy_officer_sees_the_patients_notices_sent_pending_and_failed(
    world, as_fastlege, stub, settings, monkeypatch
):
    assert 'data-testid="privacy-no-notices"' in privacy_officer_page(world)
    akutt(as_fastlege)
    run_worker(monkeypatch)  # sent
    settings.PATIENT_NOTICE_URL = stub.failing(502)
    settings.PATIENT_NOTICE_MAX_ATTEMPTS = 1
    forhoyet(as_fastlege, world)
    run_worker(monkeypatch)  # failed at once: one attempt allowed
    settings.PATIENT_NOTICE_URL = ""
    # A later emergency, once the restriction is lifted and the elevated basis has lapsed
    # (while a basis holds, a second one is not stated).
    PrivacyChoice.objects.filter(kind=PrivacyChoiceKind.RESTRICTION).delete()
    AccessAttest.objects.update(expires_at=timezone.now())
    lookup_and_attest(as_fastlege, basis="AKUTT", reason=AKUTT_REASON)  # pending
    run_worker(monkeypatch)
    # Another patient's notice is not on this page.
    PatientNotice.objects.create(
        patient=world.other_patient,
        kind=NoticeKind.AKUTT,
        basis="AKUTT",
        attest_id=PatientNotice.objects.first().attest_id,  # type: ignore[union-attr]
        accessed_at=timezone.now(),
        organisation_orgnr="310100005",
        organisation_name="Bergen legevakt",
        clinician_name="Lars Legevakt",
        next_attempt_at=timezone.now(),
        created_at=timezone.now(),
    )

    page = privacy_officer_page(world)
    rows = page.split('data-testid="privacy-notice"')[1:]
    assert len(rows) == 3
    statuses = sorted(row.split('data-status="')[1].split('"')[0] for row in rows)
    assert statuses == ["failed", "pending", "sent"]
    assert "Varsler til pasienten" in page
    assert "Kunne ikke sendes" in page and "HTTP 502" in page
    assert "Venter på å bli sendt" in page and "Sendt" in page
    assert "Kari Fastlege (Lege)" in page and "Lars Legevakt" not in page
    assert "Forhøyet tilgang" in page and "Akuttilgang" in page


# --- more than one worker process (PostgreSQL) -------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_worker_processes_deliver_each_notice_exactly_once(world, stub, settings):
    """Two real `db_worker` processes on one queue, with every notice's task enqueued twice:
    the library hands each task to one worker (SELECT … FOR UPDATE SKIP LOCKED), and the
    notice's claim lets one attempt through however many tasks name it."""

    from django.db import transaction

    from pjd_portal.notices.services import create_notice

    created = []
    for n in range(12):
        with transaction.atomic():
            notice = create_notice(
                kind=NoticeKind.AKUTT,
                basis="AKUTT",
                patient=world.patient,
                attest_id=uuid.uuid4(),
                accessed_at=timezone.now(),
                organisation_orgnr=world.gp_office.orgnr,
                organisation_name=world.gp_office.name,
                clinician_name=f"Kari Fastlege {n}",
                clinician_authorizations=["LE"],
            )
            delivery.enqueue_attempt(notice, attempt=1, run_after=None)  # and a duplicate
        created.append(notice)
    name = connection.settings_dict["NAME"]
    env = {
        **os.environ,
        "DEBUG": "true",
        "DATABASE_URL": f"postgres://{connection.settings_dict['USER']}@127.0.0.1:5432/{name}",
        "PJD_PATIENT_NOTICE_URL": stub.url,
        "PJD_PATIENT_NOTICE_KEY": KEY,
        "PJD_AUDIT_GROUP_COMMIT": "false",
    }
    command = [sys.executable, "manage.py", "db_worker", "--batch", "--no-startup-delay", "--no-reload",
               "--queue-name", "patient_notices", "--interval", "0", "--verbosity", "2"]  # fmt: skip
    workers = [
        subprocess.Popen(
            [*command, "--worker-id", f"w{i}"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for i in range(2)
    ]
    outputs = [w.communicate(timeout=120)[0].decode() for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs
    received = [r["notice"]["notice_id"] for r in stub.received()]
    assert sorted(received) == sorted(str(n.notice_id) for n in created)  # each once, none twice
    assert set(PatientNotice.objects.values_list("status", "attempts")) == {(NoticeStatus.SENT, 1)}
    tasks = notice_tasks()
    assert len(tasks) == 24
    assert sorted(t.return_value for t in tasks).count("sent") == 12
    # Both workers did work (each task is claimed by exactly one of them).
    by_worker = [t.worker_ids for t in tasks]
    assert all(ids in (["w0"], ["w1"]) for ids in by_worker)
    assert len(events(kinds.PATIENT_NOTICE_DELIVERED.name)) == 12
    for output in outputs:
        assert LIST_PATIENT_ID not in output
