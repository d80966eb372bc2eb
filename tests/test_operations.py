"""Running in production: `make serve`, /healthz and /readyz, the JSON log, /metrics.

The servers here are the real thing (granian, DEBUG off, two worker processes, Redis), in
subprocesses on ports 8720-8729; the in-process tests cover what needs a logged-in person
or a broken service this process can point at (a Redis that does not listen).
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from django.test import override_settings
from django.urls import reverse

from pjd_portal.auditlog.models import AccessEvent
from pjd_portal.documents.sources.base import AccessContext, SourceError
from pjd_portal.documents.sources.breaker import breaker_for, reset_breakers
from pjd_portal.documents.sources.mhd import MhdSourceClient
from pjd_portal.documents.sources.tokens import StaticTokenProvider
from pjd_portal.lib import logs
from pjd_portal.lib.middleware import incoming_request_id, new_request_id
from pjd_portal.lib.redact import redact_national_ids
from tests.builders import LIST_PATIENT_ID, add_document, login, lookup_and_attest
from tests.fhirserver import start as start_fhir_server

ROOT = Path(__file__).resolve().parent.parent
PY = ROOT / ".venv" / "bin" / "python"
ELEVEN_DIGITS = re.compile(r"\d{11}")
# Before the filter, lines carry ids (handles, request ids) whose hex may hold eleven digits
# in a row; a national id stands alone: not inside a run of hex or other digits.
NATIONAL_ID_LIKE = re.compile(r"(?<![0-9a-fA-F])\d{11}(?![0-9a-fA-F])")
METRICS_TOKEN = "metrics-token-for-tests-only-6f1d0c9b2a"
REDIS_URL = "redis://127.0.0.1:6379/5"  # this suite's own Redis database
NOTHING_LISTENS = 8729  # in our range, never bound: a service that is down
SERVE_PORT, DOWN_PORT, REFUSED_PORT = 8722, 8723, 8724

# What a production start needs, synthetic (tests/test_settings.py refuses each missing one).
PRODUCTION = {
    "DJANGO_SETTINGS_MODULE": "pjd_portal.settings",
    "DEBUG": "false",
    "SECRET_KEY": "x" * 30 + "production-secret-for-tests-only-" + "y" * 10,
    "PJD_AUDIT_ANCHOR_KEY": "anchor-key-for-tests-only-Qm9vdGgsIG5vdCBTRUNSRVRfS0VZ-7f3a9c",
    "OIDC_ISSUER": "https://helseid-sts.test.example.org",
    "PJD_CACHE_URL": REDIS_URL,
    "PJD_METRICS_TOKEN": METRICS_TOKEN,
    "PJD_TRUSTED_PROXIES": "1",  # a proxy of ours in front: its X-Request-ID is taken
    "ALLOWED_HOSTS": "127.0.0.1",
    "SECURE_COOKIES": "false",
    "SECURE_SSL_REDIRECT": "false",
    "PJD_AUDIT_GROUP_COMMIT": "false",
}


def _clean_env() -> dict[str, str]:
    ours = ("PJD_", "DEBUG", "SECRET_KEY", "OIDC_", "DATABASE_URL", "PROMETHEUS_", "LOG_")
    return {k: v for k, v in os.environ.items() if not k.startswith(ours)}


def _wait_until_up(url: str, process: subprocess.Popen[bytes], log: Path, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the server exited ({process.returncode}):\n{log.read_text()[-3000:]}")
        try:
            requests.get(url, timeout=1)
            return
        except requests.RequestException:
            time.sleep(0.3)
    pytest.fail(f"the server did not come up:\n{log.read_text()[-3000:]}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


class Served:
    def __init__(self, base: str, log: Path, var: Path) -> None:
        self.base = base
        self.log = log
        self.var = var

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return requests.get(f"{self.base}{path}", timeout=10, **kwargs)

    def log_lines(self) -> list[dict[str, Any]]:
        found = []
        for line in self.log.read_text().splitlines():
            if line.startswith("{"):
                found.append(json.loads(line))
        return found

    def metric(self, name: str, **labels: str) -> float:
        text = self.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}).text
        total = 0.0
        for line in text.splitlines():
            if not line.startswith(name + "{"):
                continue
            if all(f'{key}="{value}"' in line for key, value in labels.items()):
                total += float(line.rsplit(" ", 1)[1])
        return total


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """`make serve` as an operator runs it: two workers, a migrated database of its own."""

    var = tmp_path_factory.mktemp("serve")
    env = {
        **_clean_env(),
        **PRODUCTION,
        "PJD_VAR_DIR": str(var),
        "DATABASE_URL": f"sqlite:///{var / 'db.sqlite3'}",
    }
    migrated = subprocess.run(
        [str(PY), "manage.py", "migrate", "--noinput", "-v0"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert migrated.returncode == 0, migrated.stderr
    log = var / "serve.log"
    env["PROMETHEUS_MULTIPROC_DIR"] = str(var / "prometheus")
    process = subprocess.Popen(
        # -o: the venv and the vendored files are what this checkout has; make builds neither.
        ["make", "-o", ".venv/.installed", "-o", "static/vendor/.copied", "serve",
         f"PORT={SERVE_PORT}", "WORKERS=2", "THREADS=2"],
        cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        _wait_until_up(f"http://127.0.0.1:{SERVE_PORT}/healthz", process, log)
        yield Served(f"http://127.0.0.1:{SERVE_PORT}", log, var)
    finally:
        _stop(process)


@pytest.fixture(scope="module")
def database_down(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The production server whose PostgreSQL does not answer (nothing listens on its port)."""

    var = tmp_path_factory.mktemp("down")
    env = {
        **_clean_env(),
        **PRODUCTION,
        "PJD_VAR_DIR": str(var),
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:{NOTHING_LISTENS}/pjd_not_there",
    }
    log = var / "serve.log"
    process = subprocess.Popen(
        [str(ROOT / ".venv" / "bin" / "granian"), "--interface", "wsgi", "--host", "127.0.0.1",
         "--port", str(DOWN_PORT), "--workers", "1", "--no-ws", "pjd_portal.wsgi:application"],
        cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        _wait_until_up(f"http://127.0.0.1:{DOWN_PORT}/healthz", process, log)
        yield Served(f"http://127.0.0.1:{DOWN_PORT}", log, var)
    finally:
        _stop(process)


# --- make serve ------------------------------------------------------------------------


def test_make_serve_is_up_ready_and_serves_hashed_static_files(served: Served) -> None:
    up = served.get("/healthz")
    assert (up.status_code, up.json()) == (200, {"status": "ok"})
    ready = served.get("/readyz")
    assert (ready.status_code, ready.json()) == (200, {"status": "ready"})
    assert "no-store" in ready.headers["Cache-Control"] or "no-cache" in ready.headers["Cache-Control"]
    # collectstatic ran: the page names its CSS by content hash, WhiteNoise sends it compressed.
    page = served.get("/")
    assert page.status_code == 200
    css = re.search(r'href="(/static/vendor/designsystemet\.[0-9a-f]{12}\.css)"', page.text)
    assert css, page.text[:2000]
    asset = served.get(css.group(1), headers={"Accept-Encoding": "br"})
    assert asset.status_code == 200 and asset.headers.get("Content-Encoding") == "br"
    assert "immutable" in asset.headers["Cache-Control"]


def test_make_serve_refuses_without_the_operators_secrets() -> None:
    env = {**_clean_env(), "DJANGO_SETTINGS_MODULE": "pjd_portal.settings"}
    result = subprocess.run(
        ["make", "-s", "-o", ".venv/.installed", "-o", "static/vendor/.copied", "serve", f"PORT={REFUSED_PORT}"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode != 0
    refusals = [
        line for line in result.stderr.splitlines() if line.startswith("pjd-portal refuses to start:")
    ]
    assert refusals == [
        "pjd-portal refuses to start: SECRET_KEY must be set when DEBUG is off: the development default is refused."
    ], result.stderr


def test_the_request_id_of_our_proxy_is_kept_and_echoed_a_bad_one_replaced(served: Served) -> None:
    kept = served.get("/healthz", headers={"X-Request-ID": "lb-3f2a9c1e-77d0"})
    assert kept.headers["X-Request-ID"] == "lb-3f2a9c1e-77d0"
    for bad in ("12345678901-abc", "short", "a" * 65, "has space in it", "1311690-0216-9x"):
        answer = served.get("/healthz", headers={"X-Request-ID": bad})
        assert re.fullmatch(r"[0-9a-f]{32}", answer.headers["X-Request-ID"]), bad
        assert not ELEVEN_DIGITS.search(answer.headers["X-Request-ID"])


def test_each_request_is_one_json_log_line(served: Served) -> None:
    served.get("/healthz", headers={"X-Request-ID": "probe-line-0001"})
    deadline = time.monotonic() + 5
    line: dict[str, Any] | None = None
    while line is None and time.monotonic() < deadline:
        line = next(
            (entry for entry in served.log_lines() if entry.get("request_id") == "probe-line-0001"), None
        )
        time.sleep(0.1)
    assert line is not None, served.log.read_text()[-2000:]
    assert line["event"] == "request" and line["logger"] == "pjd_portal.request"
    assert line["method"] == "GET" and line["route"] == "healthz" and line["status"] == 200
    assert isinstance(line["duration_ms"], float) and line["duration_ms"] >= 0
    assert line["user_id"] is None and line["organisation"] is None  # a probe is nobody
    assert line["level"] == "info" and line["timestamp"].endswith("Z")


def test_metrics_need_the_token_and_count_over_every_worker(served: Served) -> None:
    assert served.get("/metrics").status_code == 401
    assert served.get("/metrics", headers={"Authorization": "Bearer wrong-token"}).status_code == 401
    labels = {"route": "healthz", "method": "GET", "status": "200"}
    before = served.metric("pjd_http_requests_total", **labels)
    for _ in range(24):
        requests.get(f"{served.base}/healthz", headers={"Connection": "close"}, timeout=5)
    # Two workers answered them; any worker's scrape sums the two (multiprocess mode).
    assert served.metric("pjd_http_requests_total", **labels) == before + 24
    pids = {p.name.rsplit("_", 1)[-1] for p in (served.var / "prometheus").glob("counter_*.db")}
    assert len(pids) == 2, pids


def test_probes_touch_no_session_and_write_no_access_event(served: Served) -> None:
    for path in ("/healthz", "/readyz"):
        answer = served.get(path)
        assert "Set-Cookie" not in answer.headers
    # A session cookie that names no session: at most Django's deletion of it, no session made.
    with_cookie = served.get("/readyz", cookies={"sessionid": "not-a-session"})
    assert with_cookie.status_code == 200
    assert with_cookie.headers.get("Set-Cookie", "Max-Age=0").count("Max-Age=0") == 1
    with sqlite3.connect(served.var / "db.sqlite3") as db:
        assert db.execute("SELECT count(*) FROM django_session").fetchone() == (0,)
        assert db.execute(f"SELECT count(*) FROM {AccessEvent._meta.db_table}").fetchone() == (0,)  # noqa: S608


# --- a service down --------------------------------------------------------------------


def test_readyz_names_the_database_when_it_is_down_and_healthz_stays_up(database_down: Served) -> None:
    up = database_down.get("/healthz")
    assert (up.status_code, up.json()) == (200, {"status": "ok"})
    ready = database_down.get("/readyz")
    assert ready.status_code == 503
    body = ready.json()
    assert body["status"] == "unavailable" and "database" in body["failed"] and "cache" not in body["failed"]
    # A short status, nothing of the internals: no host, port, driver or error text.
    assert set(body) == {"status", "failed"}
    assert str(NOTHING_LISTENS) not in ready.text and "psycopg" not in ready.text.lower()


@pytest.mark.django_db
def test_readyz_names_the_cache_when_redis_is_down(client: Any) -> None:
    assert client.get("/readyz").status_code == 200
    redis_down = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{NOTHING_LISTENS}/0",
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.5, "SOCKET_TIMEOUT": 0.5},
        }
    }
    with override_settings(CACHES=redis_down):
        answer = client.get("/readyz")
    assert answer.status_code == 503
    assert answer.json() == {"status": "unavailable", "failed": ["cache"]}


