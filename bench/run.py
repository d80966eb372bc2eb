"""The benchmark: `make bench` (the full profile) and `make bench-smoke` (BENCH_PROFILE=smoke).

One run: PostgreSQL and Redis up, the disposable database `pjd_bench` migrated and its data
set built (kept between runs; BENCH_FRESH=1 builds it anew), the portal started in
production mode under granian, logged-in bench clinicians made, each route's database round
trips read from the headers bench/middleware.py sets (a few sequential requests), then wrk
over every (route, concurrency) in turn, round after round, and the medians printed and
written to var/bench/<timestamp>.json and var/bench/latest.json.

The smoke profile fails (exit 1) on errors and on round trips above ROUND_TRIP_BUDGET,
never on timings: CI machines differ too much for those.
"""

from __future__ import annotations

import datetime
import http.client
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import urlencode

import psycopg

ROOT = Path(__file__).resolve().parent.parent
VAR = ROOT / "var" / "bench"
PY = str(ROOT / ".venv" / "bin" / "python")
GRANIAN = str(ROOT / ".venv" / "bin" / "granian")
LUA = str(ROOT / "bench" / "lua" / "jobs.lua")
HOST = "127.0.0.1"
PORT = int(os.environ.get("BENCH_PORT", "8400"))
DATABASE = "pjd_bench"  # the only database this touches; others share the server
PG = "postgres://postgres@127.0.0.1:5432"
# Two worker processes for the machine's two cores; four threads in each, because a request
# spends part of its time waiting on the database (a commit waits for its WAL flush) and on
# the access log's group commit, which batches only the events of requests waiting at the
# same time in one process. On this 2-core machine (2026-12-02, 3 s runs, twice each) 4
# threads beat 1 by 1.5-2.5x at concurrency 16 and 64 on every request; 8 were no better
# than 4 (BENCH_THREADS to try others).
WORKERS = 2
THREADS = int(os.environ.get("BENCH_THREADS", "4"))

# The budget: round trips on the request's own connection, and the access log's group
# writer's commands meanwhile (one statement per event at concurrency 1; shared by many
# events under load). The smoke profile fails above them (tests/test_query_budget.py
# asserts the same per view in make test).
ROUND_TRIP_BUDGET: dict[str, dict[str, int]] = {
    "hello": {"round_trips": 0, "audit_writer": 0},
    # The user row with the facts version; the session comes from the shared cache.
    "hello_session": {"round_trips": 1, "audit_writer": 0},
    "lookup": {"round_trips": 3, "audit_writer": 1},  # the user, the patient, the handle; its event
    "basis": {"round_trips": 3, "audit_writer": 1},  # the user, the handle's facts, the attest; its event
    "list": {"round_trips": 3, "audit_writer": 1},  # the user, the handle's facts, the page; its event
    "list_1000": {"round_trips": 3, "audit_writer": 1},
    "open_2k": {"round_trips": 3, "audit_writer": 1},  # the user, the handle's facts, the document
    "open_200k": {"round_trips": 3, "audit_writer": 1},
}


@dataclass(frozen=True)
class Profile:
    name: str
    patients: int
    rounds: int
    concurrency: tuple[int, ...]
    duration: int  # seconds per wrk run
    sessions: int
    pool: int  # basis handles per session


PROFILES = {
    "full": Profile("full", 10_000, 3, (1, 16, 64), 5, 64, 200),
    "smoke": Profile("smoke", 200, 1, (1, 16), 2, 16, 200),
}


def log(message: str) -> None:
    print(f"[bench] {message}", flush=True)


# --- the environment: services, database, server -----------------------------------


