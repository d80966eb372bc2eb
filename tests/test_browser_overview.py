"""In a real browser: the auditor's overview (loggkontroll, oversikt) with data and with
an empty period, checked with axe-core; the charts are SVG drawn on the server, so they
are there under the portal's CSP with no script at all. A clinician's row leads to the log
search for that clinician, by POST.

The same Chromium, fixtures and axe check as tests/test_browser.py; logged in by session
cookie (the identity provider's login is that file's business)."""

from __future__ import annotations

import datetime
import re

from django.test import Client

from pjd_portal.access.models import Basis
from pjd_portal.auditlog import events as kinds
from tests.builders import T0, hospital_doctor, login, record
from tests.test_browser import (  # noqa: F401 (fixtures, used by name)
    ROOT,
    _axe_violations,
    _sync_orm_beside_playwright,
    browser_type_launch_args,
    pytestmark,
)

OVERVIEW = "/forvaltning/loggkontroll/oversikt/"


def _as_auditor(live_server, world, context) -> None:
    client = login(Client(), world.auditor, world.hospital)
    context.add_cookies(
        [{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": live_server.url}]
    )


def _seed(world):
    doctor = hospital_doctor(world)
    for hours in range(3):
        record(
            world,
            T0 + datetime.timedelta(hours=hours),
            kinds.BASIS_STATED.name,
            user=doctor,
            org=world.hospital,
            patient=world.patient,
            basis=Basis.AKUTT,
        )
    record(
        world,
        T0 + datetime.timedelta(days=1, hours=9),  # 21:00 in Oslo: outside hours
        kinds.PATIENT_LOOKUP.name,
        user=doctor,
        org=world.hospital,
        patient=world.other_patient,
    )
    return doctor


def test_the_overview_with_data_and_empty_passes_axe(live_server, world, page, context):
    doctor = _seed(world)
    _as_auditor(live_server, world, context)
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)

    page.goto(f"{live_server.url}{OVERVIEW}?date_from=2026-06-25&date_to=2026-07-05")
    assert page.get_by_role("heading", name="Oversikt over loggkontroll").is_visible()
    assert page.get_by_test_id("overview-total").inner_text() == "Hendelser i perioden: 4"
    for name in (
        "Hendelser per dag",
        "Hendelser per hendelsestype",
        "Flaggede hendelser per risikosignal",
        "Åpne saker i kontrollkøen per status",
        "Helsepersonell med flest flaggede hendelser",
    ):
        assert page.get_by_role("img", name=name).is_visible(), name
        assert page.get_by_role("table", name=name).is_visible(), name
    assert page.locator("[data-testid=chart-per-day] rect").count() == 11
    assert _axe_violations(page) == []
    assert not [e for e in errors if "Content Security Policy" in e], errors
    page.screenshot(path=str(ROOT / "test-results" / "log-overview.png"), full_page=True)

    # The clinician's row: the log search for them over the period, by POST.
    # Each button is named by its clinician too (Chromium reads "Søk i loggen : <name>").
    page.get_by_role("button", name=re.compile(f"^Søk i loggen ?: {doctor.display_name}$")).click()
    page.wait_for_selector("[data-testid=log-search-results]")
    assert "clinician" not in page.url and doctor.hpr_number not in page.url
    assert page.locator("[data-testid=log-row]").count() == 4

    # An empty period: the same page, zeros and plain messages, still no violations.
    page.goto(f"{live_server.url}{OVERVIEW}")
    page.get_by_label("Fra dato").fill("2025-01-01")
    page.get_by_label("Til dato (inkludert)").fill("2025-01-31")
    page.get_by_role("button", name="Vis").click()
    page.wait_for_url("**date_from=2025-01-01**")
    assert page.get_by_test_id("overview-total").inner_text() == "Hendelser i perioden: 0"
    assert page.get_by_test_id("empty-clinicians").is_visible()
    assert page.locator("[data-testid=chart-per-day] rect").count() == 31
    assert _axe_violations(page) == []

    # A bad period: a clear message, no charts.
    page.get_by_label("Til dato (inkludert)").fill("2024-12-01")
    page.get_by_role("button", name="Vis").click()
    page.wait_for_selector("[data-testid=overview-error]")
    assert page.locator("svg.overview-svg").count() == 0
    assert _axe_violations(page) == []