@pytest.mark.django_db
def test_readyz_with_the_real_redis(client: Any) -> None:
    redis_up = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "pjd-serve17-test",
        }
    }
    with override_settings(CACHES=redis_up):
        answer = client.get("/readyz")
    assert (answer.status_code, answer.json()) == (200, {"status": "ready"})


def test_healthz_asks_no_database(client: Any, django_assert_num_queries: Any, db: Any) -> None:
    with django_assert_num_queries(0):
        answer = client.get("/healthz")
    assert answer.status_code == 200 and answer["X-Request-ID"]


def test_probes_are_no_access_and_need_no_login(world: Any, client: Any) -> None:
    as_clinician = login(client, world.fastlege, world.gp_office)
    before = AccessEvent.objects.count()
    for path in ("/healthz", "/readyz"):
        assert as_clinician.get(path).status_code == 200
    assert AccessEvent.objects.count() == before


# --- the log ---------------------------------------------------------------------------


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """The production handler (JSON, the redaction filter) on the root logger, into memory."""

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.formatter("json"))
    handler.addFilter(logs.RedactNationalIds())
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield stream
    finally:
        root.removeHandler(handler)


def _lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.startswith("{")]


def test_a_clinicians_request_line_names_user_organisation_and_route_never_the_patient(
    world: Any, client: Any, json_log: io.StringIO
) -> None:
    owner = login(client, world.fastlege, world.gp_office)
    handle = lookup_and_attest(owner)
    doc = add_document(world)
    opened = owner.get(reverse("documents:open", kwargs={"handle": handle, "document_id": doc.document_id}))
    assert opened.status_code == 200
    lines = [line for line in _lines(json_log) if line.get("event") == "request"]
    lookup = next(line for line in lines if line["route"] == "patients:lookup")
    assert lookup["user_id"] == world.fastlege.pk and lookup["organisation"] == world.gp_office.orgnr
    assert lookup["method"] == "POST" and lookup["status"] in (200, 302)
    opening = next(line for line in lines if line["route"] == "documents:open")
    assert opening["status"] == 200 and opening["request_id"] == opened["X-Request-ID"]
    # Django's own line about a 404 names the route too.
    missing = owner.get(reverse("patients:basis", kwargs={"handle": "7d1f0c4e-52a9-4b8e-9f3a-2c6b8d0e1a4f"}))
    assert missing.status_code == 404
    assert any(line.get("event") == "Not Found: route patients:basis" for line in _lines(json_log))
    # The route's name, not the path: neither the handle nor the document's id.
    text = json_log.getvalue()
    assert str(handle) not in text and str(doc.document_id) not in text
    assert LIST_PATIENT_ID not in text and not ELEVEN_DIGITS.search(text)


