"""The suite's fixtures and hooks: the world of personas (tests/builders.py builds it and
everything else the tests share), logged-in clients, the append-only triggers around each
test, and the real dev identity provider."""

from __future__ import annotations

import copy
import json
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from django.test import Client

from pjd_portal.accounts.keys import ensure_client_key
from pjd_portal.accounts.models import Organisation, User
from pjd_portal.auditlog import group_commit
from tests import fhirserver
from tests.builders import (
    LIST_PATIENT_ID,
    OTHER_PATIENT_ID,
    TEST_REDIS_URL,
    World,
    add_auditor,
    build_world,
    login,
    login_as,
    redis_up,
    set_audit_triggers,
    synthetic_id,
)


def _database_is_postgres() -> bool:
    return os.environ.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://"))


def pytest_sessionstart(session: Any) -> None:
    # CI runs on PostgreSQL, always: a missing DATABASE_URL is a failure, never a skip.
    if os.environ.get("CI") == "true" and not _database_is_postgres():
        pytest.exit("CI=true but DATABASE_URL does not point at PostgreSQL", returncode=1)


def pytest_collection_modifyitems(config: Any, items: list[Any]) -> None:
    # Browser tests last: Playwright's session-wide event loop, once started, makes Django
    # refuse ORM calls in every later test as "async unsafe".
    items.sort(key=lambda item: "browser" in item.keywords)
    if _database_is_postgres():
        return
    for item in items:
        if "postgres" in item.keywords:
            item.add_marker(pytest.mark.skip(reason="needs PostgreSQL (set DATABASE_URL=postgres://...)"))


@pytest.fixture
def world(db: Any) -> World:
    return build_world()


@pytest.fixture
def as_fastlege(client: Client, world: World) -> Client:
    return login(client, world.fastlege, world.gp_office)


@pytest.fixture
def persona_client(world: World) -> Callable[[str], Client]:
    """A fresh client logged in as the named persona ('anonymous' = not logged in)."""

    def make(name: str) -> Client:
        return login_as(world, name)

    return make


@pytest.fixture
def privacy_officer(world: World) -> tuple[User, Organisation]:
    """The privacy officer persona and the organisation they act for."""

    return world.privacy_officer, world.forvaltning


@pytest.fixture
def as_privacy_officer(world: World) -> Client:
    return login(Client(), world.privacy_officer, world.forvaltning)


@pytest.fixture
def as_auditor(world: World) -> Client:
    return login(Client(), world.auditor, world.hospital)


@pytest.fixture
def legevakt_auditor(world: World) -> User:
    """A second auditor, of the legevakt."""

    return add_auditor(world.legevakt)


@pytest.fixture(autouse=True)
def _shared_cache(request: Any, settings: Any) -> None:
    """Each test on a shared cache of its own: Redis, as production has it, under a key
    prefix no other test (or process of another run) uses. The database cache the settings
    choose without PJD_CACHE_URL is shared too, but within a test's transaction only this
    connection sees what it wrote, and the document sources' threads (other connections)
    would wait on its rows or keep a breaker another test opened. Tests marked
    `database_cache` keep it (tests/test_shared_state.py tries it across processes). Under
    CI Redis must be there; elsewhere without it the database cache serves."""

    if request.node.get_closest_marker("database_cache") or os.environ.get("PJD_CACHE_URL"):
        return
    if not redis_up():
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but Redis at {TEST_REDIS_URL} is not reachable")
        return
    settings.CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": TEST_REDIS_URL,
            "KEY_PREFIX": f"pjd-test-{uuid.uuid4().hex[:12]}",
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.5, "SOCKET_TIMEOUT": 0.5},
        }
    }


@pytest.fixture(autouse=True)
def _fresh_provider_cache() -> Any:
    """The identity provider's metadata and keys are cached per process; tests that fake
    the provider must not see another test's answers."""
    from pjd_portal.accounts import provider  # noqa: PLC0415

    provider.clear_cache()
    yield
    provider.clear_cache()


