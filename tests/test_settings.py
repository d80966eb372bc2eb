"""The portal refuses to start in production on development defaults."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
STRONG_SECRET = "x" * 30 + "production-secret-for-tests-only-" + "y" * 10
ANCHOR_KEY = "anchor-key-for-tests-only-Qm9vdGgsIG5vdCBTRUNSRVRfS0VZ-7f3a9c"
# What a production start needs, all of it synthetic: each refusal below takes one away.
PRODUCTION = {
    "DEBUG": "false",
    "SECRET_KEY": STRONG_SECRET,
    "PJD_AUDIT_ANCHOR_KEY": ANCHOR_KEY,
    "OIDC_ISSUER": "https://helseid-sts.test.example.org",
    "PJD_CACHE_URL": "redis://127.0.0.1:6379/5",
}
_OURS = ("PJD_", "DEBUG", "SECRET_KEY", "OIDC_")


def run_check(env_overrides: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_OURS)}
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
    result = run_check({**PRODUCTION, "PJD_TEST_IDENTITIES": "true"})
    assert result.returncode != 0
    assert "Test identities" in result.stderr


def test_refuses_malformed_boolean():
    result = run_check({"DEBUG": "maybe"})
    assert result.returncode != 0
    assert "DEBUG must be a boolean" in result.stderr


def test_production_settings_pass_check_deploy_without_warnings():
    result = run_check(PRODUCTION, "--deploy", "--fail-level", "WARNING")
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
    env = {k: v for k, v in os.environ.items() if not k.startswith(_OURS)}
    env.update(
        {"DJANGO_SETTINGS_MODULE": "pjd_portal.settings", "ALLOWED_HOSTS": "portal.example.org", **PRODUCTION}
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
    plain = {**PRODUCTION, "PJD_PATIENT_NOTICE_KEY": key}
    http = run_check({**plain, "PJD_PATIENT_NOTICE_URL": "http://citizen.example.org/notices"})
    assert http.returncode != 0 and "must be https://" in http.stderr
    https = run_check({**plain, "PJD_PATIENT_NOTICE_URL": "https://citizen.example.org/notices"})
    assert https.returncode == 0, https.stderr
    attempts = run_check({"DEBUG": "true", "PJD_PATIENT_NOTICE_MAX_ATTEMPTS": "0"})
    assert attempts.returncode != 0 and "PJD_PATIENT_NOTICE_MAX_ATTEMPTS" in attempts.stderr


# --- Unsafe production settings: each refused with one line, by every way in -------------

REFUSALS = {
    "low-entropy secret (one letter)": ({"SECRET_KEY": "a" * 50}, "SECRET_KEY must be set"),
    "low-entropy secret (a pattern)": ({"SECRET_KEY": "abcdefghij" * 5}, "about 0 bits"),
    "low-entropy secret (two letters)": ({"SECRET_KEY": "ab" * 40}, "SECRET_KEY must be set"),
    "few distinct characters": ({"SECRET_KEY": "".join("abcd"[i * 7 % 4] for i in range(60))}, "bits"),
    "short secret": ({"SECRET_KEY": "Zx9!" * 3 + "q7Lm"}, "50+ characters"),
    "empty anchor key": ({"PJD_AUDIT_ANCHOR_KEY": ""}, "PJD_AUDIT_ANCHOR_KEY must be set"),
    "anchor key = SECRET_KEY": ({"PJD_AUDIT_ANCHOR_KEY": STRONG_SECRET}, "a key of its own"),
    "weak anchor key": ({"PJD_AUDIT_ANCHOR_KEY": "k" * 64}, "a key of its own"),
    "http issuer": ({"OIDC_ISSUER": "http://helseid.example.org"}, "OIDC_ISSUER must be an https:// URL"),
    "http token endpoint": (
        {"OIDC_TOKEN_ENDPOINT": "http://helseid.example.org/token"},
        "OIDC_TOKEN_ENDPOINT must be an https:// URL",
    ),
    "loopback http issuer outside a test environment": (
        {"OIDC_ISSUER": "http://127.0.0.1:9000"},
        "OIDC_ISSUER must be an https:// URL",
    ),
    "per-process cache": ({"PJD_CACHE_URL": ""}, "PJD_CACHE_URL must name the shared Redis"),
    "test identities": ({"PJD_TEST_IDENTITIES": "true"}, "Test identities"),
    "synthetic ids": ({"PJD_ALLOW_SYNTHETIC_IDS": "true"}, "synthetic national ids"),
    "the test EPJ client": ({"PJD_EPJ_CLIENTS": '["pjd-test-epj"]'}, "Test identities"),
}


def _one_refusal_line(result: subprocess.CompletedProcess[str], expected: str) -> None:
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr  # one line, no traceback
    assert lines[0].startswith("pjd-portal refuses to start: ") and expected in lines[0], lines[0]


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_check_deploy_refuses_unsafe_production_settings_with_one_line(case):
    overrides, expected = REFUSALS[case]
    _one_refusal_line(run_check({**PRODUCTION, **overrides}, "--deploy"), expected)


@pytest.mark.parametrize(
    "case", ["low-entropy secret (a pattern)", "empty anchor key", "http issuer", "per-process cache"]
)
def test_the_server_refuses_them_too(case):
    """The WSGI module (what granian loads in every worker) exits 1 with the same line."""
    overrides, expected = REFUSALS[case]
    env = {k: v for k, v in os.environ.items() if not k.startswith(_OURS)}
    env.update(
        {"DJANGO_SETTINGS_MODULE": "pjd_portal.settings", "ALLOWED_HOSTS": "x", **PRODUCTION, **overrides}
    )
    result = subprocess.run(
        [sys.executable, "-c", "import pjd_portal.wsgi"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    _one_refusal_line(result, expected)


def test_a_test_environment_may_use_the_dev_provider_on_the_loopback():
    """The benchmark's way (bench/run.py): DEBUG off, PJD_TEST_ENVIRONMENT=true, synthetic
    ids and the dev identity provider over http on 127.0.0.1; never another http host."""
    test_env = {**PRODUCTION, "PJD_TEST_ENVIRONMENT": "true", "PJD_ALLOW_SYNTHETIC_IDS": "true"}
    ok = run_check({**test_env, "OIDC_ISSUER": "http://127.0.0.1:9000"})
    assert ok.returncode == 0, ok.stderr
    _one_refusal_line(run_check({**test_env, "OIDC_ISSUER": "http://idp.example.org"}), "OIDC_ISSUER")


@pytest.mark.parametrize(
    ("secret", "strong"),
    [
        ("a" * 50, False),
        ("ab" * 25, False),
        ("abcdefghij" * 5, False),
        ("abcdefghijklmnopqrstuvwxy" * 2, False),
        ("0123456789" * 6, False),
        (STRONG_SECRET, True),
        ("9x#ml)0b@nlrcd6^ybio1hgsa8t2l!mzje)+-fx1b(4^rq-!6b", True),  # get_random_secret_key()'s kind
        ("cdad76c038302e9b1aa866958dab80f5e2b1c4d7a9083f6e1b2c5d8a7f3e9c01", True),  # 32 random bytes, hex
    ],
)
def test_the_entropy_estimate(secret, strong):
    from pjd_portal.lib import entropy

    assert entropy.strong_enough(secret) is strong, entropy.estimated_bits(secret)
