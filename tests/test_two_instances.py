"""Two portal instances behind nginx, one portal: what one instance knows, the other knows.

Two granian instances (production settings, DEBUG off) on the loopback share one
PostgreSQL database and one Redis database, with Debian's nginx in front, round robin.
Checked through nginx and by sending to each instance directly:

- a session made on one is the same session on the other (lookup on one, basis on the
  other, the list and the open on either);
- a launch code and a citizen-API token's `jti` are accepted once across both, also when
  both get them at the same moment;
- a document source's circuit breaker opened by failures seen by one instance is open in
  the other, which then does not ask the source;
- the lookup rate limit counts the lookups made on both.

Part of `make test-system` (marker `system`), not of `make test`.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests import instances
from tests.instances import Answer, request

pytestmark = [pytest.mark.system]

DATABASE = "pjd_two_instances"
REDIS_DB = 9
PORT_A, PORT_B, PORT_LB, PORT_SOURCE = 8750, 8751, 8752, 8753
CITIZEN_CLIENT = "innbyggerportal"
SOURCE_ORGNR = "310600008"  # the remote source's organisation (St. Olavs hospital HF)
LOOKUPS_PER_HOUR = 8  # the hour's window: the test cannot straddle two of them by chance


@dataclass
class Portal:
    env: dict[str, str]
    cookie: str  # the session cookie and the CSRF cookie, as a browser sends them
    csrf: str
    national_id: str
    citizen_key: bytes
    access_log: Path
    source: FailingSource


class FailingSource:
    """An MHD source that answers every request 503, and counts what it was asked."""

    def __init__(self, port: int) -> None:
        self.hits = 0
        lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                with lock:
                    outer.hits += 1
                self.send_response(503)
                self.send_header("Content-Type", "application/fhir+json")
                self.end_headers()
                self.wfile.write(b'{"resourceType": "OperationOutcome", "issue": []}')

            def do_POST(self) -> None:  # noqa: N802 (the portal searches by POST: no id in a URL)
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.do_GET()

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

        self.server = ThreadingHTTPServer((instances.HOST, port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


SETUP = """
import json, time, uuid
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.sessions.backends.db import SessionStore
from pjd_portal.accounts.context import SESSION_ORG_KEY
from pjd_portal.accounts.models import User
from pjd_portal.accounts.roles import organisations_with_roles
from pjd_portal.accounts.sessions import SESSION_ACTIVITY_AT_KEY, SESSION_LOGIN_AT_KEY
from pjd_portal.documents.management.commands.seed_demo import NHN_TEST_PATIENTS

