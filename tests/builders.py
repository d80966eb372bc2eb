"""Builders the tests share: the world of personas, the people and records added to it,
the requests and events written around it, and the scaffolding of concurrent requests.

Plain functions and small classes; conftest.py's fixtures are made of them, and a test
that needs one more of something calls them directly. The personas:
- `fastlege`: a GP (LE) with a clinician role at a GP office, the patient is on the list;
- `other_clinician`: a legevakt doctor; may use the portal but not someone else's handles;
- `auditor`: a loggkontrollør without HPR number, at the hospital;
- `administrator`: an access administrator without HPR number, at the GP office;
- `privacy_officer`: the national privacy officer (personvernombud) of the PJD
  administration, without HPR number;
- anonymous: not logged in.
All national ids are synthetic (Tenor style, month + 80).
"""

from __future__ import annotations

import datetime
import importlib
import io
import re
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from io import StringIO
from typing import Any, TypeVar

import pytest
import requests
import time_machine
from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, connections
from django.http import HttpRequest
from django.test import Client, RequestFactory
from django.utils import timezone

from pjd_portal.access import policy
from pjd_portal.accounts.audit_context import actor_of, point_of_care_for
from pjd_portal.accounts.context import SESSION_ORG_KEY
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
from pjd_portal.auditlog import events as kinds
from pjd_portal.auditlog.events import Outcome
from pjd_portal.auditlog.models import AccessEvent
from pjd_portal.auditlog.services import record_event
from pjd_portal.documents.models import (
    ConfidentialityCode,
    DocumentContent,
    DocumentReference,
    DocumentSource,
)
from pjd_portal.documents.sources.mhd import MhdSourceClient
from pjd_portal.patients.models import Gender, Patient

__all__ = [
    "TEST_REDIS_URL",
    "redis_up",
    "CATEGORY_SYSTEM",
    "FAKE_PDF",
    "LIST_PATIENT_ID",
    "OTHER_PATIENT_ID",
    "PERSONAS",
    "T0",
    "UNKNOWN_PATIENT_ID",
    "World",
    "add_auditor",
    "add_document",
    "add_sub_unit",
    "build_world",
    "comparable",
    "document_reference",
    "events",
    "fake_source_answers",
    "grant_role",
    "hospital_doctor",
    "in_threads",
    "is_postgres",
    "login",
    "login_as",
    "lookup_and_attest",
    "make_patient",
    "make_user",
    "matched",
    "post_at_once",
    "record",
    "request_as",
    "revoke_roles",
    "roles_held",
    "same_session",
    "set_audit_triggers",
    "staff",
    "synthetic_id",
    "verify",
]

T = TypeVar("T")

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


def build_world() -> World:
    """The organisations, the personas with their roles, and two patients (the `world`
    fixture; needs the database)."""

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


# Each persona: the World attribute of the user and of the organisation they act for.
PERSONAS: Mapping[str, tuple[str, str]] = {
    "fastlege": ("fastlege", "gp_office"),
    "other_clinician": ("other_clinician", "legevakt"),
    "auditor": ("auditor", "hospital"),
    "administrator": ("administrator", "gp_office"),
    "privacy_officer": ("privacy_officer", "forvaltning"),
}


def login(client: Client, user: User, org: Organisation) -> Client:
    client.force_login(user)
    session = client.session
    session[SESSION_ORG_KEY] = org.pk
    session.save()
    return client


def login_as(world: World, persona: str, client: Client | None = None) -> Client:
    """A client (a fresh one unless given) logged in as the named persona, acting for its
    organisation; 'anonymous' is a client not logged in."""

    client = client or Client()
    if persona == "anonymous":
        return client
    user_attr, org_attr = PERSONAS[persona]
    return login(client, getattr(world, user_attr), getattr(world, org_attr))


def events(event_type: str | None = None, **filters: Any) -> list[AccessEvent]:
    """The access events written so far, oldest first (of one type, if given, and matching
    the other field filters)."""

    events = AccessEvent.objects.filter(**filters).order_by("id")
    return list(events.filter(event_type=event_type) if event_type else events)


def look_up_patient(client: Client, national_id: str = LIST_PATIENT_ID) -> str:
    """Step 1 of the clinician path alone (no basis stated): the patient handle."""

    response = client.post("/pasient/sok/", {"national_id": national_id})
    assert response.status_code == 302, response.content[:500]
    return str(response["Location"].split("/")[2])


def lookup_and_attest(
    client: Client,
    national_id: str = LIST_PATIENT_ID,
    basis: str = "UNNTAK",
    reason: str = "",
    *,
    refused_with: str = "",
    situation: str = "unconscious",
) -> str:
    """Run steps 1 and 2 of the clinician path; return the patient handle.

    `refused_with`: the basis is expected to be refused with this message fragment."""

    response = client.post("/pasient/sok/", {"national_id": national_id})
    assert response.status_code == 302, response.content[:500]
    handle = response["Location"].split("/")[2]
    data = {"basis": basis, "reason": reason}
    if basis == "AKUTT":
        data["situation"] = situation
    response = client.post(f"/pasient/{handle}/grunnlag/", data)
    if basis == "AKUTT" and 'data-testid="akutt-confirm"' in response.content.decode():
        # The emergency opening's second step: confirm what is logged and who is told.
        response = client.post(f"/pasient/{handle}/grunnlag/", {**data, "confirmed": "on"})
    if refused_with:
        # A policy refusal marks the form (400); a block or a reservation is a page of its own.
        assert response.status_code in (200, 400), response.status_code
        assert refused_with in response.content.decode()
    else:
        assert response.status_code == 302, response.content[:2000]
    return handle


