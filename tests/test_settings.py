"""The portal refuses to start in production on development defaults."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
STRONG_SECRET = "x" * 30 + "production-secret-for-tests-only-" + "y" * 10


def run_check(env_overrides: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PJD_", "DEBUG", "SECRET_KEY"))}
    env.update({"DJANGO_SETTINGS_MODULE": "pjd_portal.settings", "ALLOWED_HOSTS": "portal.example.org"})
    env.update(env_overrides)
    return subprocess.run(
        [sys.executable, "manage.py", "check", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_refuses_default_secret_with_debug_off():
    result = run_check({"DEBUG": "false"})
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


def test_refuses_test_identities_with_debug_off():
    result = run_check({"DEBUG": "false", "SECRET_KEY": STRONG_SECRET, "PJD_TEST_IDENTITIES": "true"})
    assert result.returncode != 0
    assert "Test identities" in result.stderr


def test_refuses_malformed_boolean():
    result = run_check({"DEBUG": "maybe"})
    assert result.returncode != 0
    assert "DEBUG must be a boolean" in result.stderr


def test_production_settings_pass_check_deploy_without_warnings():
    result = run_check({"DEBUG": "false", "SECRET_KEY": STRONG_SECRET}, "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


def test_logout_redirect_to_the_provider_is_allowed_by_form_action(client, settings):
    """The logout page's form POSTs to HelseID's end-session endpoint; without its origin
    in form-action the browser silently refuses to log out (found by the browser test)."""
    csp = client.get("/")["Content-Security-Policy"]
    form_action = next(d for d in csp.split(";") if d.strip().startswith("form-action")).split()
    assert "'self'" in form_action
    assert settings.OIDC_ISSUER in form_action


@pytest.mark.parametrize(("minutes", "ok"), [("60", True), ("61", False), ("0", False), ("1440", False)])
def test_an_access_attest_lives_at_most_60_minutes(minutes, ok):
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "pjd_portal.settings", "DEBUG": "true"}
    env["PJD_ACCESS_ATTEST_MINUTES"] = minutes
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=Path(__file__).resolve().parent.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (result.returncode == 0) is ok, result.stderr[-500:]
    if not ok:
        assert "PJD_ACCESS_ATTEST_MINUTES" in result.stderr


def test_production_cookies_are_host_prefixed_secure_httponly_and_samesite():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PJD_", "DEBUG", "SECRET_KEY"))}
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "pjd_portal.settings",
            "ALLOWED_HOSTS": "portal.example.org",
            "DEBUG": "false",
            "SECRET_KEY": STRONG_SECRET,
        }
    )
    code = (
        "import django, json; django.setup(); from django.conf import settings as s; "
        "print(json.dumps([s.SESSION_COOKIE_NAME, s.SESSION_COOKIE_SECURE, s.SESSION_COOKIE_HTTPONLY, "
        "s.SESSION_COOKIE_SAMESITE, s.CSRF_COOKIE_NAME, s.CSRF_COOKIE_SECURE, s.CSRF_COOKIE_HTTPONLY, "
        "s.CSRF_COOKIE_SAMESITE]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr[-800:]
    import json

    (
        session_name,
        session_secure,
        session_httponly,
        session_samesite,
        csrf_name,
        csrf_secure,
        csrf_httponly,
        csrf_samesite,
    ) = json.loads(result.stdout)
    assert session_name.startswith("__Host-") and csrf_name.startswith("__Host-")
    assert session_secure and session_httponly and session_samesite == "Lax"
    assert csrf_secure and csrf_httponly and csrf_samesite == "Strict"


def test_a_notice_url_needs_its_signing_key_and_https_in_production():
    key = "k" * 40
    no_key = run_check({"DEBUG": "true", "PJD_PATIENT_NOTICE_URL": "http://127.0.0.1:8104/notices"})
    assert no_key.returncode != 0 and "PJD_PATIENT_NOTICE_KEY" in no_key.stderr
    plain = {"DEBUG": "false", "SECRET_KEY": STRONG_SECRET, "PJD_PATIENT_NOTICE_KEY": key}
    http = run_check({**plain, "PJD_PATIENT_NOTICE_URL": "http://citizen.example.org/notices"})
    assert http.returncode != 0 and "must be https://" in http.stderr
    https = run_check({**plain, "PJD_PATIENT_NOTICE_URL": "https://citizen.example.org/notices"})
    assert https.returncode == 0, https.stderr
    attempts = run_check({"DEBUG": "true", "PJD_PATIENT_NOTICE_MAX_ATTEMPTS": "0"})
    assert attempts.returncode != 0 and "PJD_PATIENT_NOTICE_MAX_ATTEMPTS" in attempts.stderr
