"""Benchmark the access log at national scale on PostgreSQL, and print the figures.

Loads N synthetic events with COPY (default 10 million, spread over the last twelve
months, with real hash chains), then measures:
- COPY rows/s, and single-event writes/s through the audit service: each call writes one
  event and returns once it is committed, as before a document's bytes leave. One caller;
  16 threads in one process; 4 processes of 16 threads (web workers). With the group
  writer (production on PostgreSQL) and, for comparison, one transaction per event;
- p50/p95 of the log questions with keyset paging (50 rows): by patient, by clinician,
  by organisation; first page and a deep page (a cursor far into the history).

Only for a disposable database: it writes millions of synthetic events. Example:
  createdb -h 127.0.0.1 -U postgres pjd_bench
  DATABASE_URL=postgres://postgres@127.0.0.1:5432/pjd_bench DEBUG=true \\
    .venv/bin/python manage.py migrate
  DATABASE_URL=... DEBUG=true .venv/bin/python manage.py benchmark_audit --database-is-disposable
"""

from __future__ import annotations

import datetime
import multiprocessing
import random
import statistics
import threading
import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connection, connections
from django.test import RequestFactory
from django.utils import timezone

from pjd_portal.access.policy import ClinicianFacts
from pjd_portal.accounts.audit_context import actor_of, point_of_care_of
from pjd_portal.accounts.models import User
from pjd_portal.auditlog import chain, events, group_commit
from pjd_portal.auditlog.models import AccessEvent, AuditChainHead
from pjd_portal.auditlog.services import record_event
from pjd_portal.patients.models import Patient

