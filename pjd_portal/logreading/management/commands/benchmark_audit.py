"""Benchmark the access log at national scale on PostgreSQL, and print the figures.

Loads N synthetic events with COPY (default 10 million, spread over the last twelve
months), then measures, for each write path (`--path plain|group|both`, side by side):
- single-event writes/s: each call builds one event from an Actor and a PointOfCare and
  returns once it is committed, as before a document's bytes leave. One caller; 16
  threads in one process; 4 processes of 16 threads (web workers). The shapes alternate
  between the paths, so a noisy neighbour hits both alike.
  `group` is the writer as it is (`audit.writer.write`: the group writer on PostgreSQL).
  `plain` is the plain path the group writer was measured against (docs/audit-log.md):
  one ORM INSERT per event in autocommit, its own durable transaction, unchained. Its
  sealer, which would chain those rows afterwards, was measured too (it fell behind) and
  is not in the code any more; without it, `plain` is an upper bound for that path;
- p50/p95 of the log questions with keyset paging (50 rows): by patient, by clinician,
  by organisation; first page and a deep page (a cursor far into the history).

Only for a disposable database: it writes millions of synthetic events. Example:
  createdb -h 127.0.0.1 -U postgres pjd_bench
  DATABASE_URL=postgres://postgres@127.0.0.1:5432/pjd_bench DEBUG=true \\
    .venv/bin/python manage.py migrate
  DATABASE_URL=... DEBUG=true .venv/bin/python manage.py benchmark_audit --database-is-disposable

The log has no database foreign keys, so the events refer to plain integer ids and
synthetic national ids: the benchmark needs no other table of the portal.
"""

from __future__ import annotations

import datetime
import multiprocessing
import random
import statistics
import threading
import time
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connection, connections
from django.utils import timezone

from pjd_portal.auditlog import chain, events, group_commit, writer
from pjd_portal.auditlog.actor import Actor, PointOfCare
from pjd_portal.auditlog.events import Outcome
from pjd_portal.auditlog.models import AccessEvent, AuditChainHead
from pjd_portal.auditlog.services import build_event
from pjd_portal.logreading import auditor_bench

PAGE = 50
BULK_CHAIN = 999
# The plain path's rows: unchained, so kept out of every chain the writer uses (and, like
# the bulk rows, reported by verify_audit on a benchmark database).
PLAIN_CHAIN = 998
EVENT_TYPES = [
    "patient_lookup",
    "basis_stated",
    "document_list",
    "document_open",
    "document_open",
    "document_open",
]
ACTOR = Actor(
    user_id=1_999_999,
    pid="99999999999",
    hpr_number="999999999",
    name="Benchmark Kliniker",
    authorizations=frozenset({"LE"}),
    request_id="benchmark",
    client_ip="10.0.0.1",
    user_agent="benchmark",
)
WHERE = PointOfCare(
    orgnr="999999999",
    name="Benchmark legekontor",
    legal_entity_orgnr="999999998",
    legal_entity_name="Benchmark kommune",
)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def national_id(patient_id: int) -> str:
    return f"9{patient_id:010d}"


@dataclass(frozen=True)
class _Synthetic:
    event_type: str
    outcome: str
    actor: int
    orgnr: str
    patient_id: int | None
    national_id: str
    basis: str
    reason_code: str
    source_orgnr: str


# A few clinicians with very many events: (share of all events, first hour UTC, hours a
# day they work, their organisation's rank). The first goes through lists in one hour a
# day (so "many patients" fires), one works nights.
HEAVY_CLINICIANS = [(0.02, 8, 1, 0), (0.015, 6, 10, 0), (0.01, 6, 10, 1), (0.01, 0, 24, 2), (0.005, 18, 6, 0)]
HEAVY_PATIENTS = 10  # patients 1..10: 0.2 % of the events each
HOSPITALS = 20  # the largest organisations: most documents read elsewhere are theirs
PROTECTED_EVERY = 500  # every 500th patient has a protected address (for the stored signals)


