"""The consultation in a real browser, counted: from the front page to an open PDF in three
interactions (lookup, confirm patient and basis, open), the same patient again in two, a
login in two; each step's server time printed (from the portal's Server-Timing header; the
benchmark is where timings are judged). axe-core on every page and state of the path, and a
walk by keyboard alone to an open document.

The README's screenshots come from here: set PJD_UPDATE_SCREENSHOTS=1 to write them into
docs/screenshots/ (otherwise into test-results/ only, so that a test run leaves the tree as it
found it).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import Any

from pjd_portal.auditlog.models import AccessEvent
from pjd_portal.patients.models import PrivacyChoice, PrivacyChoiceKind
from tests.builders import LIST_PATIENT_ID, OTHER_PATIENT_ID, add_document
from tests.test_browser import (  # noqa: F401  (fixtures: pytest finds them by name here)
    EPIKRISE_TITLE,
    IDP,
    ROOT,
    _axe_violations,
    _sync_orm_beside_playwright,
    browser_type_launch_args,
    epikrise_pdf,
    portal,
    pytestmark,
)

SCREENSHOTS = ROOT / "docs" / "screenshots"


class Walk:
    """Counts the clinician's interactions (a click or an Enter that sends something to the
    portal) and sums the portal's own time over every answer each one caused."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.steps: list[tuple[str, float]] = []
        self._durations: list[float] = []
        page.on("response", self._answer)

    def _answer(self, response: Any) -> None:
        found = re.search(r"app;dur=([\d.]+)", response.headers.get("server-timing", ""))
        if found and response.request.resource_type in ("document", "xhr", "fetch"):
            self._durations.append(float(found.group(1)))

    def step(
        self, name: str, act: Callable[[], None], arrived: Callable[[], None], *, framed: bool = False
    ) -> None:
        """One interaction. `framed`: it opens a document in the viewer, whose frame then
        asks for the document itself: wait for that answer too (the PDF viewer keeps the
        network busy, so "network idle" never comes)."""

        self._durations = []
        if framed:
            with self.page.expect_response(
                lambda r: (
                    r.request.resource_type == "document" and "/dokument/" in r.url and "/vis/" not in r.url
                )
            ):
                act()
        else:
            act()
        arrived()
        self.page.wait_for_load_state("load")
        self.steps.append((name, sum(self._durations)))

    def count(self, prefix: str) -> int:
        return sum(1 for name, _ in self.steps if name.startswith(prefix))

    def report(self) -> str:
        return "\n".join(f"  {name:<40} {ms:7.1f} ms server time" for name, ms in self.steps)


