"""In Chromium: the launch from the EPJ, one click from the EPJ to the document list.

The EPJ is the dev identity provider's test EPJ page (devidp/epj.mjs): it gets a DPoP-bound
token with the attest as the EPJ client, asks the portal's `POST /api/launch` for a code,
and answers the browser with the form that POSTs code and verifier to `/start/`. The
clinician is logged in with HelseID already (the EPJ's own login, here an earlier login
through the portal), but has no portal session: the portal logs them in silently.
"""

from __future__ import annotations

from typing import Any

import pytest

from pjd_portal.access.models import AccessAttest
from tests.builders import LIST_PATIENT_ID, OTHER_PATIENT_ID, add_document, events
from tests.test_browser import (  # noqa: F401 - the fixtures, shared with the other browser tests
    IDP,
    _axe_violations,
    _sync_orm_beside_playwright,
    browser_type_launch_args,
    pytestmark,
)


def _log_in_with_helseid_then_close_the_portal(page: Any, base: str) -> None:
    page.goto(f"{base}/")
    page.get_by_test_id("login").click()
    page.wait_for_url(f"{IDP}/**")
    page.fill("#username", "fastlege")
    page.fill("#password", "test")
    page.get_by_role("button", name="Logg inn").click()
    page.wait_for_url(f"{base}/")
    # The portal's session is gone (a closed browser tab, an expiry); HelseID's is not.
    page.context.clear_cookies(name="sessionid")


def _launch(page: Any, patient: str, *, scenario: str = "one") -> list[str]:
    """The EPJ's page, the patient chosen, one click; the requests the browser made after it."""

    page.goto(f"{IDP}/epj")
    page.select_option("#user", "fastlege")
    page.fill("#patient_other", patient)
    if scenario != "one":
        page.get_by_text("Avansert: testscenario").click()
        page.select_option("#scenario", scenario)
    seen: list[str] = []
    page.on("request", lambda request: seen.append(f"{request.method} {request.url}"))
    page.get_by_role("button", name="Åpne i PJD").click()
    return seen


@pytest.fixture
def epj_portal(live_server: Any, use_devidp: Any, world: Any) -> str:
    return str(live_server.url)


def test_one_click_in_the_epj_lands_on_the_patients_document_list(
    epj_portal: str, world: Any, page: Any
) -> None:
    portal = epj_portal
    add_document(world, title="Epikrise fra EPJ-testen", days_ago=3)
    _log_in_with_helseid_then_close_the_portal(page, portal)
    seen = _launch(page, LIST_PATIENT_ID)
    page.wait_for_selector("[data-testid=document-row]")
    assert page.url.startswith(f"{portal}/pasient/")
    assert page.get_by_test_id("patient-banner").inner_text().startswith("Ingrid Testesen")
    assert "Epikrise fra EPJ-testen" in page.get_by_test_id("document-list").inner_text()
    # The one click was all: no login form was posted, and no national id was in any URL.
    assert not [r for r in seen if r.startswith("POST") and "/interaction/" in r], seen
    assert all(LIST_PATIENT_ID not in r for r in seen), seen
    assert any(r.startswith(f"POST {portal}/start/") for r in seen), seen
    attest = AccessAttest.objects.get()
    assert (attest.channel, attest.basis, attest.client_id) == ("epj_launch", "UNNTAK", "pjd-test-epj")
    assert attest.decision_ref.startswith("test-epj-")
    (listed,) = events("document_list")
    assert listed.details["decision_ref"] == attest.decision_ref
    assert _axe_violations(page) == []


@pytest.mark.parametrize("scenario", ["two", "none"])
def test_an_attest_for_two_patients_or_none_is_a_clear_page(
    epj_portal: str, world: Any, page: Any, scenario: str
) -> None:
    portal = epj_portal
    _log_in_with_helseid_then_close_the_portal(page, portal)
    _launch(page, OTHER_PATIENT_ID, scenario=scenario)
    refusal = page.get_by_test_id("launch-refused")
    refusal.wait_for()
    assert refusal.get_attribute("data-reason") == "attest_patient_count"
    assert "én pasient om gangen" in refusal.inner_text()
    assert not AccessAttest.objects.exists()
    assert [e.reason_code for e in events("epj_launch_refused")] == ["attest_patient_count"]
    assert _axe_violations(page) == []
