"""State every instance must share, tried with more than one process (docs/operations.md,
"More than one process"): the cache (Redis in production, the database cache in the demo), the
citizen API's one-use assertion ids (PostgreSQL), the sources' circuit breakers and DPoP
nonces (the cache), and the rate limits' counts (the cache).

The other processes are plain Python processes of the portal (django.setup(), the same
settings), given the test database by name or the test Redis by URL and key prefix; each
prints one JSON line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.core.cache import caches
from django.db import connection

from pjd_portal.accounts.keys import public_jwks
from pjd_portal.accounts.models import ClientAssertionUse
from tests.builders import TEST_REDIS_URL, redis_up

ROOT = Path(__file__).resolve().parent.parent
REDIS_URL = TEST_REDIS_URL
CLIENT_ID = "innbyggerportal"
AUDIENCE = "http://testserver/api/fhir/AuditEvent/_search"

_WORKER = """
import json, os, sys
import django
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pjd_portal.settings")
django.setup()
from django.conf import settings
if sys.argv[1]:
    settings.DATABASES["default"]["NAME"] = sys.argv[1]
action, arg = sys.argv[2], json.loads(sys.argv[3])
if action == "assertion":
    from django.test import RequestFactory
    from pjd_portal.accounts.client_assertions import ClientAuthenticationFailed, authenticate_client
    request = RequestFactory().post("/api/fhir/AuditEvent/_search", HTTP_AUTHORIZATION="Bearer " + arg["token"])
    try:
        authenticate_client(request, audience=arg["audience"])
        print(json.dumps({"ok": True, "code": ""}))
    except ClientAuthenticationFailed as exc:
        print(json.dumps({"ok": False, "code": exc.code}))
elif action == "open_breaker":
    from pjd_portal.documents.sources.breaker import breaker_for
    breaker = breaker_for(arg["name"])
    for _ in range(breaker.failure_threshold):
        breaker.record_failure()
    print(json.dumps({"state": breaker.state}))
elif action == "breaker":
    from pjd_portal.documents.sources.breaker import breaker_for
    breaker = breaker_for(arg["name"])
    state = breaker.state
    print(json.dumps({"state": state, "allow": breaker.allow()}))
elif action == "close_breaker":
    from pjd_portal.documents.sources.breaker import breaker_for
    breaker_for(arg["name"]).record_success()
    print(json.dumps({"state": breaker_for(arg["name"]).state}))
elif action == "dpop_learn":
    from pjd_portal.documents.sources import dpop
    dpop.remember(arg["name"], nonce=arg["nonce"], required=True)
    print(json.dumps({"ok": True}))
elif action == "dpop_state":
    from pjd_portal.documents.sources import dpop
    state = dpop.state_for(arg["name"])
    print(json.dumps({"required": state.required, "nonce": state.nonce}))
elif action == "count":
    from pjd_portal.lib import rate_limits
    limits = [rate_limits.Limit(arg["limit"], "h")]  # an hour: no window ends within the test
    refused = [
        rate_limits.count_and_check(group=arg["group"], caller=arg["caller"], limits=limits)
        is not None
        for _ in range(arg["calls"])
    ]
    print(json.dumps({"refused": refused}))