user = User.objects.get(username="demo-" + "__USERNAME__")
organisation = organisations_with_roles(user)[0]
now = int(time.time())
session = SessionStore()
session.update({
    SESSION_KEY: str(user.pk),
    BACKEND_SESSION_KEY: settings.AUTHENTICATION_BACKENDS[0],
    HASH_SESSION_KEY: user.get_session_auth_hash(),
    SESSION_LOGIN_AT_KEY: now,
    SESSION_ACTIVITY_AT_KEY: now,
    SESSION_ORG_KEY: organisation.pk,
    "oidc_states": {},
    "oidc_login_next": None,
    "oidc_id_token": "system-test-synthetic-id-token-" + uuid.uuid4().hex,
    "oidc_id_token_expiration": time.time() + 15 * 60,
})
session.create()
print(json.dumps({
    "cookie": settings.SESSION_COOKIE_NAME + "=" + session.session_key,
    "csrf_cookie_name": settings.CSRF_COOKIE_NAME,
    "national_id": NHN_TEST_PATIENTS[0],
}))
"""

LAUNCH = """
import json, secrets
from pjd_portal.access.launch import challenge_of, issue_launch_code
from tests.epj_tokens import attest_for
verifier = secrets.token_urlsafe(48)
issued = issue_launch_code(
    client_id="pjd-test-epj", token_jti="system-" + secrets.token_hex(8),
    attest=[attest_for("fastlege", ["__NATIONAL_ID__"])], challenge=challenge_of(verifier),
)
print(json.dumps({"code": issued.code, "verifier": verifier}))
"""


def login(env: dict[str, str], username: str) -> tuple[str, str, str]:
    """A session of this seed_demo clinician as the login leaves it, with the CSRF cookie
    and token a browser gets from the lookup page: (Cookie header, token, a patient)."""

    made = instances.json_of(instances.shell(env, SETUP.replace("__USERNAME__", username)))
    session_cookie = str(made["cookie"])
    page = request(PORT_A, "GET", "/", cookie=session_cookie)
    token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page.body)
    csrf_cookie = re.search(
        rf"{made['csrf_cookie_name']}=([^;]+)", " ".join(page.headers.get_all("Set-Cookie") or [])
    )
    assert page.status == 200 and token and csrf_cookie, (page.status, page.text[:500])
    cookie = f"{session_cookie}; {made['csrf_cookie_name']}={csrf_cookie.group(1)}"
    return cookie, token.group(1).decode(), str(made["national_id"])


def _rsa_pem() -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@pytest.fixture(scope="module")
def portal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Portal]:
    instances.need_services()
    instances.need("nginx")
    log_dir = tmp_path_factory.mktemp("two-instances")
    citizen_key = _rsa_pem()
    from pjd_portal.accounts.keys import public_jwks

    instances.fresh_database(DATABASE)
    instances.flush_redis(REDIS_DB)
    env = instances.production_env(
        DATABASE,
        REDIS_DB,
        PJD_CITIZEN_PORTAL_CLIENT_ID=CITIZEN_CLIENT,
        PJD_CITIZEN_PORTAL_JWKS=json.dumps(public_jwks(citizen_key)),
        PJD_MHD_SOURCES=json.dumps(
            {SOURCE_ORGNR: {"base_url": f"http://127.0.0.1:{PORT_SOURCE}/fhir/R4", "token": False}}
        ),
        PJD_SOURCE_RETRIES="0",
        PJD_RATE_LOOKUPS_PER_MINUTE="0",
        PJD_RATE_LOOKUPS_PER_HOUR=str(LOOKUPS_PER_HOUR),
        # A failed source's answer is kept 1 s only: what keeps B from asking is the breaker.
        PJD_SOURCE_FAILURE_SECONDS="1",
        PJD_SOURCE_BREAKER_FAILURES="3",
        PJD_SOURCE_BREAKER_COOLDOWN_SECONDS="120",
    )
    source = FailingSource(PORT_SOURCE)
    try:
        instances.manage(env, "migrate", "--noinput")
        instances.manage(env, "createcachetable")
        instances.manage(env, "collectstatic", "--noinput")
        instances.manage(env, "seed_demo")
        with (
            instances.instance(env, PORT_A, log_dir),
            instances.instance(env, PORT_B, log_dir),
            instances.nginx(PORT_LB, [PORT_A, PORT_B], log_dir) as access_log,
        ):
            cookie, csrf, national_id = login(env, "fastlege")
            yield Portal(
                env=env,
                cookie=cookie,
                csrf=csrf,
                national_id=national_id,
                citizen_key=citizen_key,
                access_log=access_log,
                source=source,
            )
    finally:
        source.stop()
        instances.drop_database(DATABASE)
        instances.flush_redis(REDIS_DB)


def _lookup(portal: Portal, port: int, *, who: tuple[str, str, str] | None = None) -> Answer:
    cookie, csrf, national_id = who or (portal.cookie, portal.csrf, portal.national_id)
    return request(
        port,
        "POST",
        "/pasient/sok/",
        cookie=cookie,
        form={"csrfmiddlewaretoken": csrf, "national_id": national_id},
    )


def _handle(answer: Answer) -> str:
    found = re.fullmatch(r"/pasient/([0-9a-f-]{36})/(grunnlag/)?", answer.header("Location"))
    assert answer.status == 302 and found, (answer.status, answer.header("Location"), answer.text[:300])
    return found.group(1)


def test_a_session_moves_between_instances(portal: Portal) -> None:
    handle = _handle(_lookup(portal, PORT_A))  # looked up on A
    stated = request(
        PORT_B,
        "POST",
        f"/pasient/{handle}/grunnlag/",
        cookie=portal.cookie,
        form={"csrfmiddlewaretoken": portal.csrf, "basis": "UNNTAK", "situation": "", "reason": ""},
    )
    assert stated.status == 302 and stated.header("Location") == f"/pasient/{handle}/"  # the basis on B
    for port in (PORT_A, PORT_B, PORT_LB, PORT_LB):
        listed = request(port, "GET", f"/pasient/{handle}/", cookie=portal.cookie)
        assert listed.status == 200, (port, listed.status)
        assert "no-store" in listed.header("Cache-Control")
    opened_on = set()
    documents = re.findall(rf'href="(/pasient/{handle}/dokument/[^"]+)"', listed.text)
    assert documents, "the list shows documents"
    for port in (PORT_A, PORT_B):
        opened = request(port, "GET", documents[0], cookie=portal.cookie)
        assert opened.status == 200, (port, opened.status)
        opened_on.add(port)
    # Through nginx, both instances answered this session.
    lines = portal.access_log.read_text().splitlines()
    assert {f"127.0.0.1:{PORT_A}", f"127.0.0.1:{PORT_B}"} <= {line.split()[-1] for line in lines}


def test_a_launch_code_is_accepted_once_across_both(portal: Portal) -> None:
    for attempt in range(3):
        made = instances.json_of(
            instances.shell(portal.env, LAUNCH.replace("__NATIONAL_ID__", portal.national_id))
        )
        form = {"code": str(made["code"]), "code_verifier": str(made["verifier"])}
        # Both instances at the same moment, then each once more.
        with ThreadPoolExecutor(2) as pool:
            answers = list(
                pool.map(
                    lambda port, form=form: request(port, "POST", "/start/", form=form), [PORT_A, PORT_B]
                )
            )
        answers += [request(port, "POST", "/start/", form=form) for port in (PORT_A, PORT_B)]
        opened = [a for a in answers if a.status == 302 and "/oidc/authenticate/" in a.header("Location")]
        used = [a for a in answers if a.status == 403 and "launch_code_used" in a.text]
        assert (len(opened), len(used)) == (1, 3), (
            attempt,
            [(a.status, a.header("Location")) for a in answers],
        )


def _citizen_token(portal: Portal, audience: str, jti: str) -> str:
    from pjd_portal.accounts.keys import public_jwks

    now = int(time.time())
    claims = {
        "iss": CITIZEN_CLIENT,
        "sub": CITIZEN_CLIENT,
        "aud": audience,
        "iat": now,
        "exp": now + 60,
        "jti": jti,
    }
    kid = public_jwks(portal.citizen_key)["keys"][0]["kid"]
    return jwt.encode(claims, portal.citizen_key, algorithm="RS256", headers={"kid": kid})


def _citizen_search(portal: Portal, port: int, token: str) -> Answer:
    return request(
        port,
        "POST",
        "/api/fhir/AuditEvent/_search",
        form={"patient": portal.national_id},
        headers={"Authorization": f"Bearer {token}", "Host": "127.0.0.1"},
    )


def test_a_citizen_api_token_is_accepted_once_across_both(portal: Portal) -> None:
    results = []
    for _ in range(5):
        jti = str(uuid.uuid4())
        tokens = {
            port: _citizen_token(portal, "http://127.0.0.1/api/fhir/AuditEvent/_search", jti)
            for port in (PORT_A, PORT_B)
        }
        with ThreadPoolExecutor(4) as pool:
            answers = list(
                pool.map(
                    lambda port, tokens=tokens: _citizen_search(portal, port, tokens[port]),
                    [PORT_A, PORT_B] * 6,
                )
            )
        statuses = sorted(a.status for a in answers)
        results.append(statuses)
        assert statuses.count(200) == 1, (statuses, [a.text[:200] for a in answers if a.status != 401])
        assert statuses.count(401) == 11
    print(f"\n5 tokens sent 12 times each to two instances: {sum(r.count(200) for r in results)} accepted")


def test_a_breaker_opened_by_one_instance_is_open_in_the_other(portal: Portal) -> None:
    handle = _handle(_lookup(portal, PORT_A))
    stated = request(
        PORT_A,
        "POST",
        f"/pasient/{handle}/grunnlag/",
        cookie=portal.cookie,
        form={"csrfmiddlewaretoken": portal.csrf, "basis": "UNNTAK", "situation": "", "reason": ""},
    )
    assert stated.status == 302
    # The list on A (?wait=1: the sources asked in the page's own request, as without
    # JavaScript) asks the failing source (its failed answer kept 1 s) until its breaker
    # opens after three failures; then A stops asking.
    deadline = time.monotonic() + 30
    while portal.source.hits < 3:
        assert time.monotonic() < deadline, f"the source was asked {portal.source.hits} times"
        assert request(PORT_A, "GET", f"/pasient/{handle}/?wait=1", cookie=portal.cookie).status == 200
        time.sleep(1.2)
    time.sleep(1.2)
    asked = portal.source.hits
    assert request(PORT_A, "GET", f"/pasient/{handle}/?wait=1", cookie=portal.cookie).status == 200
    assert portal.source.hits == asked, "A's breaker did not open"
    # B has never asked the source itself: with a breaker of its own it would ask now.
    for _ in range(3):
        page = request(PORT_B, "GET", f"/pasient/{handle}/?wait=1", cookie=portal.cookie)
        assert page.status == 200
        time.sleep(1.2)
    assert portal.source.hits == asked, "B asked a source whose breaker A had opened"
    print(f"\nbreaker: the source was asked {asked} times by A, then 0 by A and 0 by B")


def test_the_lookup_rate_limit_counts_both_instances(portal: Portal) -> None:
    """A clinician of their own (no earlier lookups), LOOKUPS_PER_HOUR = 8: twelve lookups,
    six on each instance, are 8 looked up and 4 refused. Counted per instance they would
    all be looked up (six each)."""

    who = login(portal.env, "legevakt")
    answers = [_lookup(portal, port, who=who) for port in [PORT_A, PORT_B] * 6]
    statuses = [a.status for a in answers]
    assert statuses == [302] * LOOKUPS_PER_HOUR + [429] * 4, statuses
    refused = answers[LOOKUPS_PER_HOUR]
    assert "For mange oppslag" in refused.text
    assert int(refused.header("Retry-After")) > 0
    print(
        f"\nrate limit {LOOKUPS_PER_HOUR}/hour, 12 lookups over two instances: {statuses.count(302)} looked up, "
        f"{statuses.count(429)} refused"
    )
