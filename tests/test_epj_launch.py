"""The launch from the EPJ (docs/epj.md): `POST /api/launch` with a DPoP-bound token and its
attest, then the browser's form POST to `/start/`, to the patient's document list; each
refusal a page and an event; the token and proof checks; the code shared by instances."""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import os
import secrets
import subprocess
import sys
import uuid
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest
from django.db import connection
from django.test import Client
from django.urls import reverse

from pjd_portal.access import policy
from pjd_portal.access.launch import SESSION_LAUNCH_KEY, challenge_of
from pjd_portal.access.models import AccessAttest, EpjLaunch
from pjd_portal.access.trust_framework import read_attest
from pjd_portal.accounts import provider as provider_module
from pjd_portal.accounts.models import Role
from pjd_portal.auditlog.models import AccessEvent
from pjd_portal.logreading import fhir
from pjd_portal.patients.models import PrivacyChoice, PrivacyChoiceKind
from tests.builders import (
    LIST_PATIENT_ID,
    OTHER_PATIENT_ID,
    UNKNOWN_PATIENT_ID,
    World,
    add_auditor,
    events,
    grant_role,
    login,
)
from tests.mhd_api_tokens import (
    DpopKey,
    access_token,
    attest_for,
    other_signing_key,
    signing_jwks,
    trust_provider,
)
from tests.test_login import FakeProvider, client_key_file, provider  # noqa: F401 - fixtures

LAUNCH_URL = "http://testserver/api/launch"


class Mint:
    """Tokens the portal takes (tests/mhd_api_tokens.py: its key, issuer and client)."""

    def token(self, the_attest: Any, dpop: DpopKey | None, **claims: Any) -> str:
        return access_token(the_attest, jkt=dpop.thumbprint if dpop else "", **claims)


@pytest.fixture
def mint(monkeypatch: Any, settings: Any) -> Mint:
    trust_provider(monkeypatch, settings)
    return Mint()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def json_of(response: Any) -> dict[str, Any]:
    return json.loads(response.content)  # type: ignore[no-any-return]


def fastlege_attest(
    world: World,
    *,
    patients: list[str] | None = None,
    purpose: str = "TREAT",
    reason: str = "",
    decision_ref: str = "epj-beslutning-1",
    hpr: str | None = None,
    orgnr: str | None = None,
) -> dict[str, Any]:
    found = attest_for(
        world.fastlege,
        world.gp_office,
        [LIST_PATIENT_ID] if patients is None else patients,
        purpose=purpose,
        reason=reason,
        decision_ref=decision_ref,
    )
    if hpr is not None:
        found["practitioner"]["hpr_nr"]["id"] = hpr
    if orgnr is not None:
        found["practitioner"]["legal_entity"]["id"] = found["practitioner"]["point_of_care"]["id"] = orgnr
    return found


def ask_for_code(
    mint: Mint, the_attest: Any, *, verifier: str | None = None, client: Client | None = None
) -> tuple[Any, str]:
    """The EPJ's side: a nonce first (the normal 401), then the launch code."""

    client = client or Client()
    key = DpopKey()
    token = mint.token(the_attest, key)
    verifier = verifier or secrets.token_urlsafe(48)
    body = {"ehr_code_challenge": challenge_of(verifier), "ehr_code_challenge_method": "S256"}
    headers: dict[str, Any] = {"HTTP_AUTHORIZATION": f"DPoP {token}"}
    first = client.post(
        "/api/launch",
        body,
        HTTP_DPOP=key.proof("POST", LAUNCH_URL, access_token=token, nonce=None),
        **headers,
    )
    assert first.status_code == 401
    assert 'error="use_dpop_nonce"' in first["WWW-Authenticate"]
    nonce = first["DPoP-Nonce"]
    answer = client.post(
        "/api/launch",
        body,
        HTTP_DPOP=key.proof("POST", LAUNCH_URL, access_token=token, nonce=nonce),
        **headers,
    )
    return answer, verifier


def code_for(mint: Mint, the_attest: Any) -> tuple[str, str]:
    answer, verifier = ask_for_code(mint, the_attest)
    assert answer.status_code == 201, answer.content
    body = json_of(answer)
    assert body["expires_in"] == 60
    assert body["start_url"] == "http://testserver/start/"
    assert answer["Cache-Control"] == "no-store"
    return body["code"], verifier