def environment() -> dict[str, str]:
    """Production mode with synthetic values: DEBUG off, so settings.py's checks apply;
    synthetic ids allowed only because PJD_TEST_ENVIRONMENT says this is a test. Plain
    http on the loopback: SECURE_COOKIES=false gives the cookies their plain names (no
    __Host- prefix, no Secure flag, which a client would not send back over http) and
    SECURE_SSL_REDIRECT=false keeps the portal from redirecting to https."""

    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "bench.settings",
        "DEBUG": "false",
        "PJD_TEST_ENVIRONMENT": "true",
        "PJD_ALLOW_SYNTHETIC_IDS": "true",
        "PJD_TEST_IDENTITIES": "false",
        "SECRET_KEY": "bench-only-synthetic-secret-key-0123456789abcdefghijklmnopqrstuvwxyz",
        "PJD_AUDIT_ANCHOR_KEY": "bench-only-synthetic-anchor-key-0123456789abcdef",
        "ALLOWED_HOSTS": f"{HOST},localhost",
        "SECURE_COOKIES": "false",
        "SECURE_SSL_REDIRECT": "false",
        "OIDC_ISSUER": "http://127.0.0.1:9000",  # never called: the sessions are made directly
        "DATABASE_URL": f"{PG}/{DATABASE}",
        "PJD_CACHE_URL": "redis://127.0.0.1:6379/5",
        # Its few sessions make thousands of lookups a minute: limits no clinician reaches,
        # so that every lookup is counted (its cost measured) and none refused.
        "PJD_RATE_LOOKUPS_PER_MINUTE": "1000000000",
        "PJD_RATE_LOOKUPS_PER_HOUR": "1000000000",
        "PJD_SERVER_TIMING": "true",
        "LOG_LEVEL": "WARNING",
    }


def ensure_services() -> None:
    if shutil.which("wrk") is None:
        log("wrk is missing; installing Debian's package")
        if subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=False).returncode != 0:
            subprocess.run(["apt-get", "update", "-qq"], check=True)
            subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True)
    if subprocess.run(["pg_isready", "-h", HOST, "-p", "5432", "-q"], check=False).returncode != 0:
        log("PostgreSQL is not up; starting it")
        (version,) = os.listdir("/etc/postgresql")
        subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start"], check=True)
        _wait_for(
            lambda: (
                subprocess.run(["pg_isready", "-h", HOST, "-p", "5432", "-q"], check=False).returncode == 0
            )
        )
    ping = ["redis-cli", "-h", HOST, "-p", "6379", "ping"]
    if subprocess.run(ping, check=False, capture_output=True).returncode != 0:
        log("Redis is not up; starting it")
        subprocess.run(
            ["redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "-::1", "--port", "6379", "--save", "",
             "--appendonly", "no", "--dir", "/var/lib/redis", "--logfile", "/var/log/redis/ci.log"],
            check=True,
        )  # fmt: skip
        _wait_for(lambda: subprocess.run(ping, check=False, capture_output=True).returncode == 0)


def _wait_for(ready: Callable[[], bool], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not ready():
        if time.monotonic() > deadline:
            raise SystemExit("FAIL: a service did not come up")
        time.sleep(0.5)


def prepare_database(profile: Profile, env: dict[str, str]) -> None:
    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE]).fetchone()
        if exists and os.environ.get("BENCH_FRESH") == "1":
            log(f"BENCH_FRESH=1: dropping {DATABASE}")
            conn.execute(f"DROP DATABASE {DATABASE} WITH (FORCE)")
            exists = None
        if not exists:
            conn.execute(f"CREATE DATABASE {DATABASE}")
    manage(env, "migrate", "--noinput", quiet=True)
    # Production serves static files by their hashed names from the manifest (WhiteNoise).
    manage(env, "collectstatic", "--noinput", quiet=True)
    # Idempotent: on a database that has the data set this only checks it is there.
    manage(env, "bench_data", "--patients", str(profile.patients))


