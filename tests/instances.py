"""Portal instances as production runs them, for the system tests (`make test-system`).

Each instance is granian serving `pjd_portal.wsgi` with DEBUG off, on the loopback, on a
database of the test's own on the shared PostgreSQL and a Redis database of its own;
`Nginx` puts a load balancer in front of several. Synthetic ids are allowed only because
PJD_TEST_ENVIRONMENT says this is a test; cookies have their plain names over http
(SECURE_COOKIES=false), as in the benchmark (bench/run.py).
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import psycopg
import pytest

ROOT = Path(__file__).resolve().parent.parent
PY = str(ROOT / ".venv" / "bin" / "python")
GRANIAN = str(ROOT / ".venv" / "bin" / "granian")
HOST = "127.0.0.1"
PG = "postgres://postgres@127.0.0.1:5432"


def need(tool: str) -> str:
    """The path of a tool the test cannot do without: a failure under CI, a skip elsewhere."""

    found = shutil.which(tool) or (f"/usr/sbin/{tool}" if Path(f"/usr/sbin/{tool}").exists() else None)
    if found is None:
        message = f"{tool} is not installed (Debian's package)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return found


def need_services() -> None:
    """PostgreSQL on 5432 and Redis on 6379, as on CI machines (.ci/run starts them)."""

    down = []
    if subprocess.run(["pg_isready", "-h", HOST, "-p", "5432", "-q"], check=False).returncode != 0:
        down.append("PostgreSQL on 127.0.0.1:5432")
    ping = ["redis-cli", "-h", HOST, "-p", "6379", "ping"]
    if subprocess.run(ping, check=False, capture_output=True).returncode != 0:
        down.append("Redis on 127.0.0.1:6379")
    if down:
        message = " and ".join(down) + " not reachable"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


def production_env(database: str, redis_db: int, **extra: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PJD_", "DJANGO_", "OIDC_")) and key not in {"DEBUG", "DATABASE_URL"}
    }
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "pjd_portal.settings",
            "DEBUG": "false",
            "PJD_TEST_ENVIRONMENT": "true",
            "PJD_ALLOW_SYNTHETIC_IDS": "true",
            "PJD_TEST_IDENTITIES": "false",
            "SECRET_KEY": "system-test-only-r7Kq2XvN9pLm4TzW8cYb3HsJ6fDg1QaE5uVo0iRnMx",
            "PJD_AUDIT_ANCHOR_KEY": "system-test-only-anchor-Ht3Wq8Zp1Lc6Vn9Rb4Kx7Mf2Jy5Gd0SaUe",
            "ALLOWED_HOSTS": f"{HOST},localhost",
            "SECURE_COOKIES": "false",
            "SECURE_SSL_REDIRECT": "false",
            "OIDC_ISSUER": "http://127.0.0.1:9",  # never called: sessions are made directly
            "DATABASE_URL": f"{PG}/{database}",
            "PJD_CACHE_URL": f"redis://127.0.0.1:6379/{redis_db}",
            "LOG_LEVEL": "WARNING",
        }
    )
    env.update(extra)
    return env


def fresh_database(name: str) -> None:
    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def drop_database(name: str) -> None:
    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def flush_redis(db: int) -> None:
    subprocess.run(
        ["redis-cli", "-h", HOST, "-p", "6379", "-n", str(db), "flushdb"], check=True, capture_output=True
    )


def manage(env: Mapping[str, str], *args: str) -> str:
    result = subprocess.run(
        [PY, "manage.py", *args], cwd=ROOT, env=dict(env), capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise AssertionError(f"manage.py {args[0]} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def shell(env: Mapping[str, str], code: str) -> str:
    """Python run inside Django with the instances' settings; what it prints."""

    return manage(env, "shell", "--no-imports", "-c", code)


@dataclass
class Answer:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def header(self, name: str) -> str:
        return self.headers.get(name, "")

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


def request(
    port: int,
    method: str,
    path: str,
    *,
    cookie: str = "",
    form: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
    body: bytes | None = None,
) -> Answer:
    conn = http.client.HTTPConnection(HOST, port, timeout=30)
    sent = dict(headers or {})
    if cookie:
        sent["Cookie"] = cookie
    if form is not None:
        body = urlencode(form).encode()
        sent["Content-Type"] = "application/x-www-form-urlencoded"
    try:
        conn.request(method, path, body=body, headers=sent)
        response = conn.getresponse()
        return Answer(response.status, response.headers, response.read())
    finally:
        conn.close()


def wait_for(ready: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not ready():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not come up within {seconds:.0f} s")
        time.sleep(0.2)


class Process:
    """A server in its own process group, its output in a log file."""

    def __init__(self, args: list[str], env: Mapping[str, str], log: Path) -> None:
        self.log = log
        with log.open("w") as out:
            self.process = subprocess.Popen(
                args, cwd=ROOT, env=dict(env), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )

    def alive(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(
                f"{self.log.name} exited ({self.process.returncode}):\n{self.log.read_text()}"
            )
        return True

    def stop(self) -> None:
        if self.process.poll() is not None:
            return
        with suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=5)


def _answers(port: int) -> bool:
    try:
        return request(port, "GET", "/").status < 500
    except OSError:
        return False


@contextmanager
def instance(env: Mapping[str, str], port: int, log_dir: Path, *, workers: int = 1) -> Iterator[Process]:
    """One portal instance under granian, as `make serve` runs it."""

    server = Process(
        [GRANIAN, "--interface", "wsgi", "--host", HOST, "--port", str(port), "--workers", str(workers),
         "--blocking-threads", "4", "--no-ws", "--no-access-log", "pjd_portal.wsgi:application"],
        env,
        log_dir / f"instance-{port}.log",
    )  # fmt: skip
    try:
        wait_for(lambda: server.alive() and _answers(port), 60, f"the instance on port {port}")
        yield server
    finally:
        server.stop()


NGINX_CONF = """
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    log_format upstream '$request_method $status $upstream_addr';
    upstream portal {{
        {servers}
    }}
    server {{
        listen 127.0.0.1:{port};
        access_log {prefix}/access.log upstream;
        location / {{
            proxy_pass http://portal;
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_set_header X-Forwarded-Proto $scheme;
            # No retry on another instance: a POST must reach one instance once.
            proxy_next_upstream off;
        }}
    }}
}}
"""


@contextmanager
def nginx(port: int, upstreams: list[int], log_dir: Path) -> Iterator[Path]:
    """Debian's nginx on the loopback, round robin over the instances; yields its access
    log, one line per request: method, status and the instance that answered."""

    binary = need("nginx")
    prefix = Path(tempfile.mkdtemp(prefix="pjd-nginx-", dir=log_dir))
    servers = "\n        ".join(f"server 127.0.0.1:{upstream};" for upstream in upstreams)
    conf = prefix / "nginx.conf"
    conf.write_text(NGINX_CONF.format(prefix=prefix, servers=servers, port=port), encoding="utf-8")
    server = Process(
        [binary, "-c", str(conf), "-p", str(prefix), "-g", "daemon off;"], {}, prefix / "stdout.log"
    )
    try:
        wait_for(lambda: server.alive() and _answers(port), 20, "nginx")
        yield prefix / "access.log"
    finally:
        server.stop()


def json_of(text: str) -> dict[str, object]:
    """The last line a shell script printed, as JSON."""

    loaded = json.loads(text.strip().splitlines()[-1])
    assert isinstance(loaded, dict)
    return loaded