def start(client: Client, code: str, verifier: str) -> Any:
    return client.post("/start/", {"code": code, "code_verifier": verifier}, follow=True)


@pytest.mark.django_db
def test_the_launch_lands_on_the_list_patients_document_list(world: World, mint: Mint) -> None:
    code, verifier = code_for(mint, fastlege_attest(world))
    client = login(Client(), world.fastlege, world.gp_office)
    response = start(client, code, verifier)
    assert response.status_code == 200
    # One interaction: the form POST, then only redirects, to the list.
    assert [r[0].split("/")[1:2] for r in response.redirect_chain] == [["start"], ["pasient"]]
    assert response.resolver_match.view_name == "documents:list"
    attest_row = AccessAttest.objects.get()
    assert (attest_row.basis, attest_row.purpose_of_use, attest_row.channel) == (
        "UNNTAK",
        "TREAT",
        "epj_launch",
    )
    assert (attest_row.client_id, attest_row.decision_ref, attest_row.care_relation) == (
        "pjd-test-epj",
        "epj-beslutning-1",
        "BEHANDLER",
    )
    visit = {"channel": "epj_launch", "client_id": "pjd-test-epj", "decision_ref": "epj-beslutning-1"}
    for kind in ("patient_lookup", "basis_stated", "document_list"):
        (event,) = events(kind)
        assert {k: event.details.get(k) for k in visit} == visit, kind
        assert event.details["purpose_of_use_details"] == "BEHANDLER"
        assert event.actor_user_id == world.fastlege.pk
    # The national id is nowhere in a URL of the way there.
    for url, _ in response.redirect_chain:
        assert LIST_PATIENT_ID not in url


@pytest.mark.django_db
def test_not_logged_in_the_launch_asks_helseid_silently(world: World, mint: Mint) -> None:
    code, verifier = code_for(mint, fastlege_attest(world))
    response = Client().post("/start/", {"code": code, "code_verifier": verifier})
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("oidc_authentication_init"))
    assert "silent=1" in response["Location"]
    assert "next=%2Fstart%2Ffortsett%2F" in response["Location"]


@pytest.mark.django_db
def test_a_code_opens_one_visit_once(world: World, mint: Mint) -> None:
    code, verifier = code_for(mint, fastlege_attest(world))
    client = login(Client(), world.fastlege, world.gp_office)
    assert start(client, code, verifier).resolver_match.view_name == "documents:list"
    again = start(client, code, verifier)
    assert again.status_code == 403
    assert b'data-reason="launch_code_used"' in again.content
    (refused,) = events("epj_launch_refused")
    assert refused.reason_code == "launch_code_used"
    assert AccessAttest.objects.count() == 1


@pytest.mark.django_db
def test_a_wrong_verifier_opens_nothing_and_spends_the_code(world: World, mint: Mint) -> None:
    code, verifier = code_for(mint, fastlege_attest(world))
    client = login(Client(), world.fastlege, world.gp_office)
    wrong = start(client, code, secrets.token_urlsafe(48))
    assert wrong.status_code == 403
    assert b'data-reason="launch_verifier_mismatch"' in wrong.content
    assert b'data-reason="launch_code_used"' in start(client, code, verifier).content
    assert [e.reason_code for e in events("epj_launch_refused")] == [
        "launch_verifier_mismatch",
        "launch_code_used",
    ]
    assert not AccessAttest.objects.exists()