def manage(env: dict[str, str], *args: str, quiet: bool = False) -> str:
    result = subprocess.run(
        [PY, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        sys.stderr.write(result.stdout + result.stderr)
        raise SystemExit(f"FAIL: manage.py {args[0]}")
    if not quiet and result.stdout.strip() and args[0] != "bench_sessions":
        log(result.stdout.strip().splitlines()[-1])
    return result.stdout


@contextmanager
def granian(env: dict[str, str]) -> Iterator[None]:
    """The portal under granian for the block's duration; stopped however the block ends
    (an error, Ctrl-C, SIGTERM: the handlers in main turn those into exceptions)."""

    VAR.mkdir(parents=True, exist_ok=True)
    with (VAR / "granian.log").open("w") as server_log:
        process = subprocess.Popen(
            [GRANIAN, "--interface", "wsgi", "--host", HOST, "--port", str(PORT),
             "--workers", str(WORKERS), "--blocking-threads", str(THREADS),
             "--no-ws", "--no-access-log", "pjd_portal.wsgi:application"],
            cwd=ROOT, env=env, stdout=server_log, stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopped as one, by its id
        )  # fmt: skip
        try:
            _wait_for(lambda: _up(process), seconds=60)
            log(f"granian up on http://{HOST}:{PORT} ({WORKERS} workers x {THREADS} threads)")
            yield
        finally:
            _stop(process)


def _up(process: subprocess.Popen[bytes]) -> bool:
    if process.poll() is not None:
        raise SystemExit(f"FAIL: granian exited ({process.returncode}); see {VAR / 'granian.log'}")
    try:
        return get("/hello").status == 200
    except OSError:
        return False


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=5)
    log("granian stopped")


# --- HTTP, sequentially (the setup and the round-trip probes) ----------------------


@dataclass
class Answer:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def header(self, name: str) -> str:
        return self.headers.get(name, "")


def _request(method: str, path: str, cookie: str = "", body: str = "") -> Answer:
    conn = http.client.HTTPConnection(HOST, PORT, timeout=30)
    headers = {"Cookie": cookie} if cookie else {}
    if body:
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    try:
        conn.request(method, path, body=body or None, headers=headers)
        response = conn.getresponse()
        return Answer(response.status, response.headers, response.read())
    finally:
        conn.close()


def get(path: str, cookie: str = "") -> Answer:
    return _request("GET", path, cookie)


def post(path: str, cookie: str, body: dict[str, str]) -> Answer:
    return _request("POST", path, cookie, urlencode(body))


# --- the bench clinicians -------------------------------------------------------------


@dataclass
class Session:
    cookie: str  # the Cookie header: session and CSRF cookies
    csrf: str
    pool: list[str]
    bench_handle: str = ""
    heavy_handle: str = ""


@dataclass
class World:
    sessions: list[Session]
    lookup_patients: list[str]
    bench_patient: str
    heavy_patient: str
    small_document: str
    large_document: str
    basis_cursor: int = 0
    basis_lines: list[str] = field(default_factory=list)


def make_world(profile: Profile, env: dict[str, str]) -> World:
    out = VAR / "sessions.json"
    manage(
        env,
        "bench_sessions",
        "--count",
        str(profile.sessions),
        "--pool",
        str(profile.pool),
        "--out",
        str(out),
    )
    made = json.loads(out.read_text(encoding="utf-8"))
    sessions = []
    for entry in made["sessions"]:
        session_cookie = f"{made['cookie_name']}={entry['key']}"
        # The CSRF token as a browser gets it: the lookup page, with the session cookie.
        page = get("/", session_cookie)
        token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page.body)
        set_cookies = " ".join(page.headers.get_all("Set-Cookie") or [])
        csrf_cookie = re.search(rf"{made['csrf_cookie_name']}=([^;]+)", set_cookies)
        if page.status != 200 or token is None or csrf_cookie is None:
            raise SystemExit(f"FAIL: the lookup page answered {page.status} without a CSRF token")
        cookie = f"{session_cookie}; {made['csrf_cookie_name']}={csrf_cookie.group(1)}"
        sessions.append(Session(cookie, token.group(1).decode(), entry["pool"]))
    world = World(
        sessions,
        made["lookup_patients"],
        made["bench_patient"],
        made["heavy_patient"],
        made["small_document"],
        made["large_document"],
    )
    for session in world.sessions:
        session.bench_handle = _attested(session, world.bench_patient)
        session.heavy_handle = _attested(session, world.heavy_patient)
    # The basis POSTs' handles, one session after another, so that concurrent POSTs are
    # mostly different clinicians'; each is used once (a second would find the basis live).
    world.basis_lines = [
        _line(
            "POST", f"/pasient/{s.pool[j]}/grunnlag/", s, {"basis": "UNNTAK", "situation": "", "reason": ""}
        )
        for j in range(profile.pool)
        for s in world.sessions
    ]
    return world


