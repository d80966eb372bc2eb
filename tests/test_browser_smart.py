"""The SMART EHR launch in a real browser: the clinician logs in to the portal once, then
clicks "Start PJD" for a patient on the stand-in EHR's page (/ehr at the dev identity
provider) and lands on that patient's card in the portal, with no further question (the
provider's session is the one the portal login made). axe-core on the card and on a
refusal page."""

from __future__ import annotations

from typing import Any

from tests.builders import LIST_PATIENT_ID
from tests.conftest import SMART_FHIR_BASE
from tests.test_browser import (  # noqa: F401  (fixtures: pytest finds them by name here)
    IDP,
    _axe_violations,
    _sync_orm_beside_playwright,
    browser_type_launch_args,
    portal,
    pytestmark,
)


def test_start_pjd_in_the_ehr_lands_on_the_patient_card(
    portal: str, world: Any, settings: Any, smart_ehr: Any, page: Any
) -> None:
    server, _ = smart_ehr
    server.reset()
    settings.SMART_EHRS = {SMART_FHIR_BASE: {"name": "Test-EPJ", "client_id": "pjd-portal-smart"}}
    urls: list[str] = []
    page.on("request", lambda request: urls.append(request.url))

    page.goto(f"{portal}/")
    page.get_by_test_id("login").click()
    page.wait_for_url(f"{IDP}/**")
    page.fill("#username", "fastlege")
    page.fill("#password", "test")
    page.get_by_role("button", name="Logg inn").click()
    page.wait_for_url(f"{portal}/")

    page.goto(f"{IDP}/ehr")
    page.get_by_label("Portal").select_option(label=portal)
    page.get_by_role("button", name="Start PJD for Ingrid Testesen").click()
    page.wait_for_url("**/grunnlag/")
    assert page.get_by_test_id("patient-banner").inner_text().startswith("Ingrid Testesen")
    assert _axe_violations(page) == []
    for url in urls:
        assert LIST_PATIENT_ID not in url and world.fastlege.pid not in url, url

    page.goto(f"{portal}/smart/launch?iss=http://127.0.0.1:9/fhir/R4&launch=x")
    refusal = page.get_by_test_id("smart-refused")
    assert refusal.get_attribute("data-reason") == "smart_iss_unknown"
    assert _axe_violations(page) == []