@pytest.mark.django_db
def test_an_expired_or_unknown_code_opens_nothing(world: World, mint: Mint) -> None:
    code, verifier = code_for(mint, fastlege_attest(world))
    EpjLaunch.objects.update(expires_at=datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC))
    client = login(Client(), world.fastlege, world.gp_office)
    assert b'data-reason="launch_code_expired"' in start(client, code, verifier).content
    assert b'data-reason="launch_code_unknown"' in start(client, secrets.token_urlsafe(32), verifier).content
    assert b'data-reason="launch_code_unknown"' in start(client, "", "").content
    assert [e.reason_code for e in events("epj_launch_refused")] == [
        "launch_code_expired",
        "launch_code_unknown",
        "launch_code_unknown",
    ]
    # A plain visit to /start/ explains, and attempts nothing.
    assert b"data-reason" in Client().get("/start/").content
    assert not AccessAttest.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("overrides", "persona", "reason"),
    [
        ({}, "other_clinician", "launch_person_mismatch"),
        ({"hpr": "910000099"}, "fastlege", "launch_person_mismatch"),
        ({"orgnr": "310100005"}, "fastlege", "launch_organisation_mismatch"),
        ({"patients": []}, "fastlege", "attest_patient_count"),
        ({"patients": [LIST_PATIENT_ID, OTHER_PATIENT_ID]}, "fastlege", "attest_patient_count"),
        ({"purpose": "COC"}, "fastlege", "purpose_not_supported"),
    ],
)
def test_refusals_are_pages_and_events(
    world: World, mint: Mint, overrides: dict[str, Any], persona: str, reason: str
) -> None:
    code, verifier = code_for(mint, fastlege_attest(world, **overrides))
    user = world.fastlege if persona == "fastlege" else world.other_clinician
    org = world.gp_office if persona == "fastlege" else world.legevakt
    response = start(login(Client(), user, org), code, verifier)
    assert response.status_code == 403
    assert f'data-reason="{reason}"'.encode() in response.content
    (refused,) = events("epj_launch_refused")
    assert (refused.reason_code, refused.actor_user_id) == (reason, user.pk)
    assert refused.details["decision_ref"] == "epj-beslutning-1"
    assert not AccessAttest.objects.exists()
    assert not events("patient_lookup")


@pytest.mark.django_db
def test_an_unknown_patient_is_a_page_and_a_logged_lookup(world: World, mint: Mint) -> None:
    code, verifier = code_for(mint, fastlege_attest(world, patients=[UNKNOWN_PATIENT_ID]))
    response = start(login(Client(), world.fastlege, world.gp_office), code, verifier)
    assert response.status_code == 404
    assert b'data-reason="no_such_patient"' in response.content
    (lookup,) = events("patient_lookup")
    assert (lookup.outcome, lookup.details["channel"]) == ("not_found", "epj_launch")


@pytest.mark.django_db
def test_emergency_purposes_become_akutt_flagged_and_told(world: World, mint: Mint) -> None:
    client = login(Client(), world.fastlege, world.gp_office)
    code, verifier = code_for(mint, fastlege_attest(world, patients=[OTHER_PATIENT_ID], purpose="ETREAT"))
    assert start(client, code, verifier).resolver_match.view_name == "documents:list"
    etreat = AccessAttest.objects.get()
    assert (etreat.basis, etreat.purpose_of_use) == ("AKUTT", "ETREAT")
    assert "ETREAT" in etreat.reason
    (emergency,) = events("emergency_access")
    assert emergency.flagged_for_review and emergency.details["notice_id"]
    # BTG needs the clinician's own reason in the attest.
    code, verifier = code_for(mint, fastlege_attest(world, patients=[OTHER_PATIENT_ID], purpose="BTG"))
    refused = start(client, code, verifier)
    assert b'data-reason="reason_required"' in refused.content
    reason = "Bevisstløs pasient innlagt, trenger tidligere epikriser nå."
    code, verifier = code_for(
        mint,
        fastlege_attest(world, patients=[OTHER_PATIENT_ID], purpose="BTG", reason=reason, decision_ref="d2"),
    )
    assert start(client, code, verifier).resolver_match.view_name == "documents:list"
    btg = AccessAttest.objects.get(decision_ref="d2")
    assert (btg.basis, btg.purpose_of_use, btg.reason) == ("AKUTT", "BTG", reason)


@pytest.mark.django_db
def test_treat_for_a_patient_not_on_the_list_is_consent(world: World, mint: Mint) -> None:
    code, verifier = code_for(mint, fastlege_attest(world, patients=[OTHER_PATIENT_ID]))
    start(login(Client(), world.fastlege, world.gp_office), code, verifier)
    assert AccessAttest.objects.get().basis == "SAMTYKKE"


@pytest.mark.django_db
def test_a_restricted_patient_goes_to_the_elevated_step_and_a_reserved_one_to_its_page(
    world: World, mint: Mint
) -> None:
    client = login(Client(), world.fastlege, world.gp_office)
    PrivacyChoice.objects.create(patient=world.patient, kind=PrivacyChoiceKind.RESTRICTION)
    code, verifier = code_for(mint, fastlege_attest(world))
    assert start(client, code, verifier).resolver_match.view_name == "patients:elevated"
    PrivacyChoice.objects.create(patient=world.other_patient, kind=PrivacyChoiceKind.RESERVATION)
    code, verifier = code_for(mint, fastlege_attest(world, patients=[OTHER_PATIENT_ID]))
    reserved = start(client, code, verifier)
    assert reserved.status_code == 200
    assert b"reserved" in reserved.content or b"reservert" in reserved.content
    assert not AccessAttest.objects.exists()
    denied = events("access_denied", reason_code="patient_reserved")
    assert len(denied) == 1 and denied[0].details["channel"] == "epj_launch"