def _attested(session: Session, national_id: str) -> str:
    """Look the patient up and state UNNTAK, as the clinician does: the handle then shows
    the list and opens documents."""

    looked = post(
        "/pasient/sok/", session.cookie, {"csrfmiddlewaretoken": session.csrf, "national_id": national_id}
    )
    found = re.fullmatch(r"/pasient/([0-9a-f-]{36})/grunnlag/", looked.header("Location"))
    if looked.status != 302 or found is None:
        raise SystemExit(f"FAIL: the lookup answered {looked.status}")
    handle = found.group(1)
    stated = post(
        f"/pasient/{handle}/grunnlag/",
        session.cookie,
        {"csrfmiddlewaretoken": session.csrf, "basis": "UNNTAK", "situation": "", "reason": ""},
    )
    if stated.status != 302 or stated.header("Location") != f"/pasient/{handle}/":
        raise SystemExit(f"FAIL: the basis POST answered {stated.status}")
    return handle


def _line(method: str, path: str, session: Session | None, form: dict[str, str] | None = None) -> str:
    body = urlencode({"csrfmiddlewaretoken": session.csrf, **form}) if session and form is not None else ""
    return "\t".join([method, path, session.cookie if session else "", body])


# --- the routes -----------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    name: str
    label: str
    status: int
    location: str  # a Lua pattern the Location must match; empty: not checked
    jobs: Callable[[World], list[str]]


def _lookup_jobs(world: World) -> list[str]:
    ids = world.lookup_patients
    return [
        _line("POST", "/pasient/sok/", s, {"national_id": ids[i % len(ids)]})
        for i, s in enumerate(world.sessions)
    ]


ROUTES = [
    Route("hello", "/hello (no session)", 200, "", lambda w: [_line("GET", "/hello", None)]),
    Route(
        "hello_session",
        "/hello (session)",
        200,
        "",
        lambda w: [_line("GET", "/hello", s) for s in w.sessions],
    ),
    # Success is the redirect to the patient card, and to the list after a basis.
    Route("lookup", "lookup POST", 302, "^/pasient/[%x%-]+/grunnlag/$", _lookup_jobs),
    Route("basis", "basis POST (UNNTAK)", 302, "^/pasient/[%x%-]+/$", lambda w: w.basis_lines),
    Route(
        "list",
        "document list (20 rows)",
        200,
        "",
        lambda w: [_line("GET", f"/pasient/{s.bench_handle}/", s) for s in w.sessions],
    ),
    Route(
        "list_1000",
        "document list, 1,000 docs",
        200,
        "",
        lambda w: [_line("GET", f"/pasient/{s.heavy_handle}/", s) for s in w.sessions],
    ),
    Route(
        "open_2k",
        "open PDF 2 KB",
        200,
        "",
        lambda w: [
            _line("GET", f"/pasient/{s.bench_handle}/dokument/{w.small_document}/", s) for s in w.sessions
        ],
    ),
    Route(
        "open_200k",
        "open PDF 200 KB",
        200,
        "",
        lambda w: [
            _line("GET", f"/pasient/{s.bench_handle}/dokument/{w.large_document}/", s) for s in w.sessions
        ],
    ),
]


def _route(name: str) -> Route:
    return next(route for route in ROUTES if route.name == name)


# --- measuring ------------------------------------------------------------------------

