"""The portal's one settings file: everything that varies comes from the environment.

The helpers below fail loudly on malformed values rather than guessing, and the checks
at the bottom refuse a production start (DEBUG off) on development defaults.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from urllib.parse import urlsplit

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from django.utils.translation import gettext_lazy as _

from pjd_portal.lib import entropy, logs

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("PJD_VAR_DIR", BASE_DIR / "var"))

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def envbool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (true/false), got {raw!r}")


def envint(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be an integer, got {raw!r}") from exc


def envfloat(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be a number, got {raw!r}") from exc


def envlist(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


DEBUG = envbool("DEBUG", False)

_DEV_SECRET = "dev-only-insecure-secret-key-change-me-0123456789abcdef"  # noqa: S105 - refused below when DEBUG is off
SECRET_KEY = os.environ.get("SECRET_KEY", _DEV_SECRET)

# Synthetic national ids (Tenor style, month + 80) and the dev identity provider's
# test users: on for the demo and tests, refused in production (see the checks below).
ALLOW_SYNTHETIC_IDS = envbool("PJD_ALLOW_SYNTHETIC_IDS", DEBUG)
TEST_IDENTITIES_ENABLED = envbool("PJD_TEST_IDENTITIES", DEBUG)

ALLOWED_HOSTS = envlist("ALLOWED_HOSTS", ["127.0.0.1", "localhost"] if DEBUG else [])

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_htmx",
    "mozilla_django_oidc",
    "guardian",
    "pjd_portal.accounts",
    "pjd_portal.patients",
    "pjd_portal.documents",
    "pjd_portal.access",
    "pjd_portal.auditlog",
    "pjd_portal.logreading",
    "pjd_portal.review",
    "pjd_portal.notices",
    "django_tasks",
    "django_tasks_db",
    "django_ratelimit",
]

# The Server-Timing header on every answer (lib/middleware.py): on in development and tests,
# off in production unless asked for (it tells a client how long the server worked).
SERVER_TIMING = envbool("PJD_SERVER_TIMING", DEBUG)

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Static files answered here, before sessions or the database are touched: compressed
    # (brotli, gzip) and, under their hashed names, cacheable for a year (STORAGES below).
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # Outside everything that writes the page, so it compresses what they made.
    "pjd_portal.lib.middleware.CompressedPagesMiddleware",
    "pjd_portal.lib.middleware.RequestIdMiddleware",
    # Outside the 503 pages below, so its line has the status the client got.
    "pjd_portal.accounts.request_log.RequestLogMiddleware",
    "pjd_portal.lib.middleware.DatabaseUnavailableMiddleware",
    # Django's, answering a session it cannot save where every process reads it with the
    # 503 page (accounts/session_store.py).
    "pjd_portal.accounts.session_store.SessionMiddleware",
    "pjd_portal.lib.middleware.LanguageMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "pjd_portal.lib.middleware.NoStoreMiddleware",
    # Inside NoStore, so the page it renders gets the same headers.
    "pjd_portal.lib.middleware.MethodNotAllowedPageMiddleware",
    # Inside NoStore, so their own answers get its headers; after authentication.
    "pjd_portal.lib.middleware.HtmxRedirectMiddleware",
    "pjd_portal.accounts.sessions.SessionTimeoutMiddleware",
]

ROOT_URLCONF = "pjd_portal.urls"
WSGI_APPLICATION = "pjd_portal.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "django.template.context_processors.i18n",
                "pjd_portal.accounts.context.portal_context",
                "pjd_portal.forvaltning.context.forvaltning_links",
                "pjd_portal.lib.replica.template_context",
            ],
        },
    },
]

# DATABASE_URL: a SQLite file in the project folder by default (the one-command demo);
# postgres://… for production and CI.
DATABASE_URL = os.environ.get("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}")
DATABASES = {
    "default": dj_database_url.parse(
        DATABASE_URL,
        conn_max_age=envint("DB_CONN_MAX_AGE", 60),
        conn_health_checks=True,
    )
}
ON_POSTGRESQL = DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"
if ON_POSTGRESQL:
    # Fail fast when the database is down: a 503 page quickly rather than a hung worker.
    DATABASES["default"].setdefault("OPTIONS", {})["connect_timeout"] = envint("DB_CONNECT_TIMEOUT", 2)
    # The audit row must survive a crash: never let a role default turn this off.
    DATABASES["default"]["OPTIONS"]["options"] = "-c synchronous_commit=on"
    # Django's backend, checking a persistent connection only after it has rested
    # (lib/postgresql/base.py): no SELECT 1 before every request.
    DATABASES["default"]["ENGINE"] = "pjd_portal.lib.postgresql"
# DATABASE_REPLICA_URL: a streaming replica of the primary (postgres://…), for the pages that
# only read the log: the log review, the review queue's pages, the patient's log and the
# citizen API (lib/replica.py; docs/operations.md, "The read replica"). Unset: everything
# reads from the primary. Whatever is set, writes and the clinician's path use the primary.
DATABASE_REPLICA_URL = os.environ.get("DATABASE_REPLICA_URL", "").strip()
REPLICA_DATABASE = "replica" if DATABASE_REPLICA_URL else ""
# Further behind than this, the replica is not used: the page reads from the primary and says so.
REPLICA_MAX_LAG_SECONDS = envfloat("PJD_REPLICA_MAX_LAG_SECONDS", 30.0)
# After the replica failed, a process reads from the primary this long before trying again.
REPLICA_RETRY_SECONDS = envfloat("PJD_REPLICA_RETRY_SECONDS", 5.0)
if REPLICA_MAX_LAG_SECONDS < 0 or REPLICA_RETRY_SECONDS < 0:
    raise ImproperlyConfigured(
        "PJD_REPLICA_MAX_LAG_SECONDS and PJD_REPLICA_RETRY_SECONDS must not be negative."
    )
if DATABASE_REPLICA_URL:
    _replica = dj_database_url.parse(
        DATABASE_REPLICA_URL, conn_max_age=envint("DB_CONN_MAX_AGE", 60), conn_health_checks=True
    )
    if not ON_POSTGRESQL or _replica["ENGINE"] != "django.db.backends.postgresql":
        raise ImproperlyConfigured("DATABASE_REPLICA_URL needs PostgreSQL, for it and for DATABASE_URL.")
    _replica["ENGINE"] = "pjd_portal.lib.postgresql"
    _replica.setdefault("OPTIONS", {}).update(
        # A replica that does not answer costs a page this long, then the page reads from the
        # primary (and, for PJD_REPLICA_RETRY_SECONDS, does not try it again).
        connect_timeout=envint("PJD_REPLICA_CONNECT_TIMEOUT", 1),
        # A hot standby refuses writes anyway; this also refuses them from a URL that names a
        # primary by mistake.
        options="-c default_transaction_read_only=on",
    )
    # Under test the replica is the primary's test database (tests/test_replica*.py add
    # the real replica's connection themselves).
    _replica["TEST"] = {"MIRROR": "default"}
    DATABASES["replica"] = _replica
DATABASE_ROUTERS = ["pjd_portal.lib.replica.ReplicaRouter"]
DB_HEALTH_CHECK_AFTER_IDLE_SECONDS = envfloat("DB_HEALTH_CHECK_AFTER_IDLE_SECONDS", 5.0)
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"].setdefault("OPTIONS", {})["timeout"] = 20

# The access log's group writer (audit/group_commit.py): events written outside a
# transaction share commits, each request still waiting for its own. On by default on
# PostgreSQL; SQLite (the one-user demo) writes each event in its own transaction.
# An event that does not fit its registry entry (auditlog/events.py) raises where the code
# is developed and tested; in production it is written and the fault logged.
AUDIT_STRICT_EVENTS = envbool("PJD_AUDIT_STRICT_EVENTS", DEBUG)
AUDIT_GROUP_COMMIT = envbool("PJD_AUDIT_GROUP_COMMIT", ON_POSTGRESQL)
AUDIT_BATCH_MAX = envint("PJD_AUDIT_BATCH_MAX", 256)  # events in one commit, at most
AUDIT_WRITE_TIMEOUT = envfloat("PJD_AUDIT_WRITE_TIMEOUT_SECONDS", 5.0)  # a request waits this long
AUDIT_LOCK_TIMEOUT_MS = envint("PJD_AUDIT_LOCK_TIMEOUT_MS", 2000)  # for a chain head held elsewhere
AUDIT_STATEMENT_TIMEOUT_MS = envint("PJD_AUDIT_STATEMENT_TIMEOUT_MS", 4000)
AUDIT_WRITER_IDLE_CLOSE_SECONDS = envfloat("PJD_AUDIT_WRITER_IDLE_CLOSE_SECONDS", 30.0)
# The key that signs anchors of the log's chain heads (audit/anchors.py). Production sets
# its own, kept away from the database host; the demo signs with its development secret.
AUDIT_ANCHOR_KEY = os.environ.get("PJD_AUDIT_ANCHOR_KEY", "") or (SECRET_KEY if DEBUG else "")
if AUDIT_BATCH_MAX < 1 or AUDIT_WRITE_TIMEOUT <= 0:
    raise ImproperlyConfigured("PJD_AUDIT_BATCH_MAX must be at least 1 and the write timeout positive.")

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "accounts.User"

AUTHENTICATION_BACKENDS = [
    "pjd_portal.login.oidc.PortalOIDCBackend",
    "guardian.backends.ObjectPermissionBackend",
]
GUARDIAN_ACCEPT_GLOBAL_PERMS = False
ANONYMOUS_USER_NAME = None

LANGUAGE_CODE = "nb"
LANGUAGES = [("nb", _("Norwegian Bokmål")), ("en", _("English"))]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = "Europe/Oslo"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "staticfiles"
# Production serves what `manage.py collectstatic` wrote into STATIC_ROOT: each file under a
# content-hashed name beside its .br and .gz, so WhiteNoise sends it compressed and with a
# year's cache lifetime (a change is a new name). collectstatic must run before the portal
# serves (docs/operations.md); without it a page fails on its first {% static %}. DEBUG and
# the tests keep Django's plain storage, so that neither needs collectstatic: the same
# files, under their own names, from STATICFILES_DIRS and the apps.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}
# With DEBUG in the environment (make run, the tests — pytest-django turns settings.DEBUG off
# at run time, not these) WhiteNoise reads the files where they are, as runserver does: no
# collectstatic, and no warning that STATIC_ROOT does not exist.
WHITENOISE_USE_FINDERS = DEBUG
WHITENOISE_AUTOREFRESH = DEBUG

LOGIN_URL = "/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/logget-ut/"

# --- Sessions and cookies ---------------------------------------------------------
SECURE_COOKIES = envbool("SECURE_COOKIES", not DEBUG)
# Idle and absolute timeouts are enforced by accounts.sessions.SessionTimeoutMiddleware;
# the warning dialog (static/js/session.js) appears SESSION_IDLE_WARNING_SECONDS before.
SESSION_IDLE_TIMEOUT = envint("SESSION_IDLE_TIMEOUT_SECONDS", 20 * 60)
SESSION_ABSOLUTE_TIMEOUT = envint("SESSION_ABSOLUTE_TIMEOUT_SECONDS", 12 * 60 * 60)
SESSION_IDLE_WARNING_SECONDS = envint("SESSION_IDLE_WARNING_SECONDS", 2 * 60)
if not 0 < SESSION_IDLE_TIMEOUT <= SESSION_ABSOLUTE_TIMEOUT:
    raise ImproperlyConfigured("Need 0 < SESSION_IDLE_TIMEOUT_SECONDS <= SESSION_ABSOLUTE_TIMEOUT_SECONDS.")
if not 0 <= SESSION_IDLE_WARNING_SECONDS < SESSION_IDLE_TIMEOUT:
    raise ImproperlyConfigured("Need 0 <= SESSION_IDLE_WARNING_SECONDS < SESSION_IDLE_TIMEOUT_SECONDS.")
SESSION_COOKIE_AGE = SESSION_ABSOLUTE_TIMEOUT  # the stored session's lifetime
SESSION_SAVE_EVERY_REQUEST = False  # activity is a session write by the middleware
# The activity stamp moves at most once this often, so most requests write nothing: the
# session ends up to this much before 20 minutes of idleness, never after.
SESSION_ACTIVITY_STEP_SECONDS = envint("SESSION_ACTIVITY_STEP_SECONDS", 60)
if not 0 <= SESSION_ACTIVITY_STEP_SECONDS < SESSION_IDLE_TIMEOUT - SESSION_IDLE_WARNING_SECONDS:
    raise ImproperlyConfigured("Need 0 <= SESSION_ACTIVITY_STEP_SECONDS < the idle time before the warning.")
SESSION_EXPIRE_AT_BROWSER_CLOSE = True
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"  # Lax: the OIDC callback is a top-level cross-site GET
SESSION_COOKIE_SECURE = SECURE_COOKIES
CSRF_COOKIE_SECURE = SECURE_COOKIES
CSRF_COOKIE_HTTPONLY = True
CSRF_COOKIE_SAMESITE = "Strict"
if SECURE_COOKIES:
    SESSION_COOKIE_NAME = "__Host-pjd_session"
    CSRF_COOKIE_NAME = "__Host-pjd_csrf"
CSRF_FAILURE_VIEW = "pjd_portal.lib.errors.csrf_failure"

# --- Security headers -------------------------------------------------------------
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SECURE_HSTS_SECONDS = envint("SECURE_HSTS_SECONDS", 0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = envbool("SECURE_HSTS_PRELOAD", True)
SECURE_SSL_REDIRECT = envbool("SECURE_SSL_REDIRECT", not DEBUG)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if envbool("BEHIND_TLS_PROXY", False) else None
# How many proxies of our own stand before the portal: the client address in the access
# log is the one the outermost of them saw (X-Forwarded-For, counted from the right; what a
# client writes further left is not trusted). 0: REMOTE_ADDR is the client.
TRUSTED_PROXY_COUNT = envint("PJD_TRUSTED_PROXIES", 1 if envbool("BEHIND_TLS_PROXY", False) else 0)

CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "frame-ancestors": ["'none'"],
        "form-action": ["'self'"],
    }
}

# --- HelseID (OIDC) ---------------------------------------------------------------
OIDC_ISSUER = os.environ.get("OIDC_ISSUER", "http://127.0.0.1:9000").rstrip("/")
OIDC_OP_AUTHORIZATION_ENDPOINT = os.environ.get("OIDC_AUTH_ENDPOINT", f"{OIDC_ISSUER}/auth")
OIDC_OP_TOKEN_ENDPOINT = os.environ.get("OIDC_TOKEN_ENDPOINT", f"{OIDC_ISSUER}/token")
OIDC_OP_JWKS_ENDPOINT = os.environ.get("OIDC_JWKS_ENDPOINT", f"{OIDC_ISSUER}/jwks")
OIDC_OP_USER_ENDPOINT = os.environ.get("OIDC_USERINFO_ENDPOINT", f"{OIDC_ISSUER}/me")
OIDC_OP_LOGOUT_ENDPOINT = os.environ.get("OIDC_END_SESSION_ENDPOINT", f"{OIDC_ISSUER}/session/end")
# The logout page's form POSTs the id token to the provider's end-session endpoint
# (accounts/provider.py), and form-action also governs redirects after a form's POST:
# allow the provider's origin there.
CONTENT_SECURITY_POLICY["DIRECTIVES"]["form-action"] = [
    "'self'",
    "{0.scheme}://{0.netloc}".format(urlsplit(OIDC_OP_LOGOUT_ENDPOINT)),
]
OIDC_RP_CLIENT_ID = os.environ.get("OIDC_CLIENT_ID", "pjd-portal")
# mozilla-django-oidc insists the setting exists; the portal never sends a client
# secret (it authenticates with private_key_jwt, see accounts/oidc.py).
OIDC_RP_CLIENT_SECRET = None
OIDC_RP_CLIENT_PRIVATE_KEY_FILE = Path(
    os.environ.get("OIDC_CLIENT_PRIVATE_KEY_FILE", VAR_DIR / "oidc_client_key.pem")
)
OIDC_RP_SIGN_ALGO = "RS256"
OIDC_RP_SCOPES = (
    "openid profile helseid://scopes/identity/pid helseid://scopes/identity/security_level "
    "helseid://scopes/identity/assurance_level helseid://scopes/hpr/hpr_number"
)
OIDC_USE_PKCE = True
OIDC_PKCE_CODE_CHALLENGE_METHOD = "S256"
OIDC_USE_NONCE = True
OIDC_STORE_ID_TOKEN = True  # id_token_hint for RP-initiated logout
OIDC_TIMEOUT = envfloat("OIDC_TIMEOUT_SECONDS", 5.0)
# Pushed authorization requests: used when the provider's discovery document advertises
# them (HelseID does), or at a fixed endpoint when OIDC_PAR_ENDPOINT is set.
OIDC_USE_PAR = envbool("OIDC_USE_PAR", True)
OIDC_OP_PAR_ENDPOINT = os.environ.get("OIDC_PAR_ENDPOINT", "")
OIDC_METADATA_CACHE_SECONDS = envint("OIDC_METADATA_CACHE_SECONDS", 3600)
OIDC_JWKS_CACHE_SECONDS = envint("OIDC_JWKS_CACHE_SECONDS", 3600)
OIDC_CLOCK_LEEWAY_SECONDS = envint("OIDC_CLOCK_LEEWAY_SECONDS", 30)
OIDC_CALLBACK_CLASS = "pjd_portal.login.oidc.PortalCallbackView"
OIDC_AUTHENTICATE_CLASS = "pjd_portal.login.oidc.PortalAuthenticateView"
OIDC_CREATE_USER = True
LOGIN_REDIRECT_URL_FAILURE = "/"

# --- Domain settings --------------------------------------------------------------
ACCESS_ATTEST_MINUTES = envint("PJD_ACCESS_ATTEST_MINUTES", 60)
if not 1 <= ACCESS_ATTEST_MINUTES <= 60:
    # The trust framework: an access attest lives at most 60 minutes.
    raise ImproperlyConfigured("PJD_ACCESS_ATTEST_MINUTES must be between 1 and 60.")
DOCUMENT_PAGE_SIZES = [10, 20, 25, 50]
DOCUMENT_DEFAULT_PAGE_SIZE = 20
# Largest document the portal shows (rendering.prepare): a PDF is streamed, XML is read whole.
MAX_PDF_BYTES = envint("PJD_MAX_PDF_BYTES", 25 * 1024 * 1024)
MAX_XML_BYTES = envint("PJD_MAX_XML_BYTES", 5 * 1024 * 1024)
if MAX_PDF_BYTES < 1 or MAX_XML_BYTES < 1:
    raise ImproperlyConfigured("PJD_MAX_PDF_BYTES and PJD_MAX_XML_BYTES must be positive.")
# The cache every instance shares: remote sources' answers for a clinician's list, and the
# claim that one request is asking a source (documents/remote.py); the sources' circuit
# breakers and DPoP nonces (documents/sources/); the rate limits' counts (lib/rate_limits.py).
# PJD_CACHE_URL is a redis:// URL, as production has it. Without it the cache is a table in
# the portal's own database (DatabaseCache; `migrate` makes its table: accounts migration 0011), so
# that even the one-command demo shares its state between processes; slower than Redis, and
# its counters are not atomic (a rate limit may let a few concurrent requests too many by),
# which is why production uses Redis. Never a per-process cache: a breaker opened, a nonce
# learnt or a limit counted in one process must hold in every other.
CACHE_URL = os.environ.get("PJD_CACHE_URL", "")
if CACHE_URL and not CACHE_URL.startswith(("redis://", "rediss://", "unix://")):
    raise ImproperlyConfigured("PJD_CACHE_URL must be a redis://, rediss:// or unix:// URL.")
CACHE_TABLE = "pjd_cache"
CACHES = {
    "default": {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": CACHE_URL,
        "KEY_PREFIX": os.environ.get("PJD_CACHE_KEY_PREFIX", "pjd"),
        # A cache that does not answer must not hold a page: the list then asks its
        # sources in the page's own request (listing.list_page).
        "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.5, "SOCKET_TIMEOUT": 0.5},
    }
    if CACHE_URL
    else {"BACKEND": "django.core.cache.backends.db.DatabaseCache", "LOCATION": CACHE_TABLE}
}
# Caches that hold their values in one process only: refused with DEBUG off (at the end).
PER_PROCESS_CACHES = frozenset(
    {"django.core.cache.backends.locmem.LocMemCache", "django.core.cache.backends.dummy.DummyCache"}
)
# Sessions are read from the shared cache and written through to the database
# (accounts/session_store.py): no database round trip on most requests. The cache must be
# one every process shares (a logout in one process must end the session in the others):
# Redis in production. On the database cache a cached copy would be one more database
# read, not one fewer, so without PJD_CACHE_URL the database alone holds them, except under
# DEBUG (the development server and the tests, where the store itself is what is tested).
SESSION_ENGINE = (
    "pjd_portal.accounts.session_store" if CACHE_URL or DEBUG else "django.contrib.sessions.backends.db"
)
SESSION_CACHE_SECONDS = envint("SESSION_CACHE_SECONDS", 60)
# Remote document sources (IHE MHD). PJD_MHD_SOURCES is JSON: organisation number of the
# source -> {"base_url": "https://.../fhir/R4", "scope": "..."}; sources not named are local.
MHD_SOURCES = json.loads(os.environ.get("PJD_MHD_SOURCES", "") or "{}")
DOCUMENT_SOURCE_SYSTEM = os.environ.get("PJD_SOURCE_SYSTEM", "pjd-portal")
# SMART on FHIR EHR launch (clinic/smart.py). PJD_SMART_EHRS is JSON: the EHR's FHIR base,
# which the EHR sends as `iss`, -> {"name": "DIPS Arena", "client_id": "pjd-portal-smart"},
# optionally "issuer": the authorization server the EHR's smart-configuration must name
# (default OIDC_ISSUER, HelseID). Only these are ever contacted: an `iss` not listed is
# refused before any request, so a launch URL cannot make the portal fetch other URLs.
SMART_EHRS: dict[str, dict[str, str]] = {
    base.rstrip("/"): ehr for base, ehr in json.loads(os.environ.get("PJD_SMART_EHRS", "") or "{}").items()
}
for _base, _ehr in SMART_EHRS.items():
    if not (
        _base.startswith(("https://", "http://"))
        and isinstance(_ehr, dict)
        and isinstance(_ehr.get("client_id"), str)
        and _ehr["client_id"]
        and all(isinstance(v, str) for v in _ehr.values())
    ):
        raise ImproperlyConfigured(
            'PJD_SMART_EHRS must map FHIR base URLs to {"name": ..., "client_id": ...} (strings)'
        )
# Every call to an EHR (discovery, token, keys, the Patient read) has this timeout.
SMART_TIMEOUT = envfloat("PJD_SMART_TIMEOUT_SECONDS", 5.0)
# SMART's scopes and HelseID's pid scope: the ID token must name the clinician, who must be
# the person logged in to the portal.
SMART_SCOPE = os.environ.get(
    "PJD_SMART_SCOPE",
    "launch launch/patient openid fhirUser patient/Patient.read helseid://scopes/identity/pid",
)
DOCUMENT_SOURCE_CONNECT_TIMEOUT = envfloat("PJD_SOURCE_CONNECT_TIMEOUT_SECONDS", 2.0)
DOCUMENT_SOURCE_READ_TIMEOUT = envfloat("PJD_SOURCE_READ_TIMEOUT_SECONDS", 5.0)
DOCUMENT_SOURCE_RETRIES = envint("PJD_SOURCE_RETRIES", 1)  # idempotent reads only
DOCUMENT_SOURCE_SEARCH_BUDGET = envfloat("PJD_SOURCE_SEARCH_BUDGET_SECONDS", 8.0)  # all sources together
DOCUMENT_SOURCE_SEARCH_COUNT = envint("PJD_SOURCE_SEARCH_COUNT", 100)  # _count per page
# Pages are followed until every current document has arrived or this many of the newest
# have; the list then says so ("Viser de 2 000 nyeste dokumentene fra ...").
DOCUMENT_SOURCE_MAX_DOCUMENTS = envint("PJD_SOURCE_MAX_DOCUMENTS", 2000)
# A source's answer is kept this long for the clinician's own list (sorting, filtering and
# paging do not ask the source again); a failure only briefly, so a retry asks again.
DOCUMENT_SOURCE_ANSWER_SECONDS = envint("PJD_SOURCE_ANSWER_SECONDS", 120)
DOCUMENT_SOURCE_FAILURE_SECONDS = envint("PJD_SOURCE_FAILURE_SECONDS", 20)
if (
    min(DOCUMENT_SOURCE_MAX_DOCUMENTS, DOCUMENT_SOURCE_SEARCH_COUNT) < 1
    or min(DOCUMENT_SOURCE_ANSWER_SECONDS, DOCUMENT_SOURCE_FAILURE_SECONDS) < 1
):
    # An answer kept for no time never reaches the list: its fragment would ask again and again.
    raise ImproperlyConfigured(
        "PJD_SOURCE_MAX_DOCUMENTS, PJD_SOURCE_SEARCH_COUNT, PJD_SOURCE_ANSWER_SECONDS and "
        "PJD_SOURCE_FAILURE_SECONDS must be positive."
    )
DOCUMENT_SOURCE_BREAKER_FAILURES = envint("PJD_SOURCE_BREAKER_FAILURES", 3)
DOCUMENT_SOURCE_BREAKER_COOLDOWN = envfloat("PJD_SOURCE_BREAKER_COOLDOWN_SECONDS", 30.0)
# The patient's access log: rows per page, on the printable page and in the API.
PATIENT_LOG_PAGE_SIZE = envint("PJD_PATIENT_LOG_PAGE_SIZE", 50)
# The log review (loggkontroll): rows per page, and the risk signals' thresholds
# (pjd_portal/audit/risk.py). Normal hours are Norwegian time, Monday to Friday.
LOG_REVIEW_PAGE_SIZE = envint("PJD_LOG_REVIEW_PAGE_SIZE", 50)
LOG_REVIEW_MANY_PATIENTS = envint("PJD_LOG_REVIEW_MANY_PATIENTS", 20)
LOG_REVIEW_MANY_PATIENTS_MINUTES = envint("PJD_LOG_REVIEW_MANY_PATIENTS_MINUTES", 10)
LOG_REVIEW_WORKDAY_START_HOUR = envint("PJD_LOG_REVIEW_WORKDAY_START_HOUR", 7)
LOG_REVIEW_WORKDAY_END_HOUR = envint("PJD_LOG_REVIEW_WORKDAY_END_HOUR", 17)
# A care relation: an earlier access by the same organisation within this many days,
# not counting the hours just before (the same visit's lookup, list and opens).
LOG_REVIEW_CARE_RELATION_DAYS = envint("PJD_LOG_REVIEW_CARE_RELATION_DAYS", 365)
LOG_REVIEW_SAME_VISIT_HOURS = envint("PJD_LOG_REVIEW_SAME_VISIT_HOURS", 8)
LOG_REVIEW_EXPORT_MAX_ROWS = envint("PJD_LOG_REVIEW_EXPORT_MAX_ROWS", 100_000)
# The stored risk signals (`manage.py compute_signals`, every minute): each run looks back
# this far for events committed after a later one was computed (a long transaction).
LOG_SIGNALS_LOOKBACK_MINUTES = envint("PJD_LOG_SIGNALS_LOOKBACK_MINUTES", 60)
if LOG_SIGNALS_LOOKBACK_MINUTES < 1:
    raise ImproperlyConfigured("PJD_LOG_SIGNALS_LOOKBACK_MINUTES must be at least 1.")
# Accounts not used for this many days are deactivated by `manage.py deactivate_unused_accounts`.
ACCOUNT_UNUSED_DAYS = envint("PJD_ACCOUNT_UNUSED_DAYS", 90)
if ACCOUNT_UNUSED_DAYS < 1:
    raise ImproperlyConfigured("PJD_ACCOUNT_UNUSED_DAYS must be at least 1.")
# The review queue (pjd_portal/review, `manage.py build_review_queue`): the share of the
# accesses without a risk signal that are queued as a random sample (0.01 = 1 %), and the
# key of that draw (empty: derived from SECRET_KEY, so clinicians cannot predict it).
REVIEW_QUEUE_SAMPLE_RATE = envfloat("PJD_REVIEW_QUEUE_SAMPLE_RATE", 0.01)
REVIEW_QUEUE_SAMPLE_KEY = os.environ.get("PJD_REVIEW_QUEUE_SAMPLE_KEY", "")
# The fewest accesses each run samples per reviewing organisation when the rate is above 0
# (the lowest draws): a night whose accesses are nearly all flagged still has a sample.
REVIEW_QUEUE_SAMPLE_MIN = envint("PJD_REVIEW_QUEUE_SAMPLE_MIN", 1)
if REVIEW_QUEUE_SAMPLE_MIN < 0:
    raise ImproperlyConfigured("PJD_REVIEW_QUEUE_SAMPLE_MIN must be 0 or more.")
if not 0.0 <= REVIEW_QUEUE_SAMPLE_RATE <= 1.0:
    raise ImproperlyConfigured("PJD_REVIEW_QUEUE_SAMPLE_RATE must be between 0 and 1.")

# --- The citizen portal as an API client (the patient's access log as FHIR) -----------
# It signs a short-lived JWT (RS256) per call; these are its client id (iss and sub) and
# its public keys: a JWKS as JSON, or the path of a JWKS file. Unset: every call is 401.
CITIZEN_PORTAL_CLIENT_ID = os.environ.get("PJD_CITIZEN_PORTAL_CLIENT_ID", "")
CITIZEN_PORTAL_JWKS = os.environ.get("PJD_CITIZEN_PORTAL_JWKS", "")
CLIENT_ASSERTION_MAX_LIFETIME_SECONDS = 300  # `exp` at most five minutes ahead
CLIENT_ASSERTION_LEEWAY_SECONDS = envint("PJD_CLIENT_ASSERTION_LEEWAY_SECONDS", 30)

# --- Rate limits (lib/rate_limits.py), counted on the shared cache --------------------
# A clinician's patient lookups, and the citizen portal's calls of the patient's log API,
# per minute and per hour (0: no limit in that window). Over a limit the request is
# refused before anything is looked up: a Norwegian page (429, Retry-After) for the
# clinician, a FHIR OperationOutcome (429) for the client; the refusal is an access event
# of its own (rate_limited) and a risk signal in the log review.
RATE_LOOKUPS_PER_MINUTE = envint("PJD_RATE_LOOKUPS_PER_MINUTE", 30)
RATE_LOOKUPS_PER_HOUR = envint("PJD_RATE_LOOKUPS_PER_HOUR", 300)
RATE_CITIZEN_API_PER_MINUTE = envint("PJD_RATE_CITIZEN_API_PER_MINUTE", 600)
RATE_CITIZEN_API_PER_HOUR = envint("PJD_RATE_CITIZEN_API_PER_HOUR", 20000)
for _name in (
    "RATE_LOOKUPS_PER_MINUTE",
    "RATE_LOOKUPS_PER_HOUR",
    "RATE_CITIZEN_API_PER_MINUTE",
    "RATE_CITIZEN_API_PER_HOUR",
):
    if globals()[_name] < 0:
        raise ImproperlyConfigured(f"PJD_{_name} must be 0 (no limit) or more.")
RATELIMIT_USE_CACHE = "default"
# django-ratelimit refuses the database cache (its counter is not atomic). The demo counts
# on it all the same: there a burst of concurrent requests may get a few past the limit;
# production counts on Redis, atomically, and this check stays on there.
SILENCED_SYSTEM_CHECKS = [] if CACHE_URL else ["django_ratelimit.E003", "django_ratelimit.W001"]

# --- EPJ systems: the launch and the MHD API (docs/epj.md) ----------------------------
# Their HelseID access tokens: DPoP-bound JWTs for this audience and scope, from one of
# these clients (a JSON list of client ids; unset: no EPJ is let in). In development the
# dev identity provider's test EPJ.
API_AUDIENCE = os.environ.get("PJD_API_AUDIENCE", "nhn:pjd-portal")
API_SCOPE = os.environ.get("PJD_API_SCOPE", "nhn:pjd-portal/api")
EPJ_CLIENTS = frozenset(
    json.loads(os.environ.get("PJD_EPJ_CLIENTS", "") or ('["pjd-test-epj"]' if DEBUG else "[]"))
)
# HelseID names the legal entity an EPJ client acts for (orgnr_parent); its attest must name
# the same. Off only in development, where tests mint tokens without the claim.
EPJ_REQUIRE_CLIENT_ORGNR = envbool("PJD_EPJ_REQUIRE_CLIENT_ORGNR", not DEBUG)
# A DPoP proof is good for this long after its `iat` (its jti is remembered as long);
# a nonce the portal gave for this long (RFC 9449 §§ 11.1, 9).
DPOP_PROOF_SECONDS = envint("PJD_DPOP_PROOF_SECONDS", 60)
DPOP_NONCE_SECONDS = envint("PJD_DPOP_NONCE_SECONDS", 300)
# A launch code lives this long (at most 60 s) and opens one visit once.
EPJ_LAUNCH_CODE_SECONDS = envint("PJD_EPJ_LAUNCH_CODE_SECONDS", 60)
if not 1 <= EPJ_LAUNCH_CODE_SECONDS <= 60:
    raise ImproperlyConfigured("PJD_EPJ_LAUNCH_CODE_SECONDS must be between 1 and 60.")

# --- Patient notices (pjd_portal/notices): the patient is told of AKUTT and FORHØYET ----
# Each notice is a signed JSON POST to the citizen portal (HMAC-SHA256 under
# PJD_PATIENT_NOTICE_KEY, notices/signing.py), made by the django-tasks worker
# (`manage.py db_worker --queue-name patient_notices`). Without a URL the notices wait,
# pending and visible to the privacy officer; none is dropped.
PATIENT_NOTICE_URL = os.environ.get("PJD_PATIENT_NOTICE_URL", "").strip()
PATIENT_NOTICE_KEY = os.environ.get("PJD_PATIENT_NOTICE_KEY", "")
PATIENT_NOTICE_MAX_ATTEMPTS = envint("PJD_PATIENT_NOTICE_MAX_ATTEMPTS", 8)
PATIENT_NOTICE_BASE_DELAY_SECONDS = envfloat("PJD_PATIENT_NOTICE_BASE_DELAY_SECONDS", 30.0)
PATIENT_NOTICE_MAX_DELAY_SECONDS = envfloat("PJD_PATIENT_NOTICE_MAX_DELAY_SECONDS", 3600.0)
PATIENT_NOTICE_CONNECT_TIMEOUT = envfloat("PJD_PATIENT_NOTICE_CONNECT_TIMEOUT_SECONDS", 2.0)
PATIENT_NOTICE_READ_TIMEOUT = envfloat("PJD_PATIENT_NOTICE_READ_TIMEOUT_SECONDS", 5.0)
if (
    PATIENT_NOTICE_MAX_ATTEMPTS < 1
    or PATIENT_NOTICE_BASE_DELAY_SECONDS < 0
    or PATIENT_NOTICE_MAX_DELAY_SECONDS < 0
):
    raise ImproperlyConfigured(
        "PJD_PATIENT_NOTICE_MAX_ATTEMPTS must be at least 1 and the notice delays not negative."
    )
if PATIENT_NOTICE_URL:
    if len(PATIENT_NOTICE_KEY) < 32:
        raise ImproperlyConfigured("PJD_PATIENT_NOTICE_URL needs PJD_PATIENT_NOTICE_KEY (32+ characters).")
    if not DEBUG and not PATIENT_NOTICE_URL.startswith("https://"):
        raise ImproperlyConfigured("PJD_PATIENT_NOTICE_URL must be https:// when DEBUG is off.")
# The task queue: django-tasks' database backend, in the portal's own database, so a task
# is enqueued in the transaction that makes it (SQLite for the demo, PostgreSQL elsewhere).
TASKS = {
    "default": {
        "BACKEND": "django_tasks_db.DatabaseBackend",
        "QUEUES": ["default", "patient_notices"],
    }
}

# --- The application log (lib/logs.py) ----------------------------------------------
# JSON lines in production (PJD_LOG_FORMAT=json), key=value in development; one line per
# request (accounts/request_log.py) with its id, user, organisation, route, status and time.
# Every handler redacts any eleven-digit run (RedactNationalIds): never a national id.
LOG_FORMAT = os.environ.get("PJD_LOG_FORMAT", "plain" if DEBUG else "json")
if LOG_FORMAT not in ("json", "plain"):
    raise ImproperlyConfigured(f"PJD_LOG_FORMAT must be json or plain, got {LOG_FORMAT!r}")
# A file as well as the console (the same lines); the tests grep one for national ids.
LOG_FILE = os.environ.get("PJD_LOG_FILE", "")
# The one line per request; off, only what the code logs itself.
REQUEST_LOG = envbool("PJD_REQUEST_LOG", True)
logs.configure_structlog()
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "redact_national_ids": {"()": "pjd_portal.lib.logs.RedactNationalIds"},
        "route_not_path": {"()": "pjd_portal.lib.logs.RouteNotPath"},
    },
    "formatters": {"portal": {"()": "pjd_portal.lib.logs.formatter", "fmt": LOG_FORMAT}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "portal",
            "filters": ["redact_national_ids"],
        },
        **(
            {
                "file": {
                    "class": "logging.handlers.WatchedFileHandler",
                    "filename": LOG_FILE,
                    "formatter": "portal",
                    "filters": ["redact_national_ids"],
                }
            }
            if LOG_FILE
            else {}
        ),
    },
    "root": {
        "handlers": ["console", *(["file"] if LOG_FILE else [])],
        "level": os.environ.get("LOG_LEVEL", "INFO"),
    },
    # The development server logs every request line; the portal's URLs carry no national
    # ids, so these are safe, but keep them at WARNING to keep logs short. urllib3 logs the
    # full URL of every request to a source at DEBUG: a source's own next link could carry
    # a query the portal did not write, so it stays at WARNING whatever LOG_LEVEL says.
    "loggers": {
        "django.request": {"filters": ["route_not_path"]},
        # A failed check's traceback on every probe; /readyz logs one line naming it.
        "health_check": {"level": "ERROR"},
        "django.server": {"level": "WARNING"},
        "urllib3": {"level": "WARNING"},
    },
}

# --- Operations: health, readiness, metrics (lib/health.py, lib/metrics.py) -------------
# /metrics answers only a request with `Authorization: Bearer <this>`; unset: no page (404).
METRICS_TOKEN = os.environ.get("PJD_METRICS_TOKEN", "")
if METRICS_TOKEN and len(METRICS_TOKEN) < 32:
    raise ImproperlyConfigured("PJD_METRICS_TOKEN must be 32+ characters when set.")
# A load balancer's probes come over plain http to the instance itself.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]

# --- Refuse to start on development defaults in production ----------------------
# Raised while the settings are read, so that every way in refuses alike: the server's
# workers (wsgi.py), `manage.py check --deploy` and every other command (manage.py prints
# the one line and exits 1). A system check would not stop a server that never runs checks.
TEST_ENVIRONMENT = envbool("PJD_TEST_ENVIRONMENT", False)


def _loopback(url: str) -> bool:
    return urlsplit(url).hostname in {"127.0.0.1", "localhost", "::1"}


if not DEBUG:
    if SECRET_KEY == _DEV_SECRET:
        raise ImproperlyConfigured(
            "SECRET_KEY must be set when DEBUG is off: the development default is refused."
        )
    if len(SECRET_KEY) < 50 or not entropy.strong_enough(SECRET_KEY):
        raise ImproperlyConfigured(
            "SECRET_KEY must be set when DEBUG is off: 50+ characters and at least "
            f"{entropy.MIN_SECRET_BITS} bits by the entropy estimate (lib/entropy.py); "
            f"this one has about {entropy.estimated_bits(SECRET_KEY):.0f} bits in {len(SECRET_KEY)} characters."
        )
    if not AUDIT_ANCHOR_KEY:
        raise ImproperlyConfigured(
            "PJD_AUDIT_ANCHOR_KEY must be set when DEBUG is off (it signs the log's anchors)."
        )
    if AUDIT_ANCHOR_KEY in (_DEV_SECRET, SECRET_KEY) or not entropy.strong_enough(AUDIT_ANCHOR_KEY):
        raise ImproperlyConfigured(
            "PJD_AUDIT_ANCHOR_KEY must be a key of its own when DEBUG is off: not SECRET_KEY or the "
            f"development secret, and at least {entropy.MIN_SECRET_BITS} bits by the entropy estimate."
        )
    # HelseID's endpoints carry the login and its tokens. A test environment may run the
    # dev identity provider on the loopback over http; nothing else may.
    for _name, _url in (
        ("OIDC_ISSUER", OIDC_ISSUER),
        ("OIDC_AUTH_ENDPOINT", OIDC_OP_AUTHORIZATION_ENDPOINT),
        ("OIDC_TOKEN_ENDPOINT", OIDC_OP_TOKEN_ENDPOINT),
        ("OIDC_JWKS_ENDPOINT", OIDC_OP_JWKS_ENDPOINT),
        ("OIDC_END_SESSION_ENDPOINT", OIDC_OP_LOGOUT_ENDPOINT),
        ("OIDC_PAR_ENDPOINT", OIDC_OP_PAR_ENDPOINT),
    ):
        if _url and not _url.startswith("https://") and not (TEST_ENVIRONMENT and _loopback(_url)):
            raise ImproperlyConfigured(f"{_name} must be an https:// URL when DEBUG is off, got {_url!r}.")
    # The breakers, DPoP nonces, rate-limit counts and sessions' copies live in the default
    # cache. A per-process one lets each worker keep its own; the database cache (the demo's
    # fallback) is shared but its counters are not atomic (django-ratelimit refuses it) and
    # each read is a database round trip: production runs on Redis.
    if CACHES["default"]["BACKEND"] in PER_PROCESS_CACHES or not CACHE_URL:
        raise ImproperlyConfigured(
            "PJD_CACHE_URL must name the shared Redis (redis://host:6379/0) when DEBUG is off: "
            "a per-process or database cache does not count atomically across instances."
        )
    if (
        TEST_IDENTITIES_ENABLED or ALLOW_SYNTHETIC_IDS or "pjd-test-epj" in EPJ_CLIENTS
    ) and not TEST_ENVIRONMENT:
        raise ImproperlyConfigured(
            "Test identities or synthetic national ids are enabled with DEBUG off; "
            "set PJD_TEST_ENVIRONMENT=true only in a test environment."
        )