@pytest.fixture(autouse=True)
def _append_only_triggers(request: Any) -> Any:
    marker = request.node.get_closest_marker("django_db")
    transactional = (
        "transactional_db" in request.fixturenames
        or "live_server" in request.fixturenames
        or (marker is not None and marker.kwargs.get("transaction", False))
    )
    if transactional:
        request.getfixturevalue("transactional_db")
        set_audit_triggers(True)
        yield
        # The group writer's thread and connection end with the test: the next test
        # (and the test database's teardown) must not find them.
        group_commit.committer().stop()
        set_audit_triggers(False)
    elif "db" in request.fixturenames or marker is not None:
        request.getfixturevalue("db")
        set_audit_triggers(True)  # inside the test's transaction; rolled back after
        yield
    else:
        yield


# --- the real dev identity provider (devidp/, npm oidc-provider) ---------------------

ROOT = Path(__file__).resolve().parent.parent
# Fixed, because the provider only redirects to registered URIs; overridable, so that
# test runs side by side on one machine (other worktrees) do not take each other's ports.
DEVIDP_PORT = int(os.environ.get("PJD_TEST_DEVIDP_PORT", "9911"))
LIVE_SERVER_ADDRESS = f"127.0.0.1:{int(os.environ.get('PJD_TEST_LIVE_SERVER_PORT', '8765'))}"
# The stand-in EHR's FHIR server (tests/test_smart_launch.py starts it): fixed, because the
# dev identity provider's EHR page and its launches name it as `iss` from the start.
SMART_FHIR_PORT = int(os.environ.get("PJD_TEST_SMART_FHIR_PORT", str(DEVIDP_PORT + 1)))
SMART_FHIR_BASE = f"http://127.0.0.1:{SMART_FHIR_PORT}/fhir/R4"