def test_the_filter_takes_national_ids_out_of_every_part_of_a_record(json_log: io.StringIO) -> None:
    log = logging.getLogger("pjd_portal.tests.redaction")
    log.warning("looked up %s", "13116900216")
    log.warning("plain 131169 00216 in the text")
    try:
        raise ValueError("no patient 13116900216")
    except ValueError:
        log.exception("failed for %s", {"pid": "13116900216"})
    import structlog

    structlog.get_logger("pjd_portal.tests.redaction").warning(
        "event", national_id="13116900216", nested={"a": ["13116900216"]}
    )
    text = json_log.getvalue()
    assert "13116900216" not in text and "131169 00216" not in text and not ELEVEN_DIGITS.search(text)
    assert text.count(redact_national_ids("13116900216")) >= 5
    assert "ValueError" in text  # the traceback is kept, redacted


def test_request_ids_are_well_formed_and_never_eleven_digits() -> None:
    ids = [new_request_id() for _ in range(2000)]
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) and not ELEVEN_DIGITS.search(i) for i in ids)
    assert len(set(ids)) == 2000
    assert (
        incoming_request_id("0f8fad5b-d9cb-469f-a165-7a8b7c7d9e0f") == "0f8fad5b-d9cb-469f-a165-7a8b7c7d9e0f"
    )
    # A UUID can end in eleven digits (this one does): refused like any other such id.
    assert incoming_request_id("0f8fad5b-d9cb-469f-a165-70867728950e") is None
    assert incoming_request_id("x12345678901") is None and incoming_request_id("") is None


