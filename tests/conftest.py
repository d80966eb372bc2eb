"""Named personas and helpers shared by the test suite.

Personas (every view test checks each of them):
- `fastlege`: a GP (LE) with a clinician role at a GP office, the patient is on the list;
- `other_clinician`: a legevakt doctor; may use the portal but not someone else's handles;
- `auditor`: a loggkontrollør without HPR number;
- `administrator`: an access administrator without HPR number;
- `privacy_officer`: the national privacy officer (personvernombud) of the PJD
  administration, without HPR number;
- anonymous: not logged in.
All national ids are synthetic (Tenor style, month + 80).
"""

from __future__ import annotations

import copy
import datetime
import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from django.db import connection
from django.test import Client
from django.utils import timezone

from pjd_portal.accounts.context import SESSION_ORG_KEY
from pjd_portal.accounts.keys import ensure_client_key
from pjd_portal.accounts.models import (
    HprAuthorization,
    Organisation,
    OrganisationKind,
    RevokedRoleGrant,
    Role,
    User,
)
from pjd_portal.accounts.roles import grant as grant_role
from pjd_portal.accounts.roles import grants_in_force
from pjd_portal.auditlog import group_commit
from pjd_portal.documents.models import (
    ConfidentialityCode,
    DocumentContent,
    DocumentReference,
    DocumentSource,
)
from pjd_portal.patients.models import Gender, Patient

FAKE_PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


def synthetic_id(day: int, month: int, yy: int, individual: int) -> str:
    from pjd_portal.patients.national_id import has_valid_check_digits

    base = f"{day:02d}{month + 80:02d}{yy:02d}"
    for ind in range(individual, individual + 200):
        for k in range(100):
            candidate = f"{base}{ind:03d}{k:02d}"
            if has_valid_check_digits(candidate):
                return candidate
    raise AssertionError("no synthetic id found")


LIST_PATIENT_ID = synthetic_id(3, 4, 71, 210)
OTHER_PATIENT_ID = synthetic_id(17, 9, 83, 310)
UNKNOWN_PATIENT_ID = synthetic_id(21, 2, 66, 410)


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


@dataclass
class World:
    gp_office: Organisation
    legevakt: Organisation
    hospital: Organisation
    source: DocumentSource
    fastlege: User
    other_clinician: User
    auditor: User
    administrator: User
    patient: Patient
    other_patient: Patient
    forvaltning: Organisation
    privacy_officer: User


def make_user(username: str, pid: str, hpr: str, name: str) -> User:
    user = User.objects.create(username=username, pid=pid, hpr_number=hpr, display_name=name)
    user.set_unusable_password()
    user.save()
    return user


def revoke_roles(user: User, *, role: str | None = None, organisation: Organisation | None = None) -> int:
    """End the user's roles (all, or of one role or organisation) as a revocation does,
    without the page: the permission rows go, a RevokedRoleGrant each stays."""

    rows = grants_in_force().filter(user=user).select_related("permission")
    if organisation is not None:
        rows = rows.filter(content_object=organisation)
    ended = [row for row in rows if role is None or row.role == role]
    for row in ended:
        RevokedRoleGrant.objects.create(
            user_id=row.user_id,
            organisation_id=row.content_object_id,
            role=row.role,
            grant_id=row.pk,
            granted_at=row.granted_at,
            granted_by_id=row.granted_by_id,
        )
        row.delete()
    return len(ended)


def roles_held(user: User, organisation: Organisation) -> frozenset[str]:
    return frozenset(
        row.role
        for row in grants_in_force()
        .filter(user=user, content_object=organisation)
        .select_related("permission")
    )


