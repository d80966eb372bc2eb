"""Rate limits: a clinician's patient lookups and the citizen portal's calls (settings
RATE_*; lib/rate_limits.py). Over a limit: nothing looked up, a clear answer with
Retry-After, a `rate_limited` event, and the rate_limited signal in the log review. The
count across processes is in tests/test_shared_state.py."""

from __future__ import annotations

import json
import os
import re
import time
import uuid
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.core.cache import caches
from django.test import Client
from django.utils import translation

from pjd_portal.accounts.keys import public_jwks
from pjd_portal.auditlog import events as kinds
from pjd_portal.auditlog.events import Outcome
from pjd_portal.auditlog.models import AccessEvent
from pjd_portal.logreading import log_search, risk
from pjd_portal.logreading.models import EventSignals
from pjd_portal.logreading.stored_signals import compute_signals
from tests.builders import LIST_PATIENT_ID, OTHER_PATIENT_ID, hospital_doctor, login, staff

LOOKUP = "/pasient/sok/"
SEARCH = "/forvaltning/loggkontroll/"
ROW = re.compile(r'<tr data-testid="log-row" data-event-id="([0-9a-f-]+)">')
API = "/api/fhir/AuditEvent/_search"
CLIENT_ID = "innbyggerportal"


@pytest.fixture
def one_window(monkeypatch: pytest.MonkeyPatch) -> None:
    """The counts' clock held still, so that no window ends during a test."""

    import django_ratelimit.core

    held = time.time()

    class Clock:
        @staticmethod
        def time() -> float:
            return held

    monkeypatch.setattr(django_ratelimit.core, "time", Clock)


def _lookups(world: Any, client: Client) -> int:
    return AccessEvent.objects.filter(
        event_type=kinds.PATIENT_LOOKUP.name, organisation_orgnr=world.hospital.orgnr
    ).count()


def _refusals() -> list[AccessEvent]:
    return list(AccessEvent.objects.filter(event_type=kinds.RATE_LIMITED.name).order_by("pk"))


@pytest.mark.django_db
def test_the_31st_lookup_in_a_minute_is_refused_with_a_norwegian_page_and_nothing_looked_up(
    world: Any, one_window: None, settings: Any
) -> None:
    assert (settings.RATE_LOOKUPS_PER_MINUTE, settings.RATE_LOOKUPS_PER_HOUR) == (30, 300)  # the defaults
    doctor = hospital_doctor(world)
    client = login(Client(), doctor, world.hospital)
    for i in range(30):
        answer = client.post(LOOKUP, {"national_id": LIST_PATIENT_ID if i % 2 else OTHER_PATIENT_ID})
        assert answer.status_code in (302, 404), i
    assert _lookups(world, client) == 30
    assert _refusals() == []

    refused = client.post(LOOKUP, {"national_id": LIST_PATIENT_ID})
    assert refused.status_code == 429
    assert 1 <= int(refused["Retry-After"]) <= 60
    body = refused.content.decode()
    assert "For mange oppslag" in body
    assert "Dette oppslaget ble ikke gjort, og ingenting ble endret" in body
    assert re.search(r"igjen om omtrent \d+ min\.", body)
    assert LIST_PATIENT_ID not in body
    assert _lookups(world, client) == 30  # nothing looked up

    [event] = _refusals()
    assert event.outcome == Outcome.DENIED and event.reason_code == "lookup_rate_limited"
    assert event.actor_hpr_number == doctor.hpr_number and event.organisation_orgnr == world.hospital.orgnr
    assert event.patient_id is None and event.patient_national_id == ""
    assert event.details["limit"] == 30 and event.details["period"] == "m"
    assert LIST_PATIENT_ID not in json.dumps(event.details)

    # Trying on: the same page, no lookup, and no second event in the same window.
    assert client.post(LOOKUP, {"national_id": OTHER_PATIENT_ID}).status_code == 429
    assert _lookups(world, client) == 30 and len(_refusals()) == 1

    # Another clinician has a count of their own.
    other = login(Client(), world.fastlege, world.gp_office)
    assert other.post(LOOKUP, {"national_id": LIST_PATIENT_ID}).status_code == 302


