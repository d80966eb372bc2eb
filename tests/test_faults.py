"""Faults fail closed and say so (issue 17, item 3; the handles' half of item 4).

- A database outage is the 503 page on every path: in a view, in a middleware (the user
  loaded, the session's timeout checked), and when only the session's save after the view
  fails, which Django itself turns into "400 Invalid request".
- An open whose answer did not reach its end is not a plain success in the log: a second
  `document_open` event, outcome `interrupted`, shown to the patient as such.
- The identity provider down: a clear Norwegian 503 page at login start and callback; the
  logout still ends the local session.
- Handles and attests belong to one login: after a logout and a new login of the same
  person, an old handle is the not-found page and an old attest admits nothing.

The restart of a real PostgreSQL under load is tests/system/test_chaos.py (`make test-system`).
"""

from __future__ import annotations

import socket
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.conf import settings
from django.contrib.sessions.models import Session
from django.core.signals import request_finished
from django.db import InterfaceError, OperationalError, close_old_connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.utils import CursorWrapper
from django.test import Client
from django.utils import timezone

from pjd_portal.access import policy
from pjd_portal.access.models import AccessAttest, PatientLookup
from pjd_portal.accounts.sessions import SESSION_ACTIVITY_AT_KEY, SESSION_LOGIN_KEY_KEY
from pjd_portal.auditlog import events as kinds
from pjd_portal.auditlog.events import Outcome
from pjd_portal.auditlog.models import AccessEvent
from pjd_portal.logreading import fhir
from tests.builders import (
    LIST_PATIENT_ID,
    World,
    add_document,
    comparable,
    events,
    login,
    look_up_patient,
    lookup_and_attest,
)

BIG_PDF = b"%PDF-1.4\n" + b"0" * (3 * 1024 * 1024) + b"\n%%EOF\n"  # several chunks


def _stale_activity(client: Client) -> None:
    """Make this request's session need a save after the view (the activity stamp moves)."""

    session = client.session
    session[SESSION_ACTIVITY_AT_KEY] = int(time.time()) - settings.SESSION_ACTIVITY_STEP_SECONDS - 1
    session.save()


def _assert_503_page(response: Any, url: str) -> None:
    assert response.status_code == 503, (url, response.status_code, response.content[:300])
    body = response.content.decode()
    # The portal's own page, in Norwegian: the database's message, or the access log's
    # where the first thing to fail was an event's write.
    assert "databasen" in body or "Tilgangen kunne ikke logges" in body, url
    assert "Midlertidig utilgjengelig" in body, url
    assert response["Retry-After"] == "30"
    assert b"%PDF" not in response.content


# --- 3a. a database outage, wherever it surfaces ------------------------------------------