@pytest.fixture
def world(db: Any) -> World:
    gp_office = Organisation.objects.create(
        orgnr="310000000", name="Storgata legekontor", kind=OrganisationKind.FASTLEGEKONTOR, is_consumer=True
    )
    legevakt = Organisation.objects.create(
        orgnr="310100005",
        name="Bergen legevakt",
        kind=OrganisationKind.LEGEVAKT,
        is_consumer=True,
        is_source=True,
    )
    hospital = Organisation.objects.create(
        orgnr="310300004",
        name="Oslo universitetssykehus HF",
        kind=OrganisationKind.HELSEFORETAK,
        is_source=True,
    )
    source = DocumentSource.objects.create(organisation=hospital, name=hospital.name)

    fastlege = make_user("t-fastlege", synthetic_id(12, 3, 75, 123), "910000011", "Kari Fastlege")
    other = make_user("t-legevakt", synthetic_id(4, 9, 68, 456), "910000022", "Lars Legevakt")
    auditor = make_user("t-revisor", synthetic_id(28, 2, 64, 198), "", "Rune Revisor")
    admin = make_user("t-admin", synthetic_id(19, 5, 85, 287), "", "Tor Tilgangsstyrer")
    HprAuthorization.objects.create(hpr_number="910000011", code="LE")
    HprAuthorization.objects.create(hpr_number="910000022", code="LE")
    grant_role(fastlege, gp_office, Role.CLINICIAN)
    grant_role(other, legevakt, Role.CLINICIAN)
    grant_role(auditor, hospital, Role.AUDITOR)
    grant_role(admin, gp_office, Role.ACCESS_ADMINISTRATOR)

    patient = Patient.objects.create(
        national_id=LIST_PATIENT_ID,
        national_id_kind="synthetic",
        given_name="Ingrid",
        family_name="Testesen",
        birth_date=datetime.date(1971, 4, 3),
        gender=Gender.FEMALE,
        address="Eksempelveien 1, 0101 Oslo",
        fastlege_hpr_number="910000011",
    )
    other_patient = Patient.objects.create(
        national_id=OTHER_PATIENT_ID,
        national_id_kind="synthetic",
        given_name="Ola",
        family_name="Prøvestad",
        birth_date=datetime.date(1983, 9, 17),
        gender=Gender.MALE,
        address="Testgata 2, 5003 Bergen",
        fastlege_hpr_number="",
    )
    # The national privacy officer acts for the PJD administration, not for a care provider.
    forvaltning = Organisation.objects.create(
        orgnr="310900001", name="PJD forvaltning", kind=OrganisationKind.FORVALTNING
    )
    privacy_officer = make_user("t-personvern", synthetic_id(9, 12, 79, 376), "", "Pia Personvern")
    grant_role(privacy_officer, forvaltning, Role.PRIVACY_OFFICER)
    return World(
        gp_office,
        legevakt,
        hospital,
        source,
        fastlege,
        other,
        auditor,
        admin,
        patient,
        other_patient,
        forvaltning,
        privacy_officer,
    )


def add_document(
    world: World,
    patient: Patient | None = None,
    *,
    category: str = "A00-1",
    days_ago: int = 10,
    title: str = "Epikrise etter innleggelse",
    content_type: str = "application/pdf",
    data: bytes = FAKE_PDF,
    confidentiality: str = ConfidentialityCode.NORMAL,
) -> DocumentReference:
    doc = DocumentReference.objects.create(
        source=world.source,
        patient=patient or world.patient,
        category=category,
        type_code="A03-2",
        type_name="Epikrise",
        title=title,
        service_date=timezone.localdate() - datetime.timedelta(days=days_ago),
        author="Overlege Anne Berg",
        institution_name=world.hospital.name,
        institution_orgnr=world.hospital.orgnr,
        department="Medisinsk klinikk",
        confidentiality_code=confidentiality,
        content_type=content_type,
        size=len(data),
    )
    DocumentContent.objects.create(document=doc, data=data)
    return doc


def add_sub_unit(world: World) -> Organisation:
    """A sub-unit (underenhet) of the hospital: the point of care, its legal entity the parent."""
    return Organisation.objects.create(
        orgnr="974589095",
        name="OUS, Akuttmottaket",
        kind=OrganisationKind.HELSEFORETAK,
        parent=world.hospital,
    )


def login(client: Client, user: User, org: Organisation) -> Client:
    client.force_login(user)
    session = client.session
    session[SESSION_ORG_KEY] = org.pk
    session.save()
    return client


@pytest.fixture
def as_fastlege(client: Client, world: World) -> Client:
    return login(client, world.fastlege, world.gp_office)