"""


def _env(cache: str, prefix: str = "") -> dict[str, str]:
    env = {**os.environ, "DEBUG": "true", "PJD_ALLOW_SYNTHETIC_IDS": "true"}
    env.pop("PJD_CACHE_URL", None)
    if cache == "redis":
        env["PJD_CACHE_URL"] = REDIS_URL
        env["PJD_CACHE_KEY_PREFIX"] = prefix
    return env


def _start(env: dict[str, str], action: str, arg: dict[str, Any]) -> subprocess.Popen[str]:
    name = connection.settings_dict["NAME"] if connection.vendor == "postgresql" else ""
    return subprocess.Popen(
        [sys.executable, "-c", _WORKER, name, action, json.dumps(arg)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )


def _answer(process: subprocess.Popen[str]) -> dict[str, Any]:
    out, _ = process.communicate(timeout=60)
    assert process.returncode == 0, out
    return json.loads(out.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _run(env: dict[str, str], action: str, arg: dict[str, Any]) -> dict[str, Any]:
    return _answer(_start(env, action, arg))


@pytest.fixture(params=["redis", "database"])
def shared_cache(request: pytest.FixtureRequest) -> dict[str, str]:
    """The environment of a process on each shared cache: Redis (production) under a key
    prefix of this test's own; the database cache (the demo), on the test's PostgreSQL
    database (SQLite's test database lives in this process's memory)."""

    if request.param == "redis":
        if not redis_up():
            if os.environ.get("CI") == "true":
                pytest.fail(f"Redis at {REDIS_URL} is not reachable")
            pytest.skip("needs Redis at 127.0.0.1:6379")
        return _env("redis", f"pjd-shared17-test-{uuid.uuid4().hex[:8]}")
    if connection.vendor != "postgresql":
        if os.environ.get("CI") == "true":
            pytest.fail("the database cache across processes needs PostgreSQL under CI")
        pytest.skip("needs PostgreSQL (set DATABASE_URL=postgres://...)")
    request.getfixturevalue("transactional_db")
    return _env("database")


# --- the cache itself -----------------------------------------------------------------


@pytest.mark.database_cache
def test_without_redis_the_cache_is_the_database_cache_whose_table_migrate_makes(db: Any) -> None:
    if os.environ.get("PJD_CACHE_URL"):
        pytest.skip("this run is configured with Redis")
    cache = caches["default"]
    assert type(cache).__name__ == "DatabaseCache"
    assert "pjd_cache" in connection.introspection.table_names()  # accounts migration 0011
    cache.set("pjd-shared17-probe", {"a": 1}, 30)
    assert cache.get("pjd-shared17-probe") == {"a": 1}


# --- the citizen API's assertion, once across four processes ---------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_client_assertion_is_accepted_exactly_once_by_four_processes_at_once() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    jwks = public_jwks(key)
    now = int(time.time())
    claims = {"iss": CLIENT_ID, "sub": CLIENT_ID, "aud": AUDIENCE, "iat": now, "exp": now + 60}
    kid = jwks["keys"][0]["kid"]
    # The cache plays no part: the row in PostgreSQL refuses the replays.
    env = {
        **_env("database"),
        "PJD_CITIZEN_PORTAL_CLIENT_ID": CLIENT_ID,
        "PJD_CITIZEN_PORTAL_JWKS": json.dumps(jwks),
    }
    for round_ in range(3):
        token = jwt.encode(
            {**claims, "jti": f"jti-{round_}-{uuid.uuid4()}"}, key, algorithm="RS256", headers={"kid": kid}
        )
        runs = [_start(env, "assertion", {"token": token, "audience": AUDIENCE}) for _ in range(4)]
        answers = [_answer(run) for run in runs]
        assert sorted(a["ok"] for a in answers) == [False, False, False, True], answers
        assert {a["code"] for a in answers if not a["ok"]} == {"replayed"}
    assert ClientAssertionUse.objects.count() == 3  # one row per token, only its hash


# --- the circuit breaker ----------------------------------------------------------------


def test_a_breaker_opened_in_one_process_is_open_in_another(shared_cache: dict[str, str]) -> None:
    name = f"https://kilde-{uuid.uuid4().hex[:8]}.example/fhir/R4"
    assert _run(shared_cache, "open_breaker", {"name": name}) == {"state": "open"}
    # Another process asks before the cool-down: the source is not asked.
    assert _run(shared_cache, "breaker", {"name": name}) == {"state": "open", "allow": False}
    # A success anywhere closes it everywhere.
    assert _run(shared_cache, "close_breaker", {"name": name}) == {"state": "closed"}
    assert _run(shared_cache, "breaker", {"name": name}) == {"state": "closed", "allow": True}


def test_after_the_cooldown_only_one_process_makes_the_trial(shared_cache: dict[str, str]) -> None:
    name = f"https://kilde-{uuid.uuid4().hex[:8]}.example/fhir/R4"
    env = {**shared_cache, "PJD_SOURCE_BREAKER_COOLDOWN_SECONDS": "1"}
    assert _run(env, "open_breaker", {"name": name}) == {"state": "open"}
    time.sleep(1.2)
    answers = [_answer(run) for run in [_start(env, "breaker", {"name": name}) for _ in range(3)]]
    assert sorted(a["allow"] for a in answers) == [False, False, True], answers


# --- DPoP to a source -------------------------------------------------------------------


def test_a_dpop_nonce_one_process_was_given_is_the_one_every_process_sends(
    shared_cache: dict[str, str],
) -> None:
    name = f"https://kilde-{uuid.uuid4().hex[:8]}.example/fhir/R4"
    assert _run(shared_cache, "dpop_state", {"name": name}) == {"required": False, "nonce": None}
    _run(shared_cache, "dpop_learn", {"name": name, "nonce": "nonce-1"})
    assert _run(shared_cache, "dpop_state", {"name": name}) == {"required": True, "nonce": "nonce-1"}


# --- the rate limit's count ---------------------------------------------------------------


def test_a_rate_limit_counts_across_processes(shared_cache: dict[str, str]) -> None:
    arg = {"group": f"pjd.test-{uuid.uuid4().hex[:8]}", "caller": "42", "limit": 3, "calls": 2}
    assert _run(shared_cache, "count", arg) == {"refused": [False, False]}
    # The second process's second call is the fourth of this caller in the window.
    assert _run(shared_cache, "count", arg) == {"refused": [False, True]}
    other = _run(shared_cache, "count", {**arg, "caller": "43"})
    assert other == {"refused": [False, False]}  # per caller