PROBES = 7
# wrk's socket timeout. Its default (2 s) would count plain queueing at concurrency 64
# (64 requests in line at ~25 lists/s is 2.5 s) as failures and drop those latencies from
# the percentiles. The portal answers its own faults (a 503 once the audit write has waited
# 5 s, or the database's connect timeout of 2 s), and those count as errors here.
WRK_TIMEOUT = 30


def _send(line: str) -> Answer:
    method, path, cookie, body = line.split("\t")
    return _request(method, path, cookie, body)


def round_trips(world: World) -> dict[str, dict[str, Any]]:
    """Each route's counts from a few sequential requests on the warm server: the median
    of those that opened no new connection (a thread's first request does)."""

    counts: dict[str, dict[str, Any]] = {}
    for route in ROUTES:
        if route.name == "basis":
            lines = world.basis_lines[world.basis_cursor : world.basis_cursor + PROBES]
            world.basis_cursor += PROBES
        else:
            jobs = route.jobs(world)
            lines = [jobs[i % len(jobs)] for i in range(PROBES)]
        answers = [_send(line) for line in lines]
        warm = [a for a in answers if a.header("X-Bench-Connects") == "0"] or answers
        bad = sum(1 for a in answers if a.status != route.status)

        def median(name: str, among: list[Answer] = warm) -> int:
            return int(statistics.median(int(a.header(name) or 0) for a in among))

        counts[route.name] = {
            "round_trips": median("X-Bench-Round-Trips"),
            "statements": median("X-Bench-Statements"),
            "transactions": median("X-Bench-Transactions"),
            "audit_writer": median("X-Bench-Audit-Writer"),
            "samples": [int(a.header("X-Bench-Round-Trips") or 0) for a in answers],
            "bad": bad,
        }
    return counts


def list_server_timing(world: World, n: int = 50) -> dict[str, float]:
    """The list page's own server time, unloaded: Server-Timing over sequential requests."""

    line = _route("list").jobs(world)[0]
    durations = []
    for _ in range(n):
        found = re.search(r"app;dur=([0-9.]+)", _send(line).header("Server-Timing"))
        if found:
            durations.append(float(found.group(1)))
    if not durations:
        raise SystemExit("FAIL: the list page sent no Server-Timing header")
    return {
        "p50_ms": round(statistics.median(durations), 1),
        "min_ms": min(durations),
        "requests": len(durations),
    }


def wrk(route: Route, world: World, concurrency: int, duration: int) -> dict[str, Any]:
    threads = min(2, concurrency)
    if route.name == "basis":
        lines = world.basis_lines[world.basis_cursor :]
    else:
        lines = route.jobs(world)
    jobs = VAR / f"jobs-{route.name}.tsv"
    jobs.write_text("\n".join(lines) + "\n", encoding="utf-8")
    args = [str(jobs), str(threads), str(route.status)] + ([route.location] if route.location else [])
    command = ["wrk", f"-t{threads}", f"-c{concurrency}", f"-d{duration}s", f"--timeout={WRK_TIMEOUT}s"]
    command += ["--latency", "-s", LUA]
    result = subprocess.run(
        [*command, f"http://{HOST}:{PORT}", "--", *args], capture_output=True, text=True, check=False
    )
    found = re.search(r"^BENCH_JSON (.*)$", result.stdout, re.MULTILINE)
    if result.returncode != 0 or found is None:
        raise SystemExit(f"FAIL: wrk on {route.name}: {result.stderr.strip() or result.stdout.strip()}")
    run: dict[str, Any] = json.loads(found.group(1))
    if route.name == "basis":
        # Thread t took lines t, t+T, ...: what it used is gone, for every later run.
        world.basis_cursor += threads * max(run["used"])
    socket_errors = run["connect"] + run["read"] + run["write"] + run["timeout"]
    run.update(
        route=route.name,
        concurrency=concurrency,
        rps=run["requests"] / (run["duration_us"] / 1e6),
        errors=run["bad"] + socket_errors,
        pool_exhausted=route.name == "basis" and run["wrapped"] > 0,
    )
    return run