def test_a_session_that_cannot_be_saved_after_the_view_is_the_503_page_not_400(
    as_fastlege: Client, as_auditor: Client, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The symptom of issue 17: the view answered, then the session's save met the restart.
    Django makes that UpdateError, SessionInterrupted, "400 Ugyldig forespørsel"."""

    handle = lookup_and_attest(as_fastlege)
    doc = add_document(world)
    as_fastlege.raise_request_exception = False
    as_auditor.raise_request_exception = False

    def refused(*args: Any, **kwargs: Any) -> None:
        raise OperationalError("terminating connection due to administrator command")

    routes = [
        (as_fastlege, "get", "/", {}),
        (as_fastlege, "get", f"/pasient/{handle}/", {}),
        (as_fastlege, "post", "/pasient/sok/", {"national_id": LIST_PATIENT_ID}),
        (as_auditor, "get", "/forvaltning/loggkontroll/", {}),
    ]
    opened_before = len(events(kinds.DOCUMENT_OPEN.name))
    # Stale stamps stay stale: every save below fails.
    _stale_activity(as_fastlege)
    _stale_activity(as_auditor)
    with monkeypatch.context() as patch:
        patch.setattr(Session, "save", refused)
        for client, method, url, data in routes:
            _assert_503_page(getattr(client, method)(url, data), url)
        # The open writes its session before its event: refused there, nothing logged as opened.
        url = f"/pasient/{handle}/dokument/{doc.document_id}/"
        _assert_503_page(as_fastlege.get(url), url)
    assert len(events(kinds.DOCUMENT_OPEN.name)) == opened_before


def test_a_session_deleted_meanwhile_is_still_djangos_answer(as_fastlege: Client, world: World) -> None:
    """Not an outage: the row went away (a logout in another tab). Told apart from one."""

    _stale_activity(as_fastlege)
    as_fastlege.raise_request_exception = False
    session_key = as_fastlege.cookies[settings.SESSION_COOKIE_NAME].value
    from django.contrib.sessions.backends.db import SessionStore  # noqa: PLC0415

    original = SessionStore.save

    def deleted_first(self: Any, must_create: bool = False) -> None:
        Session.objects.filter(session_key=session_key).delete()
        original(self, must_create)

    import pytest as _pytest  # noqa: PLC0415

    with _pytest.MonkeyPatch.context() as patch:
        patch.setattr(SessionStore, "save", deleted_first)
        response = as_fastlege.get("/")
    assert response.status_code == 400


FAILURES = {
    "queries refused (restart)": (CursorWrapper, "execute", OperationalError("server closed the connection")),
    "connection gone": (
        BaseDatabaseWrapper,
        "ensure_connection",
        InterfaceError("connection already closed"),
    ),
}


@pytest.mark.parametrize("failure", FAILURES)
def test_every_path_is_the_503_page_while_the_database_is_down(
    failure: str, as_fastlege: Client, as_auditor: Client, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    handle = lookup_and_attest(as_fastlege)
    doc = add_document(world)
    anonymous = Client(raise_request_exception=False)
    anonymous.get("/oidc/authenticate/")  # a login started, so the callback has a state
    for client in (as_fastlege, as_auditor):
        client.raise_request_exception = False
    owner, name, error = FAILURES[failure]

    def down(*args: Any, **kwargs: Any) -> None:
        raise error

    routes = [
        (as_fastlege, "get", "/", {}),
        (as_fastlege, "post", "/pasient/sok/", {"national_id": LIST_PATIENT_ID}),
        (as_fastlege, "get", f"/pasient/{handle}/", {}),
        (as_fastlege, "get", f"/pasient/{handle}/dokument/{doc.document_id}/", {}),
        (as_auditor, "get", "/forvaltning/loggkontroll/", {}),
        (as_auditor, "get", "/forvaltning/loggkontroll/ko/", {}),
        (anonymous, "get", "/oidc/callback/", {"code": "abc", "state": "not-known"}),
        (as_fastlege, "post", "/logg-ut/", {}),
    ]
    with monkeypatch.context() as patch:  # undone before the database fixture tears down
        patch.setattr(owner, name, down)
        for client, method, url, data in routes:
            _assert_503_page(getattr(client, method)(url, data), url)


def test_the_audit_writer_failing_outside_a_view_is_the_503_page(rf: Any) -> None:
    from pjd_portal.auditlog.services import AuditWriteFailed  # noqa: PLC0415
    from pjd_portal.lib.errors import server_error  # noqa: PLC0415

    request = rf.get("/")
    try:
        raise AuditWriteFailed("OperationalError")
    except AuditWriteFailed:
        response = server_error(request)
    assert response.status_code == 503
    assert "Tilgangen kunne ikke logges" in response.content.decode()


# --- 3b. an open that was not delivered says so -------------------------------------------


def _opened(client: Client, world: World, data: bytes = BIG_PDF) -> tuple[Any, Any]:
    handle = lookup_and_attest(client)
    doc = add_document(world, data=data)
    response = client.get(f"/pasient/{handle}/dokument/{doc.document_id}/")
    assert response.status_code == 200 and response.streaming
    return response, doc


def _client_gone(response: Any) -> None:
    """Close an answer never iterated. Without Django's end-of-request signal, as the test
    client does (it would close the test's database connection)."""

    request_finished.disconnect(close_old_connections)
    try:
        response.close()
    finally:
        request_finished.connect(close_old_connections)


def _opens(doc: Any) -> list[AccessEvent]:
    return events(kinds.DOCUMENT_OPEN.name, document_id=doc.pk)


def test_an_open_read_to_its_end_is_one_granted_event(as_fastlege: Client, world: World) -> None:
    response, doc = _opened(as_fastlege, world)
    assert b"".join(response.streaming_content) == BIG_PDF  # the test client closes it at the end
    assert [(e.outcome, e.reason_code) for e in _opens(doc)] == [(Outcome.GRANTED, "")]


def test_an_open_broken_off_by_the_client_is_logged_as_not_delivered(
    as_fastlege: Client, world: World
) -> None:
    response, doc = _opened(as_fastlege, world)
    # The granted event is committed before the first byte.
    assert [e.outcome for e in _opens(doc)] == [Outcome.GRANTED]
    stream = iter(response.streaming_content)
    first = next(stream)
    assert first.startswith(b"%PDF")
    response._iterator.close()  # the client went away: the server stops and closes the answer
    granted, interrupted = _opens(doc)
    assert granted.outcome == Outcome.GRANTED
    assert (interrupted.outcome, interrupted.reason_code) == (Outcome.INTERRUPTED, "not_delivered")
    assert interrupted.details["delivered_bytes"] == len(first) < len(BIG_PDF)
    assert interrupted.attest_id == granted.attest_id and interrupted.patient_id == granted.patient_id
    _client_gone(response)  # a second close writes nothing more
    assert len(_opens(doc)) == 2


def test_an_answer_replaced_before_it_started_is_logged_as_not_delivered(
    as_fastlege: Client, world: World
) -> None:
    response, doc = _opened(as_fastlege, world)
    _client_gone(response)  # never iterated: a middleware answered 503 instead
    assert [(e.outcome, e.details.get("delivered_bytes")) for e in _opens(doc)] == [
        (Outcome.GRANTED, None),
        (Outcome.INTERRUPTED, 0),
    ]


def test_the_patient_is_told_the_document_was_not_delivered_in_full(
    as_fastlege: Client, as_privacy_officer: Client, world: World
) -> None:
    response, doc = _opened(as_fastlege, world)
    stream = iter(response.streaming_content)
    next(stream)
    response._iterator.close()
    # The printed log (innsyn) the privacy officer hands the patient.
    page = as_privacy_officer.post("/forvaltning/innsyn/", {"national_id": LIST_PATIENT_ID})
    assert page.status_code == 200
    assert "Åpnet, men ikke levert i sin helhet" in page.content.decode()
    # The citizen portal's log (FHIR AuditEvent): not a success, and why.
    interrupted = _opens(doc)[-1]
    resource = fhir.audit_event(interrupted, audience=policy.CITIZEN_LOG)
    assert resource["outcome"] != fhir.OUTCOME_SUCCESS
    assert resource["outcomeDesc"] == "interrupted: not_delivered"


# --- 3c. the identity provider down ---------------------------------------------------------


def _closed_port() -> str:
    """An address nothing listens on (bound, never listening: connections are refused)."""

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def idp_down(settings: Any) -> str:
    base = _closed_port()
    settings.OIDC_ISSUER = base
    settings.OIDC_OP_AUTHORIZATION_ENDPOINT = f"{base}/auth"
    settings.OIDC_OP_TOKEN_ENDPOINT = f"{base}/token"
    settings.OIDC_OP_JWKS_ENDPOINT = f"{base}/jwks"
    settings.OIDC_OP_LOGOUT_ENDPOINT = f"{base}/session/end"
    settings.OIDC_TIMEOUT = 2.0
    return base


def _assert_provider_page(response: Any) -> None:
    assert response.status_code == 503, response.content[:500]
    body = response.content.decode()
    assert '<html lang="nb"' in body
    assert 'data-reason="provider_unreachable"' in body
    assert "HelseID kan ikke nås akkurat nå" in body


def test_login_start_with_the_provider_down_is_a_clear_page(idp_down: str, world: World) -> None:
    _assert_provider_page(Client().get("/oidc/authenticate/"))  # discovery (PAR) refused


def test_login_callback_with_the_provider_down_is_a_clear_page(
    idp_down: str, world: World, settings: Any
) -> None:
    settings.OIDC_USE_PAR = False  # so that the login starts; its token request then fails
    client = Client()
    start = client.get("/oidc/authenticate/")
    assert start.status_code == 302
    state = parse_qs(urlsplit(start["Location"]).query)["state"][0]
    response = client.get("/oidc/callback/", {"code": "a-code", "state": state})
    _assert_provider_page(response)
    assert [e.reason_code for e in events(kinds.LOGIN_REFUSED.name)] == ["provider_unreachable"]


def test_logout_ends_the_local_session_with_the_provider_down(
    idp_down: str, as_fastlege: Client, world: World
) -> None:
    session_key = as_fastlege.cookies[settings.SESSION_COOKIE_NAME].value
    response = as_fastlege.post("/logg-ut/")
    # The portal never waits on HelseID to log out: the browser is sent on (a form POST).
    assert response.status_code in (200, 302)
    cookie = response.cookies[settings.SESSION_COOKIE_NAME]
    assert cookie.value == "" and cookie["max-age"] == 0
    assert not Session.objects.filter(session_key=session_key).exists()
    home = as_fastlege.get("/")
    assert 'data-testid="login"' in home.content.decode()
    assert len(events(kinds.LOGOUT.name)) == 1


# --- 4. handles and attests end at logout ------------------------------------------------


def _log_out_and_in(client: Client, world: World) -> None:
    assert client.post("/logg-ut/").status_code in (200, 302)
    login(client, world.fastlege, world.gp_office)


def test_an_old_handle_is_not_found_after_logout_and_a_new_login(as_fastlege: Client, world: World) -> None:
    handle = lookup_and_attest(as_fastlege)
    doc = add_document(world)
    assert as_fastlege.get(f"/pasient/{handle}/").status_code == 200
    old_key = as_fastlege.session[SESSION_LOGIN_KEY_KEY]

    _log_out_and_in(as_fastlege, world)

    assert as_fastlege.session[SESSION_LOGIN_KEY_KEY] != old_key
    missing = as_fastlege.get("/pasient/00000000-0000-4000-8000-000000000000/")
    for url in (f"/pasient/{handle}/", f"/pasient/{handle}/dokument/{doc.document_id}/"):
        response = as_fastlege.get(url)
        assert response.status_code == 404
        assert comparable(response) == comparable(missing)
    refused = events(kinds.ACCESS_DENIED.name, reason_code="unknown_handle")
    assert str(handle) in [e.details.get("handle") for e in refused]
    assert not _opens(doc)
    # The rows say so too: ended at the logout.
    now = timezone.now()
    assert PatientLookup.objects.get(handle=handle).expires_at <= now
    assert AccessAttest.objects.get(lookup__handle=handle).expires_at <= now


def test_an_old_attest_does_not_admit_a_new_lookup_after_a_new_login(
    as_fastlege: Client, world: World
) -> None:
    lookup_and_attest(as_fastlege)
    _log_out_and_in(as_fastlege, world)

    handle = look_up_patient(as_fastlege)
    response = as_fastlege.get(f"/pasient/{handle}/")
    # No basis in this login: the list asks for one, as for a patient never looked up.
    assert response.status_code == 302 and response["Location"] == f"/pasient/{handle}/grunnlag/"


def test_within_one_login_a_new_lookup_still_finds_the_basis(as_fastlege: Client, world: World) -> None:
    lookup_and_attest(as_fastlege)
    handle = look_up_patient(as_fastlege)
    assert as_fastlege.get(f"/pasient/{handle}/").status_code == 200


def test_a_logout_in_one_browser_leaves_the_same_persons_other_login_alone(
    as_fastlege: Client, world: World
) -> None:
    other_pc = login(Client(), world.fastlege, world.gp_office)
    theirs = lookup_and_attest(other_pc)
    mine = lookup_and_attest(as_fastlege)
    # A handle is not shared between the person's two logins either.
    assert other_pc.get(f"/pasient/{mine}/").status_code == 404

    assert as_fastlege.post("/logg-ut/").status_code in (200, 302)

    assert other_pc.get(f"/pasient/{theirs}/").status_code == 200