def test_a_whole_test_run_logs_no_national_id(tmp_path: Path) -> None:
    """A pytest session of the modules that look patients up by national id, list and open
    their documents and read their access log, with every log record at DEBUG into a file
    through the portal's own handlers (PJD_LOG_FILE, JSON): no eleven-digit run anywhere in
    it. And the records as the code made them, before the redaction filter (a handler put
    in front of it, tests/raw_log_plugin.py), are held to the same: the filter is the last
    line of defence, not the only one."""

    portal_log = tmp_path / "portal.log"
    raw_log = tmp_path / "raw.log"
    # Lookups by national id, the clinician's list and opens, the patient's access log, and
    # remote sources (whose refusals may echo the search's national id back).
    modules = [
        "tests/test_lookup.py",
        "tests/test_clinician_path.py",
        "tests/test_patient_access_log.py",
        "tests/test_remote_sources.py",
    ]
    env = {
        **os.environ,
        "DEBUG": "true",
        "PJD_ALLOW_SYNTHETIC_IDS": "true",
        "PJD_TEST_IDENTITIES": "true",
        "PJD_LOG_FILE": str(portal_log),
        "PJD_LOG_FORMAT": "json",
        "LOG_LEVEL": "DEBUG",
        "PJD_TEST_RAW_LOG": str(raw_log),
    }
    url = os.environ.get("DATABASE_URL", "")
    if url.startswith(("postgres://", "postgresql://")):
        # A test database of its own: with this session's name it would clobber this
        # session's test database under it.
        env["DATABASE_URL"] = url.rstrip("/") + "_logrun"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "tests.raw_log_plugin", "-x",
         *modules],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:]
    text = portal_log.read_text()
    requests_logged = text.count('"event": "request"')
    assert requests_logged > 100, f"only {requests_logged} request lines: is the file handler on?"
    assert '"route": "patients:lookup"' in text
    hits = ELEVEN_DIGITS.findall(text)
    assert hits == [], f"{len(hits)} eleven-digit runs in the portal's log"
    raw = raw_log.read_text()
    assert raw.count("pjd_portal.request ") == requests_logged
    raw_hits = [line for line in raw.splitlines() if NATIONAL_ID_LIKE.search(line)]
    assert raw_hits == [], f"{len(raw_hits)} lines with a national id before the filter: {raw_hits[:3]}"