def _wait_for(url: str, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up")


@pytest.fixture(scope="session")
def devidp(tmp_path_factory: Any) -> Iterator[dict[str, Any]]:
    """The dev identity provider as a subprocess, configured as HelseID is for the portal:
    private_key_jwt with a fresh client key, PAR required, PKCE S256. Redirect URIs are
    registered for the test client (`testserver`) and for the live server."""

    node = shutil.which("node")
    assert node, "Node.js is needed for the dev identity provider"
    assert (ROOT / "devidp" / "node_modules").is_dir(), "run `make setup` (npm ci in devidp/)"
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", DEVIDP_PORT)) != 0, f"port {DEVIDP_PORT} is taken"
    folder = tmp_path_factory.mktemp("devidp")
    ensure_client_key(folder / "client-key.pem", folder / "client-jwks.json")
    env = {
        **os.environ,
        "IDP_PORT": str(DEVIDP_PORT),
        "RP_BASES": f"http://testserver,http://{LIVE_SERVER_ADDRESS}",
        # The test EPJ page (/epj) launches into the live server, where the browser is.
        "IDP_PORTAL_BASE": f"http://{LIVE_SERVER_ADDRESS}",
        "IDP_CLIENT_JWKS": str(folder / "client-jwks.json"),
        "IDP_SIGNING_KEY_FILE": str(folder / "signing-key.json"),
        "IDP_SMART_FHIR_BASE": SMART_FHIR_BASE,
        # The EPJ client's private JWK (written by the provider): tests sign as the EPJ.
        "IDP_EPJ_KEY_FILE": str(folder / "epj-key.json"),
    }
    log = (folder / "devidp.log").open("wb")
    proc = subprocess.Popen(
        [node, "server.mjs"], cwd=ROOT / "devidp", env=env, stdout=log, stderr=subprocess.STDOUT
    )
    issuer = f"http://127.0.0.1:{DEVIDP_PORT}"
    try:
        _wait_for(f"{issuer}/.well-known/openid-configuration")
        config = json.loads(requests.get(f"{issuer}/.well-known/openid-configuration", timeout=5).text)
        yield {
            "config": config,
            "client_key": folder / "client-key.pem",
            "epj_key": folder / "epj-key.json",
            "log": folder / "devidp.log",
        }
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture
def use_devidp(settings: Any, devidp: dict[str, Any]) -> dict[str, Any]:
    """Point the portal at the running dev identity provider (endpoints from discovery)."""

    config = devidp["config"]
    settings.OIDC_ISSUER = config["issuer"]
    settings.OIDC_OP_AUTHORIZATION_ENDPOINT = config["authorization_endpoint"]
    settings.OIDC_OP_TOKEN_ENDPOINT = config["token_endpoint"]
    settings.OIDC_OP_JWKS_ENDPOINT = config["jwks_uri"]
    settings.OIDC_OP_LOGOUT_ENDPOINT = config["end_session_endpoint"]
    settings.OIDC_RP_CLIENT_PRIVATE_KEY_FILE = devidp["client_key"]
    policy = copy.deepcopy(settings.CONTENT_SECURITY_POLICY)
    policy["DIRECTIVES"]["form-action"] = ["'self'", config["issuer"]]
    settings.CONTENT_SECURITY_POLICY = policy
    return devidp


# --- the stand-in EHR for the SMART launch (tests/test_smart_launch.py, test_browser_smart.py) ---
#
# The test FHIR server as the EHR's FHIR server: its smart-configuration names the dev
# identity provider, Patient reads need that provider's token. On the fixed port the
# provider's launches name as `iss`, with four patients.

NOT_IN_PORTAL_ID = synthetic_id(21, 6, 77, 420)
NATIONAL_ID = "urn:oid:2.16.578.1.12.4.1.4.1"
D_NUMBER = "urn:oid:2.16.578.1.12.4.1.4.2"


# The test's name for each patient, its name in the EHR, its identifiers there.
SMART_EHR_PATIENTS = {
    "list": ("Ingrid", "Testesen", [{"system": NATIONAL_ID, "value": LIST_PATIENT_ID}]),
    "other": ("Ola", "Prøvestad", [{"system": D_NUMBER, "value": OTHER_PATIENT_ID}]),
    "stranger": ("Una", "Ukjent", [{"system": NATIONAL_ID, "value": NOT_IN_PORTAL_ID}]),
    "anonymous": ("Ane", "Utennummer", [{"system": "urn:example:mrn", "value": "MRN-1"}]),
}


@pytest.fixture(scope="module")
def smart_ehr(
    tmp_path_factory: Any, devidp: dict[str, Any]
) -> Iterator[tuple[fhirserver.FhirServer, dict[str, str]]]:
    """The EHR's FHIR server and its patients' FHIR ids, by the test's own names."""

    folder: Path = tmp_path_factory.mktemp("smart-ehr")
    entries = [
        {
            "fullUrl": f"urn:uuid:{key}",
            "resource": {
                "resourceType": "Patient",
                "name": [{"family": family, "given": [given]}],
                "identifier": identifier,
            },
            "request": {"method": "POST", "url": "Patient"},
        }
        for key, (given, family, identifier) in SMART_EHR_PATIENTS.items()
    ]
    seed = folder / "seed.json"
    seed.write_text(json.dumps({"resourceType": "Bundle", "type": "batch", "entry": entries}))
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", SMART_FHIR_PORT)) != 0, f"port {SMART_FHIR_PORT} is taken"
    server = fhirserver.start(
        folder,
        "smart-ehr",
        seed_file=seed,
        port=SMART_FHIR_PORT,
        extra_env={"FHIR_SMART_AUTHORIZATION_SERVER": devidp["config"]["issuer"]},
    )
    assert server.base_url == SMART_FHIR_BASE
    try:
        bundle = requests.get(f"{server.base_url}/Patient", timeout=5).json()
        key_of = {family: key for key, (_, family, _) in SMART_EHR_PATIENTS.items()}
        ids = {key_of[e["resource"]["name"][0]["family"]]: e["resource"]["id"] for e in bundle["entry"]}
        yield server, ids
    finally:
        server.stop()