@pytest.fixture
def persona_client(world: World) -> Callable[[str], Client]:
    """A fresh client logged in as the named persona ('anonymous' = not logged in)."""

    def make(name: str) -> Client:
        client = Client()
        if name == "anonymous":
            return client
        user, org = {
            "fastlege": (world.fastlege, world.gp_office),
            "other_clinician": (world.other_clinician, world.legevakt),
            "auditor": (world.auditor, world.hospital),
            "administrator": (world.administrator, world.gp_office),
            "privacy_officer": (world.privacy_officer, world.forvaltning),
        }[name]
        return login(client, user, org)

    return make


@pytest.fixture
def privacy_officer(world: World) -> tuple[User, Organisation]:
    """The privacy officer persona and the organisation they act for."""

    return world.privacy_officer, world.forvaltning


@pytest.fixture
def as_privacy_officer(world: World) -> Client:
    return login(Client(), world.privacy_officer, world.forvaltning)


def events(event_type: str | None = None) -> list[Any]:
    """The access events written so far, oldest first (of one type, if given)."""

    from pjd_portal.auditlog.models import AccessEvent

    events = AccessEvent.objects.order_by("id")
    return list(events.filter(event_type=event_type) if event_type else events)


def lookup_and_attest(
    client: Client,
    national_id: str = LIST_PATIENT_ID,
    basis: str = "UNNTAK",
    reason: str = "",
    *,
    refused_with: str = "",
) -> str:
    """Run steps 1 and 2 of the clinician path; return the patient handle.

    `refused_with`: the basis is expected to be refused with this message fragment."""

    response = client.post("/pasient/sok/", {"national_id": national_id})
    assert response.status_code == 302, response.content[:500]
    handle = response["Location"].split("/")[2]
    response = client.post(f"/pasient/{handle}/grunnlag/", {"basis": basis, "reason": reason})
    if refused_with:
        assert response.status_code == 400, response.status_code
        assert refused_with in response.content.decode()
    else:
        assert response.status_code == 302, response.content[:2000]
    return handle


def is_postgres() -> bool:
    return connection.vendor == "postgresql"


def comparable(response: Any) -> str:
    """Response body without the per-response CSRF tokens and clock-dependent session
    counters, for same-answer checks."""

    import re

    body = response.content.decode()
    body = re.sub(r'"X-CSRFToken": "[^"]+"', '"X-CSRFToken": ""', body)
    # The session dialog counts seconds: it differs by the clock, not by the answer.
    body = re.sub(r'data-(idle|absolute)-remaining="-?\d+"', r'data-\1-remaining=""', body)
    return re.sub(r'name="csrfmiddlewaretoken" value="[^"]+"', 'name="csrfmiddlewaretoken" value=""', body)


def set_audit_triggers(enabled: bool) -> None:
    """Switch the append-only triggers (tests only).

    Django empties the database after a transactional test (TRUNCATE on PostgreSQL,
    DELETE on SQLite), which the triggers rightly refuse. Around such tests the triggers
    are off only for that clean-up; every test itself runs with them on.
    """

    import importlib

    migration = importlib.import_module("pjd_portal.auditlog.migrations.0002_append_only")
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # Replica mode silences every ordinary trigger for this session only: the
            # parent's, the partitions' clones and each partition's TRUNCATE trigger.
            cursor.execute(f"SET session_replication_role = {'DEFAULT' if enabled else 'replica'}")
        elif enabled:
            for statement in migration.SQLITE_BACKWARD + migration.SQLITE_FORWARD:
                cursor.execute(statement)
        else:
            for statement in migration.SQLITE_BACKWARD:
                cursor.execute(statement)


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
DEVIDP_PORT = 9911
LIVE_SERVER_ADDRESS = "127.0.0.1:8765"


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
        "IDP_CLIENT_JWKS": str(folder / "client-jwks.json"),
        "IDP_SIGNING_KEY_FILE": str(folder / "signing-key.json"),
    }
    log = (folder / "devidp.log").open("wb")
    proc = subprocess.Popen(
        [node, "server.mjs"], cwd=ROOT / "devidp", env=env, stdout=log, stderr=subprocess.STDOUT
    )
    issuer = f"http://127.0.0.1:{DEVIDP_PORT}"
    try:
        _wait_for(f"{issuer}/.well-known/openid-configuration")
        config = json.loads(requests.get(f"{issuer}/.well-known/openid-configuration", timeout=5).text)
        yield {"config": config, "client_key": folder / "client-key.pem", "log": folder / "devidp.log"}
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