@pytest.mark.django_db
def test_the_refusal_shows_as_a_signal_in_the_log_search(
    world: Any, one_window: None, settings: Any, as_auditor: Client
) -> None:
    settings.RATE_LOOKUPS_PER_MINUTE = 2
    doctor = hospital_doctor(world)
    client = login(Client(), doctor, world.hospital)
    for _ in range(3):
        client.post(LOOKUP, {"national_id": LIST_PATIENT_ID})
    [event] = _refusals()

    with translation.override("nb"):
        body = as_auditor.post(SEARCH, {"signal": "rate_limited"}).content.decode()
    assert ROW.findall(body) == [str(event.event_id)]
    assert 'data-signal="rate_limited"' in body and "For mange oppslag på kort tid" in body

    thresholds = risk.Thresholds.from_settings()
    compute_signals(thresholds=thresholds)
    assert EventSignals.objects.get(event_pk=event.pk, reviewer_orgnr=world.hospital.orgnr).signals == (
        "rate_limited",
    )
    page = log_search.search_page(
        staff(world.auditor, world.hospital),
        log_search.LogFilters(signal="rate_limited"),
        thresholds=thresholds,
    )
    assert [row.event.pk for row in page.rows] == [event.pk]


@pytest.mark.database_cache  # the demo's cache: the same counts, in the database
@pytest.mark.django_db
def test_the_hour_limit_refuses_as_well(world: Any, one_window: None, settings: Any) -> None:
    assert type(caches["default"]).__name__ == "DatabaseCache" or os.environ.get("PJD_CACHE_URL")
    settings.RATE_LOOKUPS_PER_MINUTE = 0  # no minute limit
    settings.RATE_LOOKUPS_PER_HOUR = 3
    client = login(Client(), hospital_doctor(world), world.hospital)
    answers = [client.post(LOOKUP, {"national_id": LIST_PATIENT_ID}).status_code for _ in range(4)]
    assert answers == [302, 302, 302, 429]
    [event] = _refusals()
    assert event.details["period"] == "h" and event.details["limit"] == 3


@pytest.mark.django_db
def test_empty_input_is_not_counted(world: Any, one_window: None, settings: Any) -> None:
    settings.RATE_LOOKUPS_PER_MINUTE = 1
    client = login(Client(), hospital_doctor(world), world.hospital)
    assert client.post(LOOKUP, {"national_id": ""}).status_code == 400
    assert client.post(LOOKUP, {"national_id": LIST_PATIENT_ID}).status_code == 302


@pytest.mark.django_db
def test_a_cache_that_does_not_answer_lets_the_lookup_through_and_says_so(
    world: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from pjd_portal.lib import rate_limits

    def down(*args: Any, **kwargs: Any) -> None:
        raise ConnectionError("cache down")

    monkeypatch.setattr(rate_limits, "get_usage", down)
    client = login(Client(), hospital_doctor(world), world.hospital)
    assert client.post(LOOKUP, {"national_id": LIST_PATIENT_ID}).status_code == 302
    assert "rate limit pjd.lookups not counted" in caplog.text


# --- the citizen API, per client --------------------------------------------------------


@pytest.fixture
def citizen_key(settings: Any) -> tuple[bytes, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    jwks = public_jwks(key)
    settings.CITIZEN_PORTAL_CLIENT_ID = CLIENT_ID
    settings.CITIZEN_PORTAL_JWKS = json.dumps(jwks)
    return key, jwks["keys"][0]["kid"]


def _call(client: Client, key: bytes, kid: str) -> Any:
    now = int(time.time())
    claims = {
        "iss": CLIENT_ID,
        "sub": CLIENT_ID,
        "aud": f"http://testserver{API}",
        "iat": now,
        "exp": now + 60,
        "jti": str(uuid.uuid4()),
    }
    token = jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid})
    return client.post(
        API,
        data=json.dumps({"patient": LIST_PATIENT_ID}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )


@pytest.mark.django_db
def test_the_citizen_api_over_its_limit_answers_429_as_an_operation_outcome(
    world: Any, one_window: None, settings: Any, citizen_key: tuple[bytes, str]
) -> None:
    settings.RATE_CITIZEN_API_PER_MINUTE = 2
    client = Client()
    answers = [_call(client, *citizen_key) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 429]
    refused = answers[2]
    assert refused["Content-Type"] == "application/fhir+json"
    assert 1 <= int(refused["Retry-After"]) <= 60
    outcome = json.loads(refused.content)
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["code"] == "throttled"
    assert "2/m" in outcome["issue"][0]["diagnostics"]
    # Nothing searched; the refusal logged, naming the client.
    assert AccessEvent.objects.filter(event_type=kinds.PATIENT_LOG_READ.name).count() == 2
    [event] = _refusals()
    assert event.reason_code == "client_rate_limited" and event.details["client_id"] == CLIENT_ID
    assert event.patient_national_id == ""