def frontend_report(base_url: str, env: dict[str, str]) -> dict[str, Any]:
    """The front end's figures (scripts/frontend_report.py: bytes of the first load and of
    each htmx swap, Lighthouse mobile and desktop), for the demo fastlege, whose list
    patient the script walks to; merged into the run's JSON under "frontend". The full
    profile only (BENCH_FRONTEND=0 leaves it out): Lighthouse takes a minute."""

    def script(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [PY, str(ROOT / "scripts" / "frontend_report.py"), *args],
            cwd=ROOT, env=env, capture_output=True, text=True, check=False,
        )  # fmt: skip

    key = script("new-session", "fastlege")
    if key.returncode != 0:
        return {"error": key.stderr.strip().splitlines()[-1:]}
    measured = script("measure", base_url, key.stdout.strip())
    if measured.returncode != 0:
        return {"error": measured.stderr.strip().splitlines()[-3:]}
    report: dict[str, Any] = json.loads(measured.stdout)
    return report


def frontend_lines(report: dict[str, Any]) -> list[str]:
    if not report or "error" in report:
        return [f"front end: not measured {report.get('error', '') if report else ''}".rstrip()]
    lines = [
        f"front end: first load of the lookup page {report['first_load']['bytes']:,} bytes (target <= 60,000)"
    ]
    lines += [
        f"front end: htmx swap '{s['name']}' {s['bytes']:,} bytes (target <= 10,000)"
        for s in report["htmx_swaps"]
    ]
    for form in ("mobile", "desktop"):
        figures = report["lighthouse"][form]
        lines.append(
            f"front end: Lighthouse {form} performance {figures.get('performance')} "
            f"(LCP {figures.get('lcp_ms')} ms; target {'>= 95' if form == 'mobile' else '100'})"
        )
    return lines


# --- the report -----------------------------------------------------------------------


