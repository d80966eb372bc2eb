"""A real streaming replica (`make test-system`): a second PostgreSQL cluster made with
pg_basebackup from the primary on 127.0.0.1:5432, streaming from it, on 127.0.0.1:5442.

The log review reads from it what was written on the primary once it is replayed (its own
query log shows the reads), says how far behind it is while its replay is paused, reads
from the primary when it is too far behind or stopped, and says so. The primary must
accept replication connections from 127.0.0.1 (.ci/run sees to it; a reload, no restart).
Under CI=true a missing binary or a refused replication connection is a failure.
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import DEFAULT_DB_ALIAS, connections
from django.test import Client

from pjd_portal.access.models import Basis
from pjd_portal.auditlog import events as kinds
from pjd_portal.lib import replica
from tests.builders import LIST_PATIENT_ID, T0, add_document, build_world, hospital_doctor, login, record
from tests.replica_alias import close_replica, open_replica

pytestmark = [pytest.mark.system, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

PORT = 5442  # this test's own (docs/operations.md names the shared cluster's)
SEARCH = "/forvaltning/loggkontroll/"
UP_TO_DATE = "Loggen vises fra en lesekopi som er à jour."
BEHIND = re.compile(r"Loggen vises fra en lesekopi med inntil (\d+) sekund(?:s|ers) forsinkelse")


def _unavailable(why: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(why)
    pytest.skip(why)


def _as_postgres() -> list[str]:
    # PostgreSQL refuses to run as root: the cluster is the postgres user's, as Debian's are.
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


def _run(command: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(_as_postgres() + command, capture_output=True, text=True, timeout=timeout)


class Replica:
    def __init__(self, folder: Path, bin_dir: Path) -> None:
        self.folder, self.bin_dir = folder, bin_dir
        self.data, self.log = folder / "data", folder / "server.log"

    def sql(self, statement: str) -> str:
        done = _run([str(self.bin_dir / "psql"), "-h", "127.0.0.1", "-p", str(PORT), "-U", "postgres",
                     "-d", "postgres", "-Atc", statement])  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    def stop(self) -> None:
        _run([str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"])

    def logged(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")


@pytest.fixture
def streaming_replica(transactional_db: Any) -> Iterator[Replica]:
    primary = connections[DEFAULT_DB_ALIAS]
    with primary.cursor() as cursor:
        cursor.execute("SHOW server_version_num")
        major = int(cursor.fetchone()[0]) // 10000  # the replica's binaries must be the primary's
    bin_dir = Path(f"/usr/lib/postgresql/{major}/bin")
    for tool in ("pg_basebackup", "pg_ctl", "psql"):
        if not (bin_dir / tool).exists():
            _unavailable(f"{bin_dir / tool} is missing (Debian's postgresql-{major})")
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", PORT)) == 0:
            pytest.fail(f"port {PORT} is taken: a replica left from an earlier run? (pg_ctl stop it)")
    folder = Path(tempfile.mkdtemp(prefix="pjd-replica17-"))
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
    conf = primary.settings_dict
    replica_ = Replica(folder, bin_dir)
    try:
        started = time.monotonic()
        backup = _run(
            [str(bin_dir / "pg_basebackup"), "-h", str(conf["HOST"] or "127.0.0.1"), "-p", str(conf["PORT"] or 5432),
             "-U", str(conf["USER"] or "postgres"), "-D", str(replica_.data), "-X", "stream", "-R", "-c", "fast"]
        )  # fmt: skip
        if backup.returncode != 0:
            _unavailable(
                f"pg_basebackup from the primary failed (replication allowed from 127.0.0.1?): {backup.stderr}"
            )
        # Debian keeps a cluster's configuration outside its data folder: this one's own.
        (replica_.data / "postgresql.conf").write_text(
            f"port = {PORT}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{folder}'\n"
            "hot_standby = on\nhot_standby_feedback = on\nlog_statement = 'all'\nlog_line_prefix = '%m [%p] %d '\n",
            encoding="utf-8",
        )
        (replica_.data / "pg_hba.conf").write_text(
            "local all all trust\nhost all all 127.0.0.1/32 trust\n", encoding="utf-8"
        )
        if os.geteuid() == 0:
            for name in ("postgresql.conf", "pg_hba.conf"):
                shutil.chown(replica_.data / name, "postgres", "postgres")
        start = _run(
            [
                str(bin_dir / "pg_ctl"),
                "-D",
                str(replica_.data),
                "-l",
                str(replica_.log),
                "-w",
                "-t",
                "30",
                "start",
            ]
        )
        assert start.returncode == 0, start.stdout + start.stderr + replica_.logged()
        print(f"replica made and started in {time.monotonic() - started:.1f} s")  # noqa: T201
        yield replica_
    finally:
        replica_.stop()
        shutil.rmtree(folder, ignore_errors=True)


def _wait_until_replayed(seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        position = replica.primary_lsn()
        if replica.measure("replica", position, position).has_own_write:
            return
        time.sleep(0.05)
    raise AssertionError("the replica did not replay the primary's writes")


def _search(client: Client) -> str:
    response = client.post(SEARCH, {"national_id": LIST_PATIENT_ID})
    assert response.status_code == 200, response.content[:1000]
    return response.content.decode()


def test_a_real_streaming_replica_serves_the_log_review_says_its_lag_and_is_left_when_behind_or_down(
    streaming_replica, settings, django_db_blocker
):
    settings.REPLICA_DATABASE = "replica"
    settings.REPLICA_MAX_LAG_SECONDS = 3600.0
    settings.REPLICA_RETRY_SECONDS = 60.0
    conf = copy.deepcopy(connections[DEFAULT_DB_ALIAS].settings_dict)  # the test database's name
    conf.update(HOST="127.0.0.1", PORT=str(PORT))
    conf["OPTIONS"] = {**conf.get("OPTIONS", {}), "options": "-c default_transaction_read_only=on"}
    open_replica(conf, django_db_blocker)
    try:
        with connections["replica"].cursor() as cursor:
            cursor.execute("SELECT pg_is_in_recovery(), inet_server_port()")
            assert cursor.fetchone() == (True, PORT)

        # Written on the primary ...
        world = build_world()
        doctor = hospital_doctor(world)
        record(world, T0, kinds.DOCUMENT_OPEN.name, user=doctor, org=world.hospital,
               patient=world.patient, document=add_document(world), basis=Basis.AKUTT,
               reason_text="Innlagt bevisstløs.")  # fmt: skip
        auditor = login(Client(), world.auditor, world.hospital)
        _wait_until_replayed()

        # ... shown by the log review from the replica, whose own log has the page's reads.
        logged_before = len(streaming_replica.logged())
        page = _search(auditor)
        assert "Hanne Sykehusdal" in page
        lag = BEHIND.search(page)
        assert UP_TO_DATE in page or (lag and int(lag.group(1)) <= 2), page  # others write to the primary too
        on_replica = streaming_replica.logged()[logged_before:]
        assert '"audit_accessevent"' in on_replica
        assert "pg_last_wal_replay_lsn" in on_replica
        assert "INSERT" not in on_replica

        # Replay paused: the replica falls behind, and the page says by how much.
        streaming_replica.sql("SELECT pg_wal_replay_pause()")
        deadline = time.monotonic() + 10
        while streaming_replica.sql("SELECT pg_get_wal_replay_pause_state()") != "paused":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(1.2)
        later = hospital_doctor(world, name="Per Pausesen", hpr="910000044")
        record(world, T0.replace(hour=11), kinds.DOCUMENT_OPEN.name, user=later, org=world.hospital,
               patient=world.patient, document=add_document(world), basis=Basis.AKUTT,
               reason_text="Ny innleggelse.")  # fmt: skip
        page = _search(auditor)
        lag = BEHIND.search(page)
        assert lag and int(lag.group(1)) >= 2, page
        assert "Per Pausesen" not in page  # not replayed yet: the page may lack it, and said so

        # Further behind than allowed: the primary answers, and the page says so.
        settings.REPLICA_MAX_LAG_SECONDS = 1.0
        page = _search(auditor)
        assert re.search(
            r"Lesekopien ligger \d+ sekunder etter, mer enn tillatt: loggen vises fra hoveddatabasen", page
        )
        assert "Per Pausesen" in page

        # Replayed again: from the replica, with the later event.
        streaming_replica.sql("SELECT pg_wal_replay_resume()")
        settings.REPLICA_MAX_LAG_SECONDS = 30.0
        _wait_until_replayed()
        logged_before = len(streaming_replica.logged())
        page = _search(auditor)
        assert "Per Pausesen" in page
        assert "Lesekopien ligger" not in page
        assert '"audit_accessevent"' in streaming_replica.logged()[logged_before:]

        # Stopped: the primary answers, never a 500, and the page says so.
        connections["replica"].close()
        streaming_replica.stop()
        page = _search(auditor)
        assert "Lesekopien er ikke tilgjengelig: loggen vises fra hoveddatabasen." in page
        assert "Per Pausesen" in page
    finally:
        close_replica()
