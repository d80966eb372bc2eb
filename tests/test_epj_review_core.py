"""Found by review of the EPJ's parts, each failing before its fix: an attest reused after
the clinician lost the role, an EPJ attesting for another organisation than its client's,
a SMART launch link carrying a national id, a smart-configuration naming no URL."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests
from django.test import Client

from pjd_portal.accounts.roles import grants_in_force
from pjd_portal.auditlog.models import AccessEvent
from tests.builders import LIST_PATIENT_ID, World, add_document, events, login
from tests.mhd_api_tokens import access_token, attest_for
from tests.test_epj_launch import ask_for_code, mint  # noqa: F401 - the fixture
from tests.test_mhd_api import Epj, epj  # noqa: F401 - the fixture

CLIENT_ORGNR = "helseid://claims/client/claims/orgnr_parent"


def test_an_attest_reused_after_the_role_was_revoked_is_a_403(epj: Epj, world: World) -> None:  # noqa: F811
    add_document(world)
    assert epj.search(token=epj.token(decision_ref="epj-same-decision")).status_code == 200
    grants_in_force().filter(user=world.fastlege, content_object=world.gp_office).delete()
    again = epj.search(token=epj.token(decision_ref="epj-same-decision"))
    assert again.status_code == 403, again.content[:300]
    assert events("patient_lookup")[-1].reason_code == "no_clinician_role"


def test_an_epj_attesting_for_another_organisation_than_its_clients_is_refused(
    epj: Epj,  # noqa: F811
    world: World,
    settings: Any,
) -> None:
    add_document(world)
    attest = attest_for(world.fastlege, world.gp_office, [LIST_PATIENT_ID])
    other_claim: dict[str, Any] = {CLIENT_ORGNR: "999999999"}
    other = access_token(attest, jkt=epj.key.thumbprint, **other_claim)
    assert epj.search(token=other).status_code == 403
    assert events("api_call_refused")[-1].reason_code == "attest_not_the_clients_organisation"
    own_claim: dict[str, Any] = {CLIENT_ORGNR: world.gp_office.orgnr}
    own = access_token(attest, jkt=epj.key.thumbprint, **own_claim)
    assert epj.search(token=own).status_code == 200
    # Production requires the claim: a token without it attests for nobody.
    settings.EPJ_REQUIRE_CLIENT_ORGNR = True
    assert epj.search(token=access_token(attest, jkt=epj.key.thumbprint)).status_code == 403


@pytest.mark.django_db
def test_the_launch_refuses_an_attest_for_another_organisation_than_its_clients(
    world: World,
    mint: Any,  # noqa: F811
) -> None:
    class Other:
        def token(self, the_attest: Any, dpop: Any, **claims: Any) -> str:
            return str(mint.token(the_attest, dpop, **{CLIENT_ORGNR: "999999999"}, **claims))

    answer, _ = ask_for_code(Other(), attest_for(world.fastlege, world.gp_office, [LIST_PATIENT_ID]))  # type: ignore[arg-type]
    assert answer.status_code == 403
    assert events("api_call_refused")[-1].reason_code == "attest_not_the_clients_organisation"


@pytest.fixture
def clinician(world: World) -> Client:
    return login(Client(), world.fastlege, world.gp_office)


@pytest.mark.django_db
def test_a_smart_launch_link_naming_a_national_id_keeps_none(clinician: Client, settings: Any) -> None:
    settings.SMART_EHRS = {}
    response = clinician.get(
        "/smart/launch", {"iss": f"https://evil.example/{LIST_PATIENT_ID}", "launch": "x"}
    )
    assert response.status_code == 403
    stored = json.dumps([e.details for e in AccessEvent.objects.all()], default=str)
    assert LIST_PATIENT_ID not in stored


class _Answer:
    def __init__(self, body: Any, status: int = 200) -> None:
        self.body, self.status_code = body, status

    def json(self) -> Any:
        return self.body


@pytest.mark.django_db
def test_a_smart_configuration_naming_no_url_is_refused_not_a_500(
    clinician: Client, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    iss = "https://ehr.example/fhir"
    settings.SMART_EHRS = {iss: {"name": "X", "client_id": "c", "issuer": "https://idp.example"}}
    config = {
        "issuer": "https://idp.example",
        "authorization_endpoint": "https://[idp.example/authorize",
        "token_endpoint": "https://idp.example/token",
        "jwks_uri": "https://idp.example/jwks",
        "capabilities": ["launch-ehr"],
        "code_challenge_methods_supported": ["S256"],
    }
    monkeypatch.setattr(requests, "get", lambda *a, **k: _Answer(config))
    assert clinician.get("/smart/launch", {"iss": iss, "launch": "abc"}).status_code == 502