def _shoot(page: Any, name: str) -> None:
    (ROOT / "test-results").mkdir(exist_ok=True)
    page.screenshot(path=str(ROOT / "test-results" / f"{name}.png"), full_page=True)
    if os.environ.get("PJD_UPDATE_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def _opened(page: Any, expected: int) -> int:
    """The granted opens logged, once the pane's frame has asked for its document (the frame
    loads after the pane: wait for it, up to five seconds)."""

    found = 0
    for _ in range(50):
        found = AccessEvent.objects.filter(event_type="document_open", outcome="granted").count()
        if found >= expected:
            break
        page.wait_for_timeout(100)
    return found


def _no_axe_violations(page: Any, state: str) -> None:
    assert _axe_violations(page) == [], state


def _documents(world: Any) -> None:
    add_document(world, title=EPIKRISE_TITLE, data=epikrise_pdf(), days_ago=12)
    add_document(world, title="Prøvesvar hematologi", category="C00-1", days_ago=40)
    for years in (2, 3):  # henvisninger older than their window: not shown, and said so
        add_document(world, title="Gammel henvisning", category="I00-1", days_ago=365 * years)


def _log_in(walk: Walk, page: Any, portal: str) -> None:
    page.goto(f"{portal}/")
    walk.step(
        "login: the portal's button",
        lambda: page.get_by_test_id("login").click(),
        lambda: page.wait_for_url(f"{IDP}/**"),
    )
    page.fill("#username", "fastlege")
    page.fill("#password", "test")
    walk.step(
        "login: the provider's submit",
        lambda: page.get_by_role("button", name="Logg inn").click(),
        lambda: page.wait_for_url(f"{portal}/"),
    )


def test_from_the_lookup_to_an_open_pdf_in_three_interactions(portal, world, page, capsys):
    _documents(world)
    walk = Walk(page)
    _log_in(walk, page, portal)
    assert walk.count("login") == 2
    _no_axe_violations(page, "front page")

    # 1. The lookup: the cursor is in the field already.
    assert page.evaluate("document.activeElement.name") == "national_id"
    page.keyboard.type(LIST_PATIENT_ID)
    walk.step(
        "consultation: lookup",
        lambda: page.keyboard.press("Enter"),
        lambda: page.wait_for_url("**/grunnlag/"),
    )
    assert LIST_PATIENT_ID not in page.url
    banner = page.get_by_test_id("patient-banner")
    assert "Ingrid Testesen" in banner.inner_text() and LIST_PATIENT_ID[:6] in banner.inner_text()
    assert page.get_by_test_id("basis-option-UNNTAK").is_checked()  # the default for a list patient
    _no_axe_violations(page, "patient card")
    _shoot(page, "patient-card")

    # 2. Confirm patient and basis.
    walk.step(
        "consultation: confirm patient and basis",
        lambda: page.get_by_test_id("basis-submit").click(),
        lambda: page.wait_for_selector("[data-testid=document-row]"),
    )
    assert "2 henvisninger eldre enn 1 år vises ikke" in page.get_by_test_id("document-list").inner_text()
    _no_axe_violations(page, "document list")
    _shoot(page, "document-list")

    # 3. Open: the viewer beside the list, the PDF in it.
    walk.step(
        "consultation: open",
        page.get_by_test_id("open-document").first.click,
        lambda: page.wait_for_selector("[data-testid=document-viewer]"),
        framed=True,
    )
    assert (
        "Epikrise etter innleggelse for lungebetennelse"
        in page.get_by_test_id("document-viewer").inner_text()
    )
    assert _opened(page, 1) == 1
    _no_axe_violations(page, "viewer")
    _shoot(page, "document-viewer")
    assert walk.count("consultation") == 3

    # The same patient again, within the basis: the banner's field, then open.
    page.get_by_test_id("banner-lookup").locator("input[name=national_id]").fill(LIST_PATIENT_ID)
    walk.step(
        "again: lookup",
        lambda: page.get_by_test_id("banner-lookup").locator("button").click(),
        lambda: page.wait_for_selector("[data-testid=document-row]"),
    )
    walk.step(
        "again: open",
        page.get_by_test_id("open-document").first.click,
        lambda: page.wait_for_selector("[data-testid=document-viewer]"),
        framed=True,
    )
    assert walk.count("again") == 2
    with capsys.disabled():
        print("\nclinician path, interactions and server time:\n" + walk.report())


def test_every_page_state_of_the_path_passes_axe(portal, world, page):
    _documents(world)
    walk = Walk(page)
    _log_in(walk, page, portal)

    # A patient who is not on the list: the emergency opening's two steps.
    page.fill("#id_national_id", OTHER_PATIENT_ID)
    page.keyboard.press("Enter")
    page.wait_for_url("**/grunnlag/")
    page.get_by_test_id("basis-option-AKUTT").check()
    page.get_by_test_id("basis-submit").click()
    page.wait_for_selector("[data-testid=situation-error]")
    _no_axe_violations(page, "emergency step 1 with errors")
    page.get_by_label("Bevisstløs eller sterkt nedsatt bevissthet").check()
    page.fill("#id_reason", "Pasienten er bevisstløs etter fall og kan ikke samtykke.")
    page.get_by_test_id("basis-submit").click()
    page.wait_for_selector("[data-testid=akutt-confirm]")
    _no_axe_violations(page, "emergency confirmation")
    page.get_by_test_id("akutt-confirm-submit").click()
    page.wait_for_selector("[data-testid=document-list]")
    _no_axe_violations(page, "list under an emergency basis")

    # A reservation: the refusal page.
    PrivacyChoice.objects.create(patient=world.patient, kind=PrivacyChoiceKind.RESERVATION)
    page.get_by_test_id("banner-lookup").locator("input[name=national_id]").fill(LIST_PATIENT_ID)
    page.get_by_test_id("banner-lookup").locator("button").click()
    page.wait_for_selector("[data-testid=access-refused]")
    _no_axe_violations(page, "refusal page")
    _shoot(page, "refusal")

    # A restriction: the FORHØYET step.
    PrivacyChoice.objects.all().delete()
    PrivacyChoice.objects.create(patient=world.patient, kind=PrivacyChoiceKind.RESTRICTION)
    page.fill("#refused-national-id", LIST_PATIENT_ID)
    page.get_by_test_id("new-patient").click()
    page.wait_for_url("**/forhoyet/")
    _no_axe_violations(page, "elevated step")


def test_a_keyboard_alone_reaches_an_open_document(portal, world, page):
    _documents(world)
    walk = Walk(page)
    _log_in(walk, page, portal)

    def tab_to(selector: str) -> None:
        for _ in range(60):
            page.keyboard.press("Tab")
            if page.evaluate("(s) => document.activeElement.matches(s)", selector):
                return
        raise AssertionError(f"Tab never reached {selector}")

    page.keyboard.type(LIST_PATIENT_ID)
    page.keyboard.press("Enter")
    page.wait_for_url("**/grunnlag/")
    tab_to("[data-testid=basis-submit]")
    page.keyboard.press("Enter")
    page.wait_for_selector("[data-testid=document-row]")
    tab_to("[data-testid=open-document]")
    page.keyboard.press("Enter")
    page.wait_for_selector("[data-testid=document-viewer]")
    assert _opened(page, 1) == 1