# --- the token and the proof ---------------------------------------------------------


def _call(client: Client, token: str, proof: str | None, scheme: str = "DPoP") -> Any:
    body = {"ehr_code_challenge": challenge_of(secrets.token_urlsafe(48))}
    extra: dict[str, Any] = {"HTTP_DPOP": proof} if proof is not None else {}
    return client.post("/api/launch", body, HTTP_AUTHORIZATION=f"{scheme} {token}", **extra)


def _nonce(client: Client) -> str:
    return str(client.post("/api/launch")["DPoP-Nonce"])


@pytest.mark.django_db
@pytest.mark.parametrize(
    "fault",
    [
        "forged",
        "expired",
        "audience",
        "issuer",
        "typ",
        "unbound",
        "scope",
        "client",
        "bearer",
        "no_proof",
        "htm",
        "htu",
        "ath",
        "other_key",
        "old_proof",
        "stale_nonce",
        "proof_typ",
        "replayed",
        "no_token",
    ],
)
def test_every_token_or_proof_fault_is_refused_without_a_500(world: World, mint: Mint, fault: str) -> None:
    client = Client()
    key = DpopKey()
    the_attest = fastlege_attest(world)
    faults: dict[str, dict[str, Any]] = {
        "expired": {"exp": 1_600_000_000, "iat": 1_599_999_000, "nbf": 1_599_999_000},
        "audience": {"aud": "nhn:another-api"},
        "issuer": {"iss": "http://evil.example"},
        "unbound": {"cnf": None},
        "scope": {"scope": "openid"},
        "client": {"client_id": "unknown-epj"},
    }
    overrides = faults.get(fault, {})
    token = mint.token(
        the_attest,
        key,
        typ="JWT" if fault == "typ" else "at+jwt",
        key=other_signing_key() if fault == "forged" else None,
        **overrides,
    )
    nonce = _nonce(client)
    proof_args: dict[str, Any] = {"access_token": token, "nonce": nonce}
    method, url = "POST", LAUNCH_URL
    signer = key
    if fault == "htm":
        method = "GET"
    elif fault == "htu":
        url = "http://testserver/api/fhir/DocumentReference/_search"
    elif fault == "ath":
        proof_args["access_token"] = token + "x"
    elif fault == "other_key":
        signer = DpopKey()
    elif fault == "old_proof":
        proof_args["iat"] = 1_600_000_000
    elif fault == "stale_nonce":
        proof_args["nonce"] = "abc:def"
    proof = signer.proof(method, url, typ="JWT" if fault == "proof_typ" else "dpop+jwt", **proof_args)
    if fault == "replayed":
        assert _call(client, token, proof).status_code == 201
    if fault == "no_token":
        response = client.post("/api/launch", {})
    else:
        response = _call(
            client,
            token,
            None if fault == "no_proof" else proof,
            scheme="Bearer" if fault == "bearer" else "DPoP",
        )
    expected = 403 if fault == "scope" else 401
    assert response.status_code == expected, (fault, response.content)
    body = json_of(response)
    assert body["resourceType"] == "OperationOutcome"
    assert response["WWW-Authenticate"].startswith("DPoP ")
    assert response["DPoP-Nonce"]
    if fault == "stale_nonce":
        assert 'error="use_dpop_nonce"' in response["WWW-Authenticate"]
    assert EpjLaunch.objects.count() == (1 if fault == "replayed" else 0)


@pytest.mark.django_db
def test_a_token_without_an_attest_gets_no_code(world: World, mint: Mint) -> None:
    answer, _ = ask_for_code(mint, None)
    assert answer.status_code == 403
    assert json_of(answer)["issue"][0]["code"] == "forbidden"
    (refused,) = events("api_call_refused")
    assert (refused.reason_code, refused.details["client_id"]) == ("attest_missing", "pjd-test-epj")