PAGE = 50
BULK_CHAIN = 999
EVENT_TYPES = [
    "patient_lookup",
    "basis_stated",
    "document_list",
    "document_open",
    "document_open",
    "document_open",
]


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def _write_threads(user: User, patients: list[Patient], threads: int, per_thread: int) -> list[float]:
    """`threads` callers, each writing `per_thread` events one at a time and waiting for each
    to be committed. Returns every call's latency in milliseconds."""

    latencies: list[float] = []

    def write(seed: int) -> None:
        rng = random.Random(seed)
        request = RequestFactory().get("/")
        request.user = user
        request.session = {}  # type: ignore[assignment]
        # As in a real request, the policy's facts (with the authorizations) are loaded.
        request._pjd_clinician_facts = ClinicianFacts(  # type: ignore[attr-defined]
            user_id=user.pk,
            hpr_number=user.hpr_number,
            authorizations=frozenset({"LE"}),
            organisation_id=None,
            organisation_kind=None,
            has_clinician_role=True,
        )
        mine = []
        try:
            for _ in range(per_thread):
                started = time.perf_counter()
                record_event(
                    events.kind("document_open")(outcome="granted", patient=rng.choice(patients)),
                    actor=actor_of(request),
                    where=point_of_care_of(request),
                )
                mine.append((time.perf_counter() - started) * 1000)
        finally:
            connections.close_all()
            latencies.extend(mine)  # list.extend is atomic under the GIL

    workers = [threading.Thread(target=write, args=(seed,)) for seed in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return latencies


def _child(go: Any, results: Any, work: tuple[User, list[Patient], int, int]) -> None:
    user, patients, threads, per_thread = work
    go.wait()
    latencies = _write_threads(user, patients, threads, per_thread)
    committer = group_commit.committer()
    results.put((latencies, committer.commits, committer.events))
    committer.stop()


class Command(BaseCommand):
    help = "Load synthetic events with COPY and print write rates and keyset query latencies (PostgreSQL)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--rows", type=int, default=10_000_000)
        parser.add_argument("--patients", type=int, default=100_000)
        parser.add_argument("--clinicians", type=int, default=20_000)
        parser.add_argument("--organisations", type=int, default=2_000)
        parser.add_argument("--single-writes", type=int, default=60_000)
        parser.add_argument(
            "--writers", type=int, default=16, help="concurrent writers (threads) per process"
        )
        parser.add_argument(
            "--processes", type=int, default=4, help="worker processes for the third write test"
        )
        parser.add_argument("--queries", type=int, default=200, help="timed queries per kind")
        parser.add_argument("--skip-load", action="store_true", help="measure on the rows already there")
        parser.add_argument("--database-is-disposable", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        if connection.vendor != "postgresql":
            raise CommandError("The benchmark is for PostgreSQL (DATABASE_URL=postgres://...).")
        if not options["database_is_disposable"]:
            raise CommandError("This writes millions of synthetic events: pass --database-is-disposable.")
        # As in production: DEBUG would keep every query's SQL in memory and time it.
        settings.DEBUG = False
        self.rng = random.Random(20261123)
        if not options["skip_load"]:
            patient_ids = self._patients(options["patients"])
            self._copy(options["rows"], patient_ids, options["clinicians"], options["organisations"])
            # As after any bulk load: vacuum now, so autovacuum does not do it during the
            # measurements (it did, and took a fifth off the write figures).
            started = time.monotonic()
            with connection.cursor() as cursor:
                cursor.execute("VACUUM (ANALYZE) audit_accessevent")
            self.stdout.write(f"VACUUM (ANALYZE) after the load: {time.monotonic() - started:.1f} s")
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE audit_accessevent")
            cursor.execute("SELECT count(*) FROM audit_accessevent")
            total = cursor.fetchone()[0]
        self.stdout.write(f"rows in the log: {total:,}")
        self._single_writes(options["single_writes"], options["writers"], options["processes"])
        self._queries(options["queries"])
        self._verify_sample()

    # --- loading -------------------------------------------------------------------

    def _patients(self, n: int) -> list[int]:
        existing = list(Patient.objects.filter(national_id__startswith="9").values_list("pk", flat=True)[:n])
        if len(existing) >= n:
            return existing
        started = time.monotonic()
        with connection.cursor() as cursor:
            with cursor.copy(
                "COPY patients_patient (national_id, national_id_kind, given_name, family_name, birth_date, "
                "gender, address, address_protection, fastlege_hpr_number) FROM STDIN"
            ) as copy:
                for i in range(n):
                    copy.write_row(
                        (
                            f"9{i:010d}",
                            "synthetic",
                            "Bench",
                            f"Patient{i}",
                            "1970-01-01",
                            "female",
                            "",
                            "",
                            "",
                        )
                    )
        self.stdout.write(f"patients: {n:,} in {time.monotonic() - started:.1f} s")
        return list(Patient.objects.filter(national_id__startswith="9").values_list("pk", flat=True)[:n])

    def _copy(self, rows: int, patient_ids: list[int], clinicians: int, organisations: int) -> None:
        """COPY in the text format, built in chunks. The synthetic rows go into one chain
        of their own (BULK_CHAIN, outside the service's 0-63, with seq numbers but no
        hashes): hashing ten million rows in Python would measure Python, not the
        database. verify_audit therefore reports that chain of a benchmark database as
        broken; the service's chains are unaffected."""

        now = timezone.now().astimezone(datetime.UTC)
        start = now - datetime.timedelta(days=365)
        with connection.cursor() as cursor:
            month = start.date().replace(day=1)
            while month <= now.date():
                cursor.execute("SELECT audit_ensure_partition(%s)", [month])
                month = (month + datetime.timedelta(days=32)).replace(day=1)
        patient_nid = dict(Patient.objects.filter(pk__in=patient_ids).values_list("pk", "national_id"))
        pids = list(patient_nid)
        step_us = (now - start) / datetime.timedelta(microseconds=1) / rows
        rng = self.rng
        columns = [
            "event_id", "occurred_at", "event_type", "outcome", "flagged_for_review", "actor_user_id",
            "actor_pid", "actor_hpr_number", "actor_name", "actor_authorizations", "organisation_orgnr",
            "organisation_name", "patient_id", "patient_national_id", "basis", "purpose_of_use",
            "request_id", "user_agent", "details", "chain", "chain_seq",
            "reason_code", "source_orgnr", "reason_text", "prev_hash", "entry_hash",
        ]  # fmt: skip
        started = time.monotonic()
        with connection.cursor() as cursor:
            with cursor.copy(f"COPY audit_accessevent ({', '.join(columns)}) FROM STDIN") as copy:
                chunk: list[str] = []
                for i in range(rows):
                    occurred = (start + datetime.timedelta(microseconds=int(i * step_us))).isoformat()
                    patient_id = pids[int(rng.random() * len(pids))]
                    actor = int(rng.random() * clinicians)
                    org = f"9{actor % organisations:08d}"
                    chunk.append(
                        f"{rng.getrandbits(128):032x}\t{occurred}\t{EVENT_TYPES[i % 6]}\tgranted\t"
                        f"{'t' if i % 97 == 0 else 'f'}\t{1_000_000 + actor}\t{actor:011d}\t{900000000 + actor}\t"
                        f"Kliniker {actor}\tLE\t{org}\tVirksomhet {org}\t{patient_id}\t{patient_nid[patient_id]}\t"
                        f"UNNTAK\tTREAT\t{i:032x}\tbenchmark\t{{}}\t{BULK_CHAIN}\t{i + 1}\t\t\t\t\t\n"
                    )
                    if len(chunk) == 20_000:
                        copy.write("".join(chunk))
                        chunk.clear()
                    if i and i % 1_000_000 == 0:
                        self.stdout.write(f"  {i:,} rows …")
                copy.write("".join(chunk))
        seconds = time.monotonic() - started
        self.stdout.write(f"COPY: {rows:,} rows in {seconds:.1f} s = {rows / seconds:,.0f} rows/s")

    # --- writes through the service -------------------------------------------------

    def _single_writes(self, n: int, writers: int, processes: int) -> None:
        """Single events through the service, each caller waiting for its own commit, as a
        request does before a document's bytes leave. Three shapes: one caller at a time;
        `writers` threads in one process (a threaded WSGI worker); `processes` worker
        processes with `writers` threads each. Both with the group writer (the production
        path on PostgreSQL) and, for comparison, with one transaction per event."""

        user, _ = User.objects.get_or_create(
            username="benchmark-clinician", defaults={"pid": "99999999999", "hpr_number": "999999999"}
        )
        patients = list(Patient.objects.filter(pk__in=Patient.objects.values("pk")[:1000]))
        for group in (True, False):
            settings.AUDIT_GROUP_COMMIT = group
            label = "group commit" if group else "one transaction per event"
            # The per-event path is shown for comparison only, on fewer events (it is slow).
            shapes = [("1 writer", 1, 1, n // 4), (f"{writers} writers", 1, writers, n if group else n // 4)]
            if group:
                shapes.append((f"{processes} processes x {writers} writers", processes, writers, n))
            for shape, procs, threads, count in shapes:
                seconds, latencies, commits, events = self._run_writers(user, patients, procs, threads, count)
                written = len(latencies)
                if written < count // (procs * threads) * procs * threads:
                    raise CommandError(
                        f"{shape}: only {written:,} of the events were written (see the errors above)"
                    )
                batch = f", {events / max(commits, 1):.1f} events/commit" if group else ""
                self.stdout.write(
                    f"single-event writes, {label}, {shape}: {written:,} in {seconds:.2f} s = "
                    f"{written / seconds:,.0f} events/s{batch}; each call waits for its commit: "
                    f"p50 {percentile(latencies, 50):.2f} ms, p95 {percentile(latencies, 95):.2f} ms"
                )
        settings.AUDIT_GROUP_COMMIT = True

    def _run_writers(
        self, user: User, patients: list[Patient], procs: int, threads: int, count: int
    ) -> tuple[float, list[float], int, int]:
        """Seconds, per-call latencies, and the group writers' commits and events."""

        per_thread = count // (procs * threads)
        committer = group_commit.committer()
        if procs == 1:
            commits, events = committer.commits, committer.events
            started = time.monotonic()
            latencies = _write_threads(user, patients, threads, per_thread)
            seconds = time.monotonic() - started
            result = (seconds, latencies, committer.commits - commits, committer.events - events)
            committer.stop()
            return result
        connections.close_all()  # a forked child must not share the parent's connection
        committer.stop()
        ctx = multiprocessing.get_context("fork")
        go, results = ctx.Event(), ctx.Queue()
        children = [
            ctx.Process(target=_child, args=(go, results, (user, patients, threads, per_thread)))
            for _ in range(procs)
        ]
        for child in children:
            child.start()
        time.sleep(1.0)  # let the children start before the clock does
        started = time.monotonic()
        go.set()
        reports = [results.get(timeout=600) for _ in children]
        seconds = time.monotonic() - started
        for child in children:
            child.join()
        if any(child.exitcode for child in children):
            raise CommandError("a writer process failed")
        latencies = [ms for report in reports for ms in report[0]]
        return seconds, latencies, sum(r[1] for r in reports), sum(r[2] for r in reports)

    # --- the log questions ---------------------------------------------------------

    def _queries(self, per_kind: int) -> None:
        table = AccessEvent._meta.db_table
        kinds = {
            "patient": "patient_id",
            "clinician": "actor_user_id",
            "organisation": "organisation_orgnr",
        }
        with connection.cursor() as cursor:
            for kind, column in kinds.items():
                cursor.execute(
                    f"SELECT {column} FROM {table} TABLESAMPLE SYSTEM (0.1) WHERE {column} IS NOT NULL LIMIT %s",  # noqa: S608
                    [per_kind * 5],
                )
                keys = list({row[0] for row in cursor.fetchall()})[:per_kind]
                first, deep, depth = [], [], []
                for key in keys:
                    sql = (
                        f"SELECT id, occurred_at, event_type, actor_name, organisation_name, basis "  # noqa: S608
                        f"FROM {table} WHERE {column} = %s "
                        "AND (occurred_at, id) < (%s, %s) ORDER BY occurred_at DESC, id DESC LIMIT %s"
                    )
                    far = datetime.datetime(9999, 1, 1, tzinfo=datetime.UTC)
                    started = time.perf_counter()
                    cursor.execute(sql, [key, far, 0, PAGE])
                    cursor.fetchall()
                    first.append((time.perf_counter() - started) * 1000)
                    # A deep cursor: the oldest quarter of this key's history (not timed).
                    cursor.execute(
                        f"SELECT count(*) FROM {table} WHERE {column} = %s",  # noqa: S608
                        [key],
                    )
                    count = cursor.fetchone()[0]
                    cursor.execute(
                        f"SELECT occurred_at, id FROM {table} WHERE {column} = %s "  # noqa: S608
                        "ORDER BY occurred_at DESC, id DESC OFFSET %s LIMIT 1",
                        [key, max(0, count * 3 // 4)],
                    )
                    cursor_row = cursor.fetchone()
                    if cursor_row is None:
                        continue
                    depth.append(count * 3 // 4 // PAGE)
                    started = time.perf_counter()
                    cursor.execute(sql, [key, cursor_row[0], cursor_row[1], PAGE])
                    cursor.fetchall()
                    deep.append((time.perf_counter() - started) * 1000)
                self.stdout.write(
                    f"{kind:<12} first page p50 {percentile(first, 50):.2f} ms p95 {percentile(first, 95):.2f} ms | "
                    f"deep page (page ~{statistics.median(depth or [0]):.0f}) p50 {percentile(deep or [0], 50):.2f} ms "
                    f"p95 {percentile(deep or [0], 95):.2f} ms | {len(keys)} keys"
                )

    def _verify_sample(self) -> None:
        """The chains the service wrote during the write test must be whole."""
        heads = {h.chain: h for h in AuditChainHead.objects.all()}
        started = time.monotonic()
        broken = [b for c, head in heads.items() if (b := chain.verify_chain(c, head)[1]) is not None]
        seconds = time.monotonic() - started
        self.stdout.write(
            f"verify ({len(heads)} service-written chains): {broken or 'OK'} in {seconds:.1f} s"
        )