# --- metrics ---------------------------------------------------------------------------


def _scrape(client: Any) -> str:
    answer = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {METRICS_TOKEN}")
    assert answer.status_code == 200, answer.status_code
    return str(answer.content.decode())


def _closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/fhir/R4"


def test_metrics_after_an_open_a_source_request_and_a_broken_source(
    world: Any, client: Any, settings: Any, tmp_path: Path
) -> None:
    settings.METRICS_TOKEN = METRICS_TOKEN
    assert client.get("/metrics").status_code == 401
    with override_settings(METRICS_TOKEN=""):
        assert client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {METRICS_TOKEN}").status_code == 404

    owner = login(client, world.fastlege, world.gp_office)
    handle = lookup_and_attest(owner)
    doc = add_document(world)
    owner.get(reverse("documents:open", kwargs={"handle": handle, "document_id": doc.document_id}))

    # A source that answers, and one where nothing listens, each by its organisation number.
    fhir = start_fhir_server(tmp_path, "metrics")
    broken_url = _closed_port_url()
    settings.MHD_SOURCES = {"974749025": {"base_url": broken_url}}
    reset_breakers()
    try:
        access = AccessContext(basis="UNNTAK", event_id="metrics-test")

        def source(base_url: str, orgnr: str) -> MhdSourceClient:
            return MhdSourceClient(
                source_id=1, orgnr=orgnr, name="Kilde", base_url=base_url, token_provider=StaticTokenProvider(None),
                connect_timeout=1, read_timeout=2, retries=0, breaker=breaker_for(base_url.rstrip("/")),
            )  # fmt: skip

        source(fhir.base_url, "883974832").search(LIST_PATIENT_ID, access=access)
        broken = source(broken_url, "974749025")
        text = _scrape(client)
        assert 'pjd_source_breaker_state{source="974749025"} 0.0' in text
        for _ in range(settings.DOCUMENT_SOURCE_BREAKER_FAILURES):
            with pytest.raises(SourceError):
                broken.search(LIST_PATIENT_ID, access=access)
        text = _scrape(client)
    finally:
        fhir.stop()
        reset_breakers()

    assert re.search(
        r'pjd_http_requests_total\{method="GET",route="documents:open",status="200"\} [1-9]', text
    )
    assert 'pjd_http_request_seconds_bucket{le="0.005",route="documents:open"}' in text
    # Inside the test's transaction the event is part of it (path outer_transaction); the
    # servers above write through their own transactions or the group writer.
    assert re.search(
        r'pjd_audit_write_seconds_count\{outcome="committed",path="outer_transaction"\} [1-9]', text
    )
    assert re.search(r'pjd_source_request_seconds_count\{outcome="2xx",source="883974832"\} [1-9]', text)
    assert re.search(r'pjd_source_request_seconds_count\{outcome="error",source="974749025"\} [1-9]', text)
    assert 'pjd_source_breaker_state{source="974749025"} 2.0' in text  # open
    # Labelled by source and route, never by patient (the figures' own digits may run long:
    # process_start_time_seconds is 1.79...e+09).
    assert LIST_PATIENT_ID not in text
    assert str(handle) not in text
    labels = " ".join(re.findall(r"\{[^}]*\}", text))
    assert not ELEVEN_DIGITS.search(labels)