@pytest.mark.django_db
def test_a_bad_code_challenge_is_refused(world: World, mint: Mint) -> None:
    client = Client()
    key = DpopKey()
    token = mint.token(fastlege_attest(world), key)
    proof = key.proof("POST", LAUNCH_URL, access_token=token, nonce=_nonce(client))
    response = client.post(
        "/api/launch",
        {"ehr_code_challenge": "short", "ehr_code_challenge_method": "plain"},
        HTTP_AUTHORIZATION=f"DPoP {token}",
        HTTP_DPOP=proof,
    )
    assert response.status_code == 400
    assert not EpjLaunch.objects.exists()


# --- the code, presented to other instances --------------------------------------------

_REDEEM = """
import json, os, sys
import django
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pjd_portal.settings")
django.setup()
from django.conf import settings
settings.DATABASES["default"]["NAME"] = sys.argv[1]
from pjd_portal.access.launch import redeem_launch_code
found = redeem_launch_code(code=sys.argv[2], verifier=sys.argv[3])
print(json.dumps({"ok": found.launch is not None, "reason": found.reason_code}))
"""


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_code_works_exactly_once_across_instances(world: World, mint: Mint) -> None:
    """Four other processes (instances of the portal on one database) are given the same
    code at once: exactly one opens the launch."""

    code, verifier = code_for(mint, fastlege_attest(world))
    env = {**os.environ, "DEBUG": "true", "PJD_ALLOW_SYNTHETIC_IDS": "true"}
    name = connection.settings_dict["NAME"]
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", _REDEEM, name, code, verifier], env=env, stdout=subprocess.PIPE, text=True
        )
        for _ in range(4)
    ]
    answers = [json.loads(run.communicate(timeout=60)[0].strip().splitlines()[-1]) for run in runs]
    assert sorted(a["ok"] for a in answers) == [False, False, False, True]
    assert {a["reason"] for a in answers if not a["ok"]} == {"launch_code_used"}


# --- the EPJ's decision, where the log is read ----------------------------------------


@pytest.mark.django_db
def test_the_epjs_decision_is_shown_in_log_review_the_patients_log_and_its_fhir_form(
    world: World, mint: Mint
) -> None:
    code, verifier = code_for(mint, fastlege_attest(world, decision_ref="EPJ-42"))
    start(login(Client(), world.fastlege, world.gp_office), code, verifier)
    listed = AccessEvent.objects.get(event_type="document_list")
    # The auditor of the clinician's own organisation reads the event.
    auditor = login(Client(), add_auditor(world.gp_office), world.gp_office)
    page = auditor.get(reverse("forvaltning:log_event", args=[listed.event_id]))
    assert page.status_code == 200
    shown = page.content.decode()
    assert 'data-testid="from-epj"' in shown and "EPJ-42" in shown and "BEHANDLER" in shown
    # The privacy officer's print of the patient's log.
    officer = login(Client(), world.privacy_officer, world.forvaltning)
    log = officer.post(reverse("forvaltning:patient_log"), {"national_id": LIST_PATIENT_ID}).content.decode()
    assert "EPJ-42" in log and "BEHANDLER" in log
    # The citizen's FHIR AuditEvent: the decision as the agent's policy, the care relation coded.
    agent = next(
        a
        for a in fhir.audit_event(listed, audience=policy.CITIZEN_LOG)["agent"]
        if a.get("requestor") and "policy" in a
    )
    assert agent["policy"] == ["urn:pjd-portal:epj-decision:pjd-test-epj:EPJ-42"]
    assert {"system": fhir.CARE_RELATION_SYSTEM, "code": "BEHANDLER"}.items() <= next(
        p["coding"][0] for p in agent["purposeOfUse"] if p["coding"][0]["system"] == fhir.CARE_RELATION_SYSTEM
    ).items()


@pytest.mark.django_db
def test_a_launch_is_not_kept_once_it_can_no_longer_be_finished(world: World, mint: Mint) -> None:
    code_for(mint, fastlege_attest(world))
    EpjLaunch.objects.update(expires_at=datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC))
    code_for(mint, fastlege_attest(world))
    assert EpjLaunch.objects.count() == 1


# --- found by review: each failed before its fix --------------------------------------


