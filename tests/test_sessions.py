"""Session lifetime: idle and absolute timeouts, background requests, the warning
dialog's endpoints, and htmx requests that must never get a whole page in a fragment.

The clock is frozen with time-machine (tick=False) and moved by hand; the session's
stamps are epoch seconds, so a shift is exactly the time the server sees pass.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import time_machine
from django.conf import settings
from django.test import Client
from django.utils import timezone

from pjd_portal.access.models import AccessAttest
from pjd_portal.accounts.sessions import (
    SESSION_ACTIVITY_AT_KEY,
    SESSION_LOGIN_AT_KEY,
)
from pjd_portal.auditlog import events as kinds
from pjd_portal.auditlog.models import AccessEvent
from tests.builders import add_document, login, lookup_and_attest, matched, provider_logout_form

ROOT = Path(__file__).resolve().parent.parent
START = datetime.datetime(2026, 3, 2, 8, 0, tzinfo=datetime.UTC)
MINUTE = 60
EXPIRED_URL = "/sesjon-utlopt/"
STATUS_URL = "/sesjon/status/"
KEEPALIVE_URL = "/sesjon/forleng/"
BACKGROUND = {"X-PJD-Background": "1"}
HTMX = {"HX-Request": "true"}
JSON = {"Accept": "application/json"}


@pytest.fixture
def clock():
    with time_machine.travel(START, tick=False) as traveller:
        yield traveller


@pytest.fixture
def gp(clock, client, world):
    """The fastlege, logged in at START."""
    return login(client, world.fastlege, world.gp_office)


def wait(clock, minutes=0, seconds=0):
    clock.shift(datetime.timedelta(minutes=minutes, seconds=seconds))


def expiry_events():
    return list(AccessEvent.objects.filter(event_type=kinds.SESSION_EXPIRED.name).order_by("id"))


def is_logged_in(client):
    return "_auth_user_id" in client.session


def assert_expired(response, client, reason):
    assert response.status_code == 302, response.content[:300]
    assert response["Location"] == EXPIRED_URL
    assert not is_logged_in(client)
    [event] = expiry_events()
    assert event.reason_code == reason
    return event


def remaining(client):
    response = client.get(STATUS_URL, headers={**BACKGROUND, **JSON})
    assert response.status_code == 200, response.content
    return response.json()["remaining"]


# --- settings ------------------------------------------------------------------------


def test_settings_defaults():
    assert settings.SESSION_IDLE_TIMEOUT == 20 * MINUTE
    assert settings.SESSION_ABSOLUTE_TIMEOUT == 12 * 60 * MINUTE
    assert settings.SESSION_IDLE_WARNING_SECONDS == 2 * MINUTE
    assert settings.SESSION_COOKIE_AGE == settings.SESSION_ABSOLUTE_TIMEOUT
    assert settings.SESSION_SAVE_EVERY_REQUEST is False
    assert settings.SESSION_EXPIRE_AT_BROWSER_CLOSE is True
    middleware = settings.MIDDLEWARE
    ours = middleware.index("pjd_portal.accounts.sessions.SessionTimeoutMiddleware")
    assert ours > middleware.index("django.contrib.auth.middleware.AuthenticationMiddleware")
    # Inside NoStore, so the answers they make themselves get its headers.
    no_store = middleware.index("pjd_portal.lib.middleware.NoStoreMiddleware")
    assert no_store < middleware.index("pjd_portal.lib.middleware.HtmxRedirectMiddleware") < ours


def _settings_in_subprocess(env_overrides):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SESSION_")}
    env.update({"DJANGO_SETTINGS_MODULE": "pjd_portal.settings", "DEBUG": "true", **env_overrides})
    code = (
        "import django, json; django.setup(); from django.conf import settings as s; "
        "print(json.dumps([s.SESSION_IDLE_TIMEOUT, s.SESSION_ABSOLUTE_TIMEOUT, "
        "s.SESSION_IDLE_WARNING_SECONDS, s.SESSION_COOKIE_AGE]))"
    )
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )


def test_timeouts_come_from_the_environment_and_nonsense_is_refused():
    result = _settings_in_subprocess(
        {
            "SESSION_IDLE_TIMEOUT_SECONDS": "600",
            "SESSION_ABSOLUTE_TIMEOUT_SECONDS": "3600",
            "SESSION_IDLE_WARNING_SECONDS": "60",
        }
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [600, 3600, 60, 3600]
    result = _settings_in_subprocess(
        {"SESSION_IDLE_TIMEOUT_SECONDS": "7200", "SESSION_ABSOLUTE_TIMEOUT_SECONDS": "3600"}
    )
    assert result.returncode != 0 and "SESSION_ABSOLUTE_TIMEOUT_SECONDS" in result.stderr
    result = _settings_in_subprocess({"SESSION_IDLE_WARNING_SECONDS": "1200"})
    assert result.returncode != 0 and "SESSION_IDLE_WARNING_SECONDS" in result.stderr


# --- stamps at login -------------------------------------------------------------------


def test_login_stamps_login_and_activity_time(gp):
    session = gp.session
    start = int(START.timestamp())
    assert session[SESSION_LOGIN_AT_KEY] == start
    assert session[SESSION_ACTIVITY_AT_KEY] == start


def test_a_new_login_stamps_anew(clock, gp, world):
    wait(clock, minutes=30)
    login(gp, world.fastlege, world.gp_office)
    later = int(START.timestamp()) + 30 * MINUTE
    assert gp.session[SESSION_LOGIN_AT_KEY] == later
    assert gp.get("/").status_code == 200


# --- idle timeout ----------------------------------------------------------------------


def test_idle_session_is_alive_after_19_minutes(clock, gp):
    wait(clock, minutes=19, seconds=59)
    response = gp.get("/")
    assert response.status_code == 200
    assert "Kari Fastlege" in response.content.decode()
    assert is_logged_in(gp)
    assert not expiry_events()


def test_idle_session_ends_after_20_minutes_with_an_audit_event(clock, gp, world):
    wait(clock, minutes=20)
    response = gp.get("/")
    event = assert_expired(response, gp, "idle")
    assert event.outcome == "denied"
    assert event.actor_user_id == world.fastlege.pk
    assert event.actor_hpr_number == "910000011"
    assert event.organisation_orgnr == world.gp_office.orgnr
    assert event.details == {"background": False, "idle_seconds": 20 * MINUTE, "session_seconds": 20 * MINUTE}
    assert event.request_id
    # Logged out for good: the front page is the login page again.
    page = gp.get("/").content.decode()
    assert 'data-testid="login"' in page and "Kari Fastlege" not in page


def test_an_expired_session_does_not_reach_the_view(clock, gp, world):
    wait(clock, minutes=25)
    response = gp.post("/pasient/sok/", {"national_id": world.patient.national_id})
    assert_expired(response, gp, "idle")
    assert not AccessEvent.objects.filter(event_type=kinds.PATIENT_LOOKUP.name).exists()


def test_activity_pushes_the_idle_limit_on(clock, gp):
    for _ in range(6):  # 6 × 15 minutes: well past 20 minutes since login
        wait(clock, minutes=15)
        assert gp.get("/").status_code == 200
    assert remaining(gp) == 20 * MINUTE
    wait(clock, minutes=19)
    assert gp.get("/").status_code == 200
    wait(clock, minutes=20)
    assert_expired(gp.get("/"), gp, "idle")


def test_background_requests_do_not_count_as_activity(clock, gp):
    wait(clock, minutes=10)
    assert gp.get("/", headers=BACKGROUND).status_code == 200
    wait(clock, minutes=5)
    assert remaining(gp) == 5 * MINUTE  # the status request itself is background too
    # The status endpoint never counts, even without the header.
    assert gp.get(STATUS_URL, headers=JSON).json()["remaining"] == 5 * MINUTE
    wait(clock, minutes=5)
    assert_expired(gp.get("/"), gp, "idle")


def test_background_requests_are_still_checked_for_expiry(clock, gp):
    wait(clock, minutes=20)
    event = assert_expired(gp.get("/", headers=BACKGROUND), gp, "idle")
    assert event.details["background"] is True


def test_session_without_stamps_counts_as_expired(gp):
    session = gp.session
    del session[SESSION_LOGIN_AT_KEY]
    del session[SESSION_ACTIVITY_AT_KEY]
    session.save()
    event = assert_expired(gp.get("/"), gp, "no_timestamps")
    assert event.details == {"background": False}


def test_session_ends_even_when_the_expiry_event_cannot_be_written(clock, gp, monkeypatch):
    from pjd_portal.accounts import sessions
    from pjd_portal.auditlog.services import AuditWriteFailed

    def broken(*args, **kwargs):
        raise AuditWriteFailed("OperationalError")

    monkeypatch.setattr(sessions, "record_event", broken)
    wait(clock, minutes=20)
    response = gp.get("/")
    assert response.status_code == 302 and response["Location"] == EXPIRED_URL
    assert not is_logged_in(gp)


# --- absolute timeout ----------------------------------------------------------------


def test_absolute_limit_ends_even_an_active_session_after_12_hours(clock, gp):
    for _ in range(12 * 4 - 1):  # a request every 15 minutes until 11 h 45
        wait(clock, minutes=15)
        assert gp.get("/").status_code == 200
    assert remaining(gp) == 15 * MINUTE  # the absolute limit is now the nearer one
    wait(clock, minutes=14, seconds=59)
    assert gp.get("/").status_code == 200
    wait(clock, seconds=1)
    event = assert_expired(gp.get("/"), gp, "absolute")
    assert event.details["session_seconds"] == 12 * 60 * MINUTE


# --- htmx ----------------------------------------------------------------------------


def test_expired_htmx_request_gets_hx_redirect_and_no_page(clock, gp, world):
    add_document(world)
    handle = lookup_and_attest(gp)
    assert gp.get(f"/pasient/{handle}/", headers=HTMX).status_code == 200
    lists = AccessEvent.objects.filter(event_type=kinds.DOCUMENT_LIST.name).count()
    wait(clock, minutes=21)
    response = gp.get(f"/pasient/{handle}/", {"sort": "date"}, headers=HTMX)
    assert response.status_code == 200
    assert response["HX-Redirect"] == EXPIRED_URL
    assert "Location" not in response
    assert response.content == b""
    assert response["Cache-Control"] == "no-store"
    assert "HX-Request" in response["Vary"]
    assert not is_logged_in(gp)
    [event] = expiry_events()
    assert event.reason_code == "idle"
    assert AccessEvent.objects.filter(event_type=kinds.DOCUMENT_LIST.name).count() == lists


def test_redirect_from_a_list_fragment_becomes_hx_redirect(gp, world):
    add_document(world)
    handle = lookup_and_attest(gp)
    AccessAttest.objects.update(expires_at=timezone.now())  # the basis has run out
    response = gp.get(f"/pasient/{handle}/", {"page": "2"}, headers=HTMX)
    assert response.status_code == 200
    assert response["HX-Redirect"] == f"/pasient/{handle}/grunnlag/"
    assert "Location" not in response and response.content == b""
    assert response["Cache-Control"] == "no-store"
    # Without htmx it stays an ordinary redirect.
    response = gp.get(f"/pasient/{handle}/")
    assert response.status_code == 302 and response["Location"] == f"/pasient/{handle}/grunnlag/"


def test_htmx_request_without_session_never_gets_the_login_page(world, client):
    response = client.get(f"/pasient/{uuid.uuid4()}/", headers=HTMX)
    assert response.status_code == 200
    assert response["HX-Redirect"].startswith("/?next=")
    assert response.content == b""


def test_htmx_redirect_keeps_cookies(clock, gp):
    wait(clock, minutes=20)
    response = gp.get("/", headers=HTMX)
    assert response["HX-Redirect"] == EXPIRED_URL
    # The emptied session's cookie is deleted on the converted answer too.
    cookie = response.cookies[settings.SESSION_COOKIE_NAME]
    assert cookie.value == "" and cookie["max-age"] == 0


# --- the session-expired page ----------------------------------------------------------


def test_expired_page_is_public_and_offers_login(client, db):
    response = client.get(EXPIRED_URL)
    assert response.status_code == 200
    page = response.content.decode()
    assert "Du er logget ut" in page
    assert "20 minutter" in page and "12 timer" in page
    assert re.search(r'<a class="ds-button" href="/oidc/authenticate/\?reauth=1" data-testid="login">', page)
    assert "Logg inn med HelseID" in page
    assert "session-warning" not in page and "session.js" not in page


def test_expired_page_sends_a_live_session_home(gp):
    response = gp.get(EXPIRED_URL)
    assert response.status_code == 302 and response["Location"] == "/"
    assert is_logged_in(gp)


def test_expired_session_visiting_the_expired_page_is_logged_out_there(clock, gp):
    wait(clock, minutes=20)
    response = gp.get(EXPIRED_URL)
    assert response.status_code == 200
    assert "Du er logget ut" in response.content.decode()
    assert not is_logged_in(gp)
    assert [e.reason_code for e in expiry_events()] == ["idle"]


# --- status and keep-alive endpoints ---------------------------------------------------


def test_status_for_a_logged_in_user(clock, gp):
    wait(clock, minutes=5)
    response = gp.get(STATUS_URL, headers={**BACKGROUND, **JSON})
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response["Cache-Control"] == "no-store"
    assert response.json() == {
        "authenticated": True,
        "remaining": 15 * MINUTE,
        "idle_remaining": 15 * MINUTE,
        "absolute_remaining": 12 * 60 * MINUTE - 5 * MINUTE,
        "limit": "idle",
        "warning": 2 * MINUTE,
        "expired_url": EXPIRED_URL,
    }


def test_status_for_an_anonymous_user_is_401_json(client, db):
    response = client.get(STATUS_URL, headers={**BACKGROUND, **JSON})
    assert response.status_code == 401
    assert response.json() == {"authenticated": False, "expired_url": EXPIRED_URL}
    assert client.post(STATUS_URL).status_code == 405


def test_status_when_the_session_has_just_expired_is_401_json(clock, gp):
    wait(clock, minutes=20)
    response = gp.get(STATUS_URL, headers={**BACKGROUND, **JSON})
    assert response.status_code == 401
    assert response.json()["expired_url"] == EXPIRED_URL
    [event] = expiry_events()
    assert event.reason_code == "idle" and event.details["background"] is True
    assert not is_logged_in(gp)


def test_keepalive_counts_as_activity(clock, gp):
    wait(clock, minutes=18)
    assert remaining(gp) == 2 * MINUTE
    response = gp.post(KEEPALIVE_URL, headers=BACKGROUND)  # counts even when sent in the background
    assert response.status_code == 204
    assert response.content == b""
    assert remaining(gp) == 20 * MINUTE
    wait(clock, minutes=19)
    assert gp.get("/").status_code == 200


def test_keepalive_for_an_anonymous_user_is_401_and_get_is_refused(gp):
    response = Client().post(KEEPALIVE_URL)
    assert response.status_code == 401
    assert response.json()["authenticated"] is False
    assert gp.get(KEEPALIVE_URL).status_code == 405


def test_keepalive_after_expiry_does_not_revive_the_session(clock, gp):
    wait(clock, minutes=20)
    response = gp.post(KEEPALIVE_URL, headers=JSON)
    assert response.status_code == 401
    assert not is_logged_in(gp)


def test_keepalive_needs_the_csrf_token(clock, world):
    browser = login(Client(enforce_csrf_checks=True), world.fastlege, world.gp_office)
    page = browser.get("/").content.decode()
    token = matched(r'"X-CSRFToken": "([^"]+)"', page)  # as session.js reads it
    wait(clock, minutes=10)
    response = browser.post(KEEPALIVE_URL)
    assert response.status_code == 403
    assert remaining(browser) == 10 * MINUTE  # a refused POST is not activity
    response = browser.post(KEEPALIVE_URL, headers={"X-CSRFToken": token})
    assert response.status_code == 204
    assert remaining(browser) == 20 * MINUTE


# --- the warning dialog ----------------------------------------------------------------


def test_warning_dialog_and_script_for_logged_in_users(clock, gp):
    wait(clock, minutes=3)
    page = gp.get("/").content.decode()
    dialog = matched(r'<dialog id="session-warning"[^>]*>', page, 0, re.S)
    assert 'class="ds-dialog"' in dialog
    assert 'data-idle-seconds="1200"' in dialog
    assert 'data-warning-seconds="120"' in dialog
    assert 'data-idle-remaining="1200"' in dialog  # this request was activity
    assert f'data-absolute-remaining="{12 * 3600 - 3 * 60}"' in dialog
    assert f'data-status-url="{STATUS_URL}"' in dialog
    assert f'data-keepalive-url="{KEEPALIVE_URL}"' in dialog
    assert f'data-expired-url="{EXPIRED_URL}"' in dialog
    assert "Du blir snart logget ut" in page
    assert re.search(r"<button[^>]*data-session-continue[^>]*>Fortsett</button>", page)
    assert '<script src="/static/js/session.js" defer></script>' in page
    # CSP: no inline script anywhere on the page.
    for attributes, body in re.findall(r"<script\b([^>]*)>(.*?)</script>", page, re.S):
        assert "src=" in attributes and not body.strip()


def test_no_warning_for_anonymous_users(client, db):
    page = client.get("/").content.decode()
    assert "session-warning" not in page and "session.js" not in page


def test_session_script_is_csp_safe_and_uses_the_endpoints_as_specified():
    script = (ROOT / "static" / "js" / "session.js").read_text()
    for forbidden in ("eval(", "new Function", "innerHTML", 'setTimeout("', 'setInterval("'):
        assert forbidden not in script, forbidden
    assert '"X-PJD-Background": "1"' in script  # the status request is a background request
    assert '"X-CSRFToken": csrfToken()' in script  # the keep-alive POST carries the token
    assert "showModal" in script
    assert 'method: "POST"' in script


def test_log_out_after_the_timeout_still_ends_the_helseid_session(clock, gp, world):
    session = gp.session
    session["oidc_id_token"] = "the-id-token"
    session.save()
    wait(clock, minutes=21)
    response = gp.post("/logg-ut/")
    provider_logout_form(response, "the-id-token")
    assert not is_logged_in(gp)
    assert [e.reason_code for e in expiry_events()] == ["idle"]