def matched(pattern: str, text: str, group: int = 1, flags: int = 0) -> str:
    """The group of the first match of `pattern` in `text`; a failed assertion if none."""

    match = re.search(pattern, text, flags)
    assert match is not None, f"{pattern!r} not found"
    return match.group(group)


def provider_logout_form(response: Any, id_token: str) -> dict[str, str]:
    """The portal's answer to "Log out" with an id token: a page whose one form POSTs the
    token to the provider's end-session endpoint in a hidden field, and no URL anywhere
    that holds it (it carries the clinician's national id). Returns the form's fields."""

    import lxml.html

    assert response.status_code == 200, response.status_code
    assert "Location" not in response
    assert response["Cache-Control"] == "no-store"
    assert response["Clear-Site-Data"] == '"cache", "storage"'
    body = response.content.decode()
    tree = lxml.html.document_fromstring(body)
    for element in tree.iter():
        for name in ("href", "src", "action", "formaction", "data-url", "hx-get", "hx-post"):
            url = element.get(name) or ""
            assert id_token not in url and "id_token_hint" not in url, (element.tag, name, url)
    # The token is in the page once: the hidden field's value, not in a link or a script.
    assert body.count(id_token) == 1
    (form,) = tree.xpath("//form[.//input[@name='id_token_hint']]")
    assert form.get("method") == "post"
    assert form.get("action") == settings.OIDC_OP_LOGOUT_ENDPOINT
    assert "?" not in form.get("action")
    fields = {str(i.get("name")): str(i.get("value")) for i in form.xpath(".//input")}
    assert {i.get("type") for i in form.xpath(".//input")} == {"hidden"}
    # The provider must never see the portal's CSRF token.
    assert "csrfmiddlewaretoken" not in fields
    assert fields["id_token_hint"] == id_token
    assert fields["client_id"] == settings.OIDC_RP_CLIENT_ID
    assert fields["post_logout_redirect_uri"].endswith("/logget-ut/")
    # Sent on at once by a static script (the CSP allows no inline script), with a
    # button for a browser without JavaScript.
    assert form.get("data-auto-submit") is not None
    assert form.xpath(".//button[@type='submit']")
    scripts = tree.xpath("//script")
    assert all(s.get("src") for s in scripts), "inline script"
    assert "/static/js/logout.js" in [s.get("src") for s in scripts]
    return fields


def is_postgres() -> bool:
    return connection.vendor == "postgresql"


def comparable(response: Any) -> str:
    """Response body without the per-response CSRF tokens and clock-dependent session
    counters, for same-answer checks."""

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


# --- more people and patients ----------------------------------------------------------

_serial = iter(range(100, 999, 7))  # spaced: an individual number may have no valid id


def make_patient(
    family_name: str = "Pasientsen", *, national_id: str | None = None, **kwargs: Any
) -> Patient:
    return Patient.objects.create(
        national_id=national_id or synthetic_id(5, 6, 90, next(_serial)),
        national_id_kind="synthetic",
        given_name=kwargs.pop("given_name", "Per"),
        family_name=family_name,
        birth_date=datetime.date(1990, 6, 5),
        gender=Gender.MALE,
        **kwargs,
    )


def hospital_doctor(world: World, name: str = "Hanne Sykehusdal", hpr: str = "910000033") -> User:
    """A doctor at the hospital, whose auditor is the `auditor` persona."""

    user = make_user(f"t-{hpr}", synthetic_id(7, 8, 77, int(hpr[-3:])), hpr, name)
    HprAuthorization.objects.create(hpr_number=hpr, code="LE")
    grant_role(user, world.hospital, Role.CLINICIAN)
    return user


def add_auditor(
    organisation: Organisation,
    username: str = "t-revisor-lv",
    pid: str | None = None,
    name: str = "Liv Loggkontroll",
) -> User:
    """A second auditor (loggkontrollør, no HPR number), of `organisation`; the default
    is the `legevakt_auditor` fixture's."""

    user = make_user(username, pid or synthetic_id(2, 2, 62, 512), "", name)
    grant_role(user, organisation, Role.AUDITOR)
    return user


def staff(user: User, org: Organisation) -> policy.StaffFacts:
    """What the policy knows of `user` acting for `org`."""

    roles = roles_held(user, org)
    return policy.StaffFacts(
        user_id=user.pk, organisation_id=org.pk, roles=roles, organisation_orgnr=org.orgnr
    )