class Skew:
    """The synthetic log's shape. Organisation k's share of the clinicians falls off as
    k^(-2/3) (the largest has about 8 %); clinician c is drawn with weight ~ c^(-1/2);
    on top of that the HEAVY_CLINICIANS and HEAVY_PATIENTS. Document lists and opens read
    a document of the clinician's own organisation (55 %), of one of the HOSPITALS (35 %,
    the largest most often) or have no source (10 %). 80 % of the other clinicians'
    accesses fall between 05 and 15 UTC."""

    def __init__(self, rng: random.Random, patients: int, clinicians: int, organisations: int) -> None:
        self.rng = rng
        self.patients = patients
        self.clinicians = clinicians
        self.organisations = organisations
        self.org_of = [int(organisations * rng.random() ** 3) for _ in range(clinicians)]
        self.heavy = []
        share = 0.0
        for i, (part, hour, hours, rank) in enumerate(HEAVY_CLINICIANS):
            share += part
            self.heavy.append((share, i, hour, hours))
            self.org_of[i] = rank
        self.heavy_share = share

    @staticmethod
    def orgnr(index: int) -> str:
        return f"9{index:08d}"

    @staticmethod
    def pid(actor: int) -> str:
        return f"{actor:011d}"

    @staticmethod
    def hpr(actor: int) -> str:
        return str(900000000 + actor)

    def second_of_day(self, actor: int) -> int:
        rng = self.rng
        for _share, index, hour, hours in self.heavy:
            if index == actor:
                return int((hour + rng.random() * hours) * 3600) % 86400
        if rng.random() < 0.8:
            return int((5 + rng.random() * 10) * 3600)
        return int(rng.random() * 86400)

    def kind(self, i: int) -> tuple[str, str, str, str]:
        """(event type, outcome, basis, reason code): the usual accesses, with refusals
        (some by a blocked clinician), emergency access, logins and log searches."""

        rng = self.rng
        kind = rng.random()
        if kind < 0.02:
            return "access_denied", "denied", "", "clinician_blocked" if rng.random() < 0.1 else "no_basis"
        if kind < 0.025:
            return "emergency_access", "granted", "AKUTT", ""
        if kind < 0.035:
            return "basis_stated", "granted", "AKUTT", ""
        if kind < 0.06:
            return "login", "granted", "", ""
        if kind < 0.0605:
            return "log_search", "granted", "", ""
        event_type = EVENT_TYPES[i % 6]
        return event_type, "granted", "UNNTAK" if event_type == "basis_stated" else "", ""

    def event(self, i: int) -> _Synthetic:
        rng = self.rng
        u = rng.random()
        actor = -1
        if u < self.heavy_share:
            actor = next(index for share, index, _h, _n in self.heavy if u < share)
        else:
            actor = len(HEAVY_CLINICIANS) + int((self.clinicians - len(HEAVY_CLINICIANS)) * rng.random() ** 2)
        org = self.org_of[actor]
        if rng.random() < HEAVY_PATIENTS * 0.002:
            patient: int | None = 1 + int(rng.random() * HEAVY_PATIENTS)
        else:
            patient = 1 + HEAVY_PATIENTS + int(rng.random() * (self.patients - HEAVY_PATIENTS))
        event_type, outcome, basis, reason = self.kind(i)
        if event_type in ("login", "log_search"):
            patient = None
        source = ""
        if event_type in ("document_list", "document_open"):
            where = rng.random()
            if where < 0.55:
                source = self.orgnr(org)
            elif where < 0.9:
                source = self.orgnr(int(HOSPITALS * rng.random() ** 2))
        national = national_id(patient) if patient is not None else ""
        if patient is not None and event_type == "patient_lookup" and rng.random() < 0.001:
            patient, national = None, self.pid(actor)  # a clinician looking up themselves
        return _Synthetic(
            event_type, outcome, actor, self.orgnr(org), patient, national, basis, reason, source
        )


@dataclass(frozen=True)
class _Patient:
    """A synthetic patient as the log sees one (the table has no foreign keys to check)."""

    pk: int
    national_id: str


def document_open(actor: Actor, where: PointOfCare, patient_id: int) -> AccessEvent:
    """A document_open event built by the service itself, as a request's would be."""

    return build_event(
        events.DOCUMENT_OPEN(
            outcome=Outcome.GRANTED,
            patient=_Patient(patient_id, national_id(patient_id)),
            nhn_event_id=str(patient_id % 97),
        ),
        actor=actor,
        where=where,
    )


def _write_threads(path: str, patients: list[int], threads: int, per_thread: int) -> list[float]:
    """`threads` callers, each writing `per_thread` events one at a time and waiting for each
    to be committed. Returns every call's latency in milliseconds."""

    latencies: list[float] = []

    def write(seed: int) -> None:
        rng = random.Random(seed)
        mine = []
        try:
            for _ in range(per_thread):
                started = time.perf_counter()
                event = document_open(ACTOR, WHERE, rng.choice(patients))
                if path == "plain":
                    # One INSERT in autocommit: its own transaction, durable on return.
                    event.chain = PLAIN_CHAIN
                    event.save(force_insert=True)
                else:
                    writer.write(event)
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


def _child(go: Any, results: Any, work: tuple[str, list[int], int, int]) -> None:
    path, patients, threads, per_thread = work
    go.wait()
    latencies = _write_threads(path, patients, threads, per_thread)
    committer = group_commit.committer()
    results.put((latencies, committer.commits, committer.events))
    committer.stop()