@pytest.mark.django_db
def test_a_person_of_several_organisations_is_launched_into_the_attests(
    world: World,
    mint: Mint,
    provider: FakeProvider,  # noqa: F811 - the fixture imported above
    monkeypatch: Any,
) -> None:
    """A clinician at the GP office and at the legevakt, launched for the GP office with no
    portal session: the silent login, then the list, with no chooser in between."""

    grant_role(world.fastlege, world.legevakt, Role.CLINICIAN)
    monkeypatch.setattr(
        provider_module, "signing_keys", lambda refresh=False: [*signing_jwks(), *provider.jwks()["keys"]]
    )
    code, verifier = code_for(mint, fastlege_attest(world))
    browser = Client()
    first = browser.post("/start/", {"code": code, "code_verifier": verifier})
    location = urlsplit(browser.get(first["Location"])["Location"])
    params = {k: v[0] for k, v in parse_qs(location.query).items()}
    if "request_uri" in params:
        params = dict(provider.pushed[params["request_uri"]])
    assert params["prompt"] == "none"
    provider.nonce = params["nonce"]
    done = browser.get("/oidc/callback/", {"code": "abc", "state": params["state"]}, follow=True)
    assert done.resolver_match.view_name == "documents:list", done.redirect_chain
    (chosen,) = events("organisation_chosen")
    assert chosen.organisation_orgnr == world.gp_office.orgnr


@pytest.mark.django_db
def test_made_up_kids_do_not_make_the_portal_fetch_helseids_keys_each_time(
    world: World, monkeypatch: Any
) -> None:
    fetched: list[bool] = []

    def fetch(url: str) -> dict[str, Any]:
        fetched.append(True)
        return {"keys": signing_jwks()}

    provider_module.clear_cache()
    monkeypatch.setattr(provider_module, "_get_json", fetch)
    client = Client()
    for i in range(20):
        header = _b64(json.dumps({"alg": "RS256", "typ": "at+jwt", "kid": f"k{i}"}).encode())
        token = f"{header}.{_b64(b'{}')}.{_b64(b'x')}"
        assert client.post("/api/launch", HTTP_AUTHORIZATION=f"DPoP {token}").status_code == 401
    assert len(fetched) <= 2
    provider_module.clear_cache()


def _raw_proof(key: DpopKey, claims_json: str) -> str:
    """A proof whose payload is this very JSON text (NaN is no JSON, but Python reads it)."""

    header = _b64(json.dumps({"typ": "dpop+jwt", "alg": "ES256", "jwk": key.public_jwk}).encode())
    payload = _b64(claims_json.encode())
    signature = jwt.algorithms.ECAlgorithm(jwt.algorithms.ECAlgorithm.SHA256).sign(
        f"{header}.{payload}".encode(), key.private
    )
    return f"{header}.{payload}.{_b64(signature)}"


@pytest.mark.django_db
def test_a_proof_with_a_nan_time_or_a_broken_url_is_refused_not_a_500(world: World, mint: Mint) -> None:
    client = Client(raise_request_exception=False)
    key = DpopKey()
    token = mint.token(fastlege_attest(world), key)
    ath = _b64(hashlib.sha256(token.encode()).digest())
    claims = (
        f'{{"htm":"POST","htu":"{LAUNCH_URL}","iat":NaN,"jti":"{uuid.uuid4().hex}",'
        f'"ath":"{ath}","nonce":"{_nonce(client)}"}}'
    )
    assert _call(client, token, _raw_proof(key, claims)).status_code == 401
    for htu in ("http://testserver:99999/api/launch", "http://[testserver/api/launch"):
        proof = key.proof("POST", htu, access_token=token, nonce=_nonce(client))
        assert _call(client, token, proof).status_code == 401


@pytest.mark.django_db
def test_a_launch_is_finished_once_even_from_a_session_that_holds_it_again(world: World, mint: Mint) -> None:
    code, verifier = code_for(mint, fastlege_attest(world))
    client = login(Client(), world.fastlege, world.gp_office)
    client.post("/start/", {"code": code, "code_verifier": verifier})
    launch_id = client.session[SESSION_LAUNCH_KEY]
    assert client.get("/start/fortsett/").status_code == 302
    # A twin request that read the session before the first one saved it.
    session = client.session
    session[SESSION_LAUNCH_KEY] = launch_id
    session.save()
    assert client.get("/start/fortsett/").status_code == 403
    assert len(events("basis_stated")) == 1


@pytest.mark.django_db
def test_an_attest_naming_a_member_twice_is_refused(world: World, mint: Mint) -> None:
    base = fastlege_attest(world)
    care = base["care_relationship"]
    # The published member says COC (refused); a hyphenated twin says TREAT.
    variant = {
        **base,
        "care_relationship": {**care, "purpose_of_use": {"code": "COC"}},
        "care-relationship": care,
    }
    answer, _ = ask_for_code(mint, variant)
    assert answer.status_code == 403
    (refused,) = events("api_call_refused")
    assert refused.reason_code == "attest_ambiguous"
    assert not EpjLaunch.objects.exists()