# --- requests and events --------------------------------------------------------------

T0 = datetime.datetime(2026, 7, 1, 10, 0, 0, tzinfo=datetime.UTC)  # Wednesday, 12:00 in Oslo


def request_as(
    user: User | AnonymousUser | None = None,
    *,
    method: str = "get",
    organisation: Organisation | None = None,
    request_id: str | None = None,
    **meta: Any,
) -> HttpRequest:
    """A bare request to `/` from `user` (anonymous if None), with an empty session, as the
    writer and the role readers see one; `meta` are WSGI headers (REMOTE_ADDR=...,
    HTTP_USER_AGENT=...). `organisation` is the one the session acts for."""

    request = getattr(RequestFactory(), method)("/", **meta)
    request.user = user if user is not None else AnonymousUser()
    request.session = {}  # nothing in it: no organisation, no HelseID claims
    if organisation is not None:
        # What accounts.context would have read from the session, keyed by the person.
        request._pjd_organisation = (request.user.pk if user is not None else None, organisation)
    if request_id is not None:
        request.request_id = request_id
    assert isinstance(request, HttpRequest)
    return request


def record(
    world: World,
    when: datetime.datetime,
    event_type: str = kinds.PATIENT_LOOKUP.name,
    outcome: str = Outcome.GRANTED,
    *,
    user: User | None = None,
    org: Organisation | None = None,
    **details: Any,
) -> AccessEvent:
    """One event through the audit service, at a fixed time: by `user` (the fastlege if
    None) acting for `org` (the GP office if None)."""

    request = request_as(method="post", request_id=uuid.uuid4().hex)
    with time_machine.travel(when, tick=False):
        return record_event(
            kinds.kind(event_type)(outcome=outcome, **details),
            actor=actor_of(request, user or world.fastlege),
            where=point_of_care_for(org or world.gp_office),
        )


def verify() -> tuple[bool, str]:
    """`verify_audit` on the log as it stands: whether it passed, and what it printed."""

    out, err = StringIO(), StringIO()
    try:
        call_command("verify_audit", stdout=out, stderr=err)
    except CommandError as exc:
        return False, err.getvalue() + str(exc)
    return True, out.getvalue()


# --- at the same moment -----------------------------------------------------------------


def same_session(client: Client) -> Client:
    """A new client in `client`'s session (another tab, another thread)."""

    other = Client()
    other.cookies[settings.SESSION_COOKIE_NAME] = client.cookies[settings.SESSION_COOKIE_NAME].value
    return other


def in_threads(work: Callable[[int], T], n: int = 8, *, timeout: float = 10) -> list[T]:
    """Run `work(0)` to `work(n - 1)` in n threads released together by a barrier; each
    thread closes its database connections. Returns what they returned, in the order they
    finished; the first exception a thread raised is raised here."""

    barrier = threading.Barrier(n)
    results: list[T] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def worker(i: int) -> None:
        try:
            barrier.wait(timeout=timeout)
            result = work(i)
            with lock:
                results.append(result)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller, raised there
            with lock:
                errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results


def post_at_once(client: Client, url: str, data: Mapping[str, Any], n: int = 8) -> list[int]:
    """The same POST in `client`'s session from n threads at the same moment (a double
    submit); the status codes."""

    return in_threads(lambda _: same_session(client).post(url, data).status_code, n)


# --- a remote document source (MHD) -------------------------------------------------------

CATEGORY_SYSTEM = "urn:oid:2.16.578.1.12.4.1.1.9602"


def fake_source_answers(
    monkeypatch: pytest.MonkeyPatch,
    source: MhdSourceClient,
    body: bytes,
    *,
    status: int = 200,
    content_type: str = "application/fhir+json",
    headers: dict[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Answer every request of `source` with this body (read as a stream, as from a
    socket); returns the requests made."""

    made: list[dict[str, Any]] = []

    def answer(method: str, url: str, **kwargs: Any) -> requests.Response:
        made.append({"method": method, "url": url, **kwargs})
        response = requests.Response()
        response.status_code = status
        response.headers["Content-Type"] = content_type
        response.headers.update(headers or {})
        response.raw = io.BytesIO(body)
        response.url = url
        return response

    monkeypatch.setattr(source.session, "request", answer)
    return made


def document_reference(subject: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceType": "DocumentReference",
        "id": "d1",
        "status": "current",
        "subject": subject,
        "date": "2026-01-02T09:00:00+01:00",
        "category": [{"coding": [{"system": CATEGORY_SYSTEM, "code": "A00-1"}]}],
        "content": [{"attachment": {"contentType": "application/pdf", "url": "Binary/b1"}}],
    }


# --- the shared cache -------------------------------------------------------------------

TEST_REDIS_URL = "redis://127.0.0.1:6379/0"


def redis_up() -> bool:
    """Is the test Redis there (CI starts it: .ci/run)?"""

    import redis

    try:
        return bool(redis.Redis.from_url(TEST_REDIS_URL, socket_connect_timeout=0.5).ping())
    except redis.RedisError:
        return False