@dataclass
class Figure:
    path: str
    shape: str
    events: int
    seconds: float
    latencies: list[float]
    commits: int

    @property
    def rate(self) -> float:
        return self.events / self.seconds


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
        parser.add_argument(
            "--path", choices=["plain", "group", "both"], default="both", help="the write path(s) to measure"
        )
        parser.add_argument("--queries", type=int, default=200, help="timed queries per kind")
        parser.add_argument(
            "--auditor-queries", type=int, default=100, help="timed auditor searches per kind and page"
        )
        parser.add_argument(
            "--before-queries",
            type=int,
            default=3,
            help="timed searches per kind and page in the old query shapes (0: leave them out)",
        )
        parser.add_argument("--skip-load", action="store_true", help="measure on the rows already there")
        parser.add_argument("--load-only", action="store_true", help="load the rows and stop")
        parser.add_argument("--skip-writes", action="store_true", help="leave out the write tests")
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
            self._copy(options["rows"], options["patients"], options["clinicians"], options["organisations"])
            # As after any bulk load: vacuum now, so autovacuum does not do it during the
            # measurements (it did, and took a fifth off the write figures).
            started = time.monotonic()
            with connection.cursor() as cursor:
                cursor.execute("VACUUM (ANALYZE) audit_accessevent")
            self.stdout.write(f"VACUUM (ANALYZE) after the load: {time.monotonic() - started:.1f} s")
            auditor_bench.bulk_signals(self.stdout)
        if options["load_only"]:
            return
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE audit_accessevent")
            cursor.execute("SELECT count(*) FROM audit_accessevent")
            total = cursor.fetchone()[0]
        self.stdout.write(f"rows in the log: {total:,}")
        if not options["skip_writes"]:
            paths = ["group", "plain"] if options["path"] == "both" else [options["path"]]
            patients = list(range(1, options["patients"] + 1))
            figures = self._single_writes(
                paths, patients, options["single_writes"], options["writers"], options["processes"]
            )
            self._table(figures)
        self._queries(options["queries"])
        auditor_bench.measure(
            self.stdout, self.rng, per_kind=options["auditor_queries"], before=options["before_queries"]
        )
        if not options["skip_writes"]:
            self._verify_sample()

    # --- loading -------------------------------------------------------------------

    def _copy(self, rows: int, patients: int, clinicians: int, organisations: int) -> None:
        """COPY in the text format, built in chunks, with the skew of a real log
        (`Skew`): a few organisations with most of the events, a few clinicians and
        patients with very many, documents of other organisations (hospitals) read, most
        accesses in the daytime. The synthetic rows go into one chain of their own
        (BULK_CHAIN, outside every chain the writer uses, with seq numbers but no hashes):
        hashing ten million rows in Python would measure Python, not the database.
        verify_audit therefore reports that chain of a benchmark database as broken; the
        writer's chains are unaffected."""

        now = timezone.now().astimezone(datetime.UTC)
        start = now - datetime.timedelta(days=365)
        with connection.cursor() as cursor:
            month = start.date().replace(day=1)
            while month <= now.date():
                cursor.execute("SELECT audit_ensure_partition(%s)", [month])
                month = (month + datetime.timedelta(days=32)).replace(day=1)
        skew = Skew(self.rng, patients, clinicians, organisations)
        first_day = datetime.datetime.combine(start.date(), datetime.time.min, tzinfo=datetime.UTC)
        days = (now - first_day).days
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
                    e = skew.event(i)
                    second = skew.second_of_day(e.actor)
                    occurred = first_day + datetime.timedelta(days=i * days // rows, seconds=second)
                    if occurred > now:
                        occurred = now - datetime.timedelta(seconds=rows - i)
                    patient = "\\N" if e.patient_id is None else str(e.patient_id)
                    chunk.append(
                        f"{self.rng.getrandbits(128):032x}\t{occurred.isoformat()}\t{e.event_type}\t{e.outcome}\t"
                        f"{'t' if e.basis == 'AKUTT' else 'f'}\t{1_000_000 + e.actor}\t{skew.pid(e.actor)}\t"
                        f"{skew.hpr(e.actor)}\tKliniker {e.actor}\tLE\t{e.orgnr}\tVirksomhet {e.orgnr}\t"
                        f"{patient}\t{e.national_id}\t{e.basis}\tTREAT\t{i:032x}\tbenchmark\t{{}}\t"
                        f"{BULK_CHAIN}\t{i + 1}\t{e.reason_code}\t{e.source_orgnr}\t\t\t\n"
                    )
                    if len(chunk) == 20_000:
                        copy.write("".join(chunk))
                        chunk.clear()
                    if i and i % 1_000_000 == 0:
                        self.stdout.write(f"  {i:,} rows …")
                copy.write("".join(chunk))
        seconds = time.monotonic() - started
        self.stdout.write(f"COPY: {rows:,} rows in {seconds:.1f} s = {rows / seconds:,.0f} rows/s")

    # --- writes through the writer ---------------------------------------------------

    def _single_writes(
        self, paths: list[str], patients: list[int], n: int, writers: int, processes: int
    ) -> list[Figure]:
        """Single events through the writer, each caller waiting for its own commit, as a
        request does before a document's bytes leave. Three shapes: one caller at a time;
        `writers` threads in one process (a threaded WSGI worker); `processes` worker
        processes with `writers` threads each. Each shape is run for every path before the
        next shape, so the paths are measured side by side."""

        shapes = [
            ("1 writer", 1, 1, n // 4),
            (f"1 process x {writers} threads", 1, writers, n),
            (f"{processes} processes x {writers} threads", processes, writers, n),
        ]
        figures = []
        for shape, procs, threads, count in shapes:
            for path in paths:
                figure = self._run_shape(
                    path, shape, patients=patients, procs=procs, threads=threads, count=count
                )
                figures.append(figure)
                batch = (
                    f", {figure.events / max(figure.commits, 1):.1f} events/commit" if path == "group" else ""
                )
                self.stdout.write(
                    f"{path}, {shape}: {figure.events:,} in {figure.seconds:.2f} s = {figure.rate:,.0f} events/s; "
                    f"p50 {percentile(figure.latencies, 50):.2f} ms, p95 {percentile(figure.latencies, 95):.2f} ms"
                    f"{batch}"
                )
        return figures

    def _run_shape(
        self, path: str, shape: str, *, patients: list[int], procs: int, threads: int, count: int
    ) -> Figure:
        per_thread = count // (procs * threads)
        connections.close_all()  # a forked child must not share the parent's connection
        group_commit.committer().stop()
        ctx = multiprocessing.get_context("fork")
        go, results = ctx.Event(), ctx.Queue()
        # Every shape runs in fresh processes, the single process too: no path inherits
        # another's threads, connections or warmed caches.
        children = [
            ctx.Process(target=_child, args=(go, results, (path, patients, threads, per_thread)))
            for _ in range(procs)
        ]
        for child in children:
            child.start()
        time.sleep(1.0)  # let the children start before the clock does
        started = time.monotonic()
        go.set()
        reports = [results.get(timeout=900) for _ in children]
        seconds = time.monotonic() - started
        for child in children:
            child.join()
        if any(child.exitcode for child in children):
            raise CommandError("a writer process failed")
        latencies = [ms for report in reports for ms in report[0]]
        if len(latencies) < per_thread * procs * threads:
            raise CommandError(f"{path}, {shape}: only {len(latencies):,} events were written")
        return Figure(path, shape, len(latencies), seconds, latencies, sum(r[1] for r in reports))

    def _table(self, figures: list[Figure]) -> None:
        self.stdout.write("")
        self.stdout.write("| path | shape | events | events/s | p50 ms | p95 ms | note |")
        self.stdout.write("|---|---|---|---|---|---|---|")
        for f in figures:
            note = (
                f"{f.events / max(f.commits, 1):.1f} events/commit"
                if f.path == "group"
                else "one commit each"
            )
            self.stdout.write(
                f"| {f.path} | {f.shape} | {f.events:,} | {f.rate:,.0f} | {percentile(f.latencies, 50):.2f} | "
                f"{percentile(f.latencies, 95):.2f} | {note} |"
            )
        self.stdout.write("")

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
                    f"{kind:<12} first page p50 {percentile(first or [0], 50):.2f} ms p95 {percentile(first or [0], 95):.2f} ms | "
                    f"deep page (page ~{statistics.median(depth or [0]):.0f}) p50 {percentile(deep or [0], 50):.2f} ms "
                    f"p95 {percentile(deep or [0], 95):.2f} ms | {len(keys)} keys"
                )

    def _verify_sample(self) -> None:
        """The chains the writers wrote during the write tests must be whole (the bulk
        rows' chain has no hashes and is left out)."""
        heads = {h.chain: h for h in AuditChainHead.objects.exclude(chain__in=[BULK_CHAIN, PLAIN_CHAIN])}
        started = time.monotonic()
        broken = []
        checked = 0
        for c, head in heads.items():
            count, link = chain.verify_chain(c, head)
            checked += count
            if link is not None:
                broken.append(link)
        seconds = time.monotonic() - started
        self.stdout.write(
            f"verify ({len(heads)} writer-written chains, {checked:,} events): {broken or 'OK'} in {seconds:.1f} s"
        )