@pytest.mark.django_db
def test_made_up_codes_from_nobody_do_not_fill_the_access_log(world: World) -> None:
    client = Client()
    for _ in range(20):
        answer = client.post("/start/", {"code": secrets.token_urlsafe(32), "code_verifier": "x"})
        assert answer.status_code == 403
    assert events("epj_launch_refused") == []


def test_a_national_id_in_the_epjs_decision_or_reason_is_not_kept() -> None:
    the_attest = {
        "type": "nhn:tillitsrammeverk:parameters",
        "practitioner": {"identifier": {"id": "12837512393"}, "legal_entity": {"id": "310000000"}},
        "care_relationship": {
            "purpose_of_use": {"code": "BTG"},
            "decision_ref": {
                "id": f"sak-{LIST_PATIENT_ID}",
                "reason": f"Pasient {LIST_PATIENT_ID} bevisstløs",
            },
        },
        "patients": [{"identifier": {"id": LIST_PATIENT_ID}}],
    }
    read = read_attest([the_attest])
    assert LIST_PATIENT_ID not in read.decision_ref and LIST_PATIENT_ID not in read.reason
    assert read.patient_ids == (LIST_PATIENT_ID,)


_PRESENT = """
import json, os, sys
import django
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pjd_portal.settings")
django.setup()
from django.conf import settings
settings.DATABASES["default"]["NAME"] = sys.argv[1]
settings.ALLOWED_HOSTS = ["testserver"]
from pjd_portal.accounts import provider
from tests import mhd_api_tokens
jwks = json.loads(sys.argv[2])
provider.signing_keys = lambda refresh=False: jwks
settings.OIDC_ISSUER = mhd_api_tokens.ISSUER
from django.test import Client
answer = Client().post(
    "/api/launch",
    {"ehr_code_challenge": sys.argv[5]},
    HTTP_AUTHORIZATION="DPoP " + sys.argv[3],
    HTTP_DPOP=sys.argv[4],
)
print(json.dumps({"status": answer.status_code}))
"""


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_one_dpop_proof_is_taken_once_across_instances(world: World, mint: Mint) -> None:
    """Four other processes (instances on one database) are shown the same token and proof
    at once: one takes it, three refuse it as replayed."""

    key = DpopKey()
    token = mint.token(fastlege_attest(world), key)
    proof = key.proof("POST", LAUNCH_URL, access_token=token, nonce=_nonce(Client()))
    env = {**os.environ, "DEBUG": "true", "PJD_ALLOW_SYNTHETIC_IDS": "true"}
    name = connection.settings_dict["NAME"]
    challenge = challenge_of(secrets.token_urlsafe(48))
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", _PRESENT, name, json.dumps(signing_jwks()), token, proof, challenge],
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    answers = [json.loads(run.communicate(timeout=60)[0].strip().splitlines()[-1]) for run in runs]
    assert sorted(a["status"] for a in answers) == [201, 401, 401, 401]
    assert EpjLaunch.objects.count() == 1


@pytest.mark.django_db
def test_a_launch_over_the_clinicians_lookup_limit_looks_nobody_up(
    world: World, mint: Mint, settings: Any
) -> None:
    """A lookup from the EPJ counts against the clinician's limit, as one from the form: the
    second launch in the minute (limit 1) gets the Norwegian 429 page, no lookup is made, and
    the refusal is one rate_limited event."""

    settings.RATE_LOOKUPS_PER_MINUTE = 1
    client = login(Client(), world.fastlege, world.gp_office)
    code, verifier = code_for(mint, fastlege_attest(world))
    assert start(client, code, verifier).resolver_match.view_name == "documents:list"
    code, verifier = code_for(mint, fastlege_attest(world, decision_ref="epj-beslutning-2"))
    refused = start(client, code, verifier)
    assert refused.status_code == 429
    assert refused["Retry-After"]
    assert "For mange oppslag" in refused.content.decode()
    assert AccessEvent.objects.filter(event_type="patient_lookup").count() == 1
    limited = AccessEvent.objects.get(event_type="rate_limited")
    assert limited.reason_code == "lookup_rate_limited"