def summarise(runs: list[dict[str, Any]], counts: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for route in ROUTES:
        for concurrency in sorted({r["concurrency"] for r in runs}):
            mine = [r for r in runs if r["route"] == route.name and r["concurrency"] == concurrency]
            shares = []
            for r in mine:
                hello = next(
                    h
                    for h in runs
                    if h["route"] == "hello" and h["concurrency"] == concurrency and h["round"] == r["round"]
                )
                shares.append(100 * r["rps"] / hello["rps"])
            rows.append(
                {
                    "route": route.name,
                    "label": route.label,
                    "concurrency": concurrency,
                    "rps": statistics.median(r["rps"] for r in mine),
                    "p50_ms": statistics.median(r["p50_us"] for r in mine) / 1000,
                    "p95_ms": statistics.median(r["p95_us"] for r in mine) / 1000,
                    "p99_ms": statistics.median(r["p99_us"] for r in mine) / 1000,
                    "errors": sum(r["errors"] for r in mine),
                    "pct_of_hello": statistics.median(shares),
                    "round_trips": counts[route.name]["round_trips"],
                    "audit_writer": counts[route.name]["audit_writer"],
                    "pool_exhausted": any(r["pool_exhausted"] for r in mine),
                }
            )
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    head = f"{'request':<27} {'conc':>4} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'errors':>6} {'% hello':>7} {'DB RT':>5} {'audit writer':>12}"
    lines = [head, "-" * len(head)]
    for row in rows:
        lines.append(
            f"{row['label']:<27} {row['concurrency']:>4} {row['rps']:>8.0f} {row['p50_ms']:>8.2f} "
            f"{row['p95_ms']:>8.2f} {row['p99_ms']:>8.2f} {row['errors']:>6} {row['pct_of_hello']:>6.1f}% "
            f"{row['round_trips']:>5} {row['audit_writer']:>12}"
            + ("  (basis pool exhausted)" if row["pool_exhausted"] else "")
        )
    return "\n".join(lines)


def over_budget(counts: dict[str, dict[str, Any]]) -> list[str]:
    failures = []
    for route, budget in ROUND_TRIP_BUDGET.items():
        for key, allowed in budget.items():
            if counts[route][key] > allowed:
                failures.append(f"{route}: {key} {counts[route][key]} > budget {allowed}")
    return failures


def _interrupted(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main() -> int:
    profile = PROFILES[os.environ.get("BENCH_PROFILE", "full")]
    duration = int(os.environ.get("BENCH_DURATION", profile.duration))
    # Both end the run through the `finally` that stops granian; SIGINT explicitly, since a
    # shell starts a background job with it ignored and Python then never raises for it.
    signal.signal(signal.SIGTERM, _interrupted)
    signal.signal(signal.SIGINT, _interrupted)
    started = datetime.datetime.now(datetime.UTC)
    log(
        f"profile {profile.name}: {profile.rounds} round(s), concurrency {profile.concurrency}, {duration} s each"
    )
    load_at_start = os.getloadavg()
    env = environment()
    ensure_services()
    prepare_database(profile, env)
    runs: list[dict[str, Any]] = []
    with granian(env):
        world = make_world(profile, env)
        for name in ("hello_session", "list"):
            # Every thread's connection open and each process's audit writer started
            # before anything is counted or timed.
            wrk(_route(name), world, max(profile.concurrency), 1)
        counts = round_trips(world)
        timing = list_server_timing(world)
        log(
            f"list page, unloaded: Server-Timing p50 {timing['p50_ms']:.1f} ms over {timing['requests']} requests"
        )
        for round_ in range(1, profile.rounds + 1):
            log(f"round {round_} of {profile.rounds}")
            for route in ROUTES:
                for concurrency in profile.concurrency:
                    run = wrk(route, world, concurrency, duration)
                    run["round"] = round_
                    runs.append(run)
        frontend: dict[str, Any] = {}
        if profile.name != "smoke" and os.environ.get("BENCH_FRONTEND", "1") != "0":
            frontend = frontend_report(f"http://{HOST}:{PORT}", env)
    rows = summarise(runs, counts)
    # Timings mean little on a machine busy with something else: say how busy it was.
    load = {"start": load_at_start, "end": os.getloadavg()}
    print(table(rows), flush=True)
    print(
        f"load average (1 min) at start {load['start'][0]:.1f}, at end {load['end'][0]:.1f}, on {os.cpu_count()} cores"
    )
    print(
        f"list page, unloaded: Server-Timing p50 {timing['p50_ms']:.1f} ms ({timing['requests']} sequential requests)"
    )
    if frontend:
        print("\n".join(frontend_lines(frontend)))
    failures = over_budget(counts)
    errors = sum(r["errors"] for r in runs) + sum(c["bad"] for c in counts.values())
    if errors:
        failures.append(f"{errors} failed requests")
    report = {
        "started": started.isoformat(),
        "profile": profile.name,
        "duration_s": duration,
        "server": {"granian_workers": WORKERS, "granian_threads": THREADS, "interface": "wsgi"},
        "load_average": load,
        "cpu_count": os.cpu_count(),
        "sessions": len(world.sessions),
        "round_trips": counts,
        "budget": ROUND_TRIP_BUDGET,
        "list_server_timing": timing,
        "rows": rows,
        "runs": runs,
        "failures": failures,
        "frontend": frontend,
    }
    VAR.mkdir(parents=True, exist_ok=True)
    text = json.dumps(report, indent=2)
    (VAR / f"{started.strftime('%Y%m%dT%H%M%SZ')}.json").write_text(text, encoding="utf-8")
    (VAR / "latest.json").write_text(text, encoding="utf-8")
    log(f"written: {VAR / 'latest.json'}")
    for failure in failures:
        log(f"FAIL: {failure}")
    return 1 if failures and profile.name == "smoke" else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        log("interrupted; nothing written")
        sys.exit(130)
