"""In a real browser: log in through the dev identity provider's login page as `fastlege`,
look up a list patient, state the basis, open a PDF and see it.

Debian's Chromium drives it (Playwright cannot download browsers here). The dev identity
provider (devidp/, the npm package oidc-provider) runs as a subprocess on a fixed port,
because redirect URIs are matched exactly.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Error as PlaywrightError

from tests.builders import LIST_PATIENT_ID, add_document
from tests.conftest import DEVIDP_PORT, LIVE_SERVER_ADDRESS

ROOT = Path(__file__).resolve().parent.parent
EPIKRISE_TITLE = "Epikrise etter innleggelse for lungebetennelse"


def epikrise_pdf() -> bytes:
    """A demo epikrise of the list patient, twelve days old, as the demo renders one."""

    import datetime

    from pjd_portal.documents import demo_content

    spec = demo_content.DemoDocumentSpec(
        category="A00-1",
        type_code="A03-2",
        type_name="Epikrise",
        title=EPIKRISE_TITLE,
        service_date=datetime.date.today() - datetime.timedelta(days=12),
        author="Overlege Anne Berg",
        institution="Oslo universitetssykehus HF",
        department="Medisinsk klinikk",
        patient_name="Ingrid Testesen",
        patient_birth_date=datetime.date(1971, 4, 3),
        seed=1,
    )
    return demo_content.render_pdf(spec)


IDP = f"http://127.0.0.1:{DEVIDP_PORT}"
CHROMIUM = "/usr/bin/chromium"

PORTAL_ADDRESS = LIVE_SERVER_ADDRESS
# pytest-django's live server reads this when the fixture starts: a fixed port, because
# the identity provider only redirects to registered URIs.
os.environ.setdefault("DJANGO_LIVE_TEST_SERVER_ADDRESS", PORTAL_ADDRESS)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

if not Path(CHROMIUM).exists():
    if os.environ.get("CI") == "true":
        raise RuntimeError("CI needs Debian's chromium at /usr/bin/chromium (.ci/run installs it)")
    pytestmark.append(
        pytest.mark.skip(reason="Debian's chromium is not installed (apt-get install chromium)")
    )


@pytest.fixture(scope="module", autouse=True)
def _sync_orm_beside_playwright():
    # Playwright's sync API keeps an event loop running in this thread, and Django then
    # refuses ORM calls (the database set-up and flush around each test) as "async unsafe".
    # They are not: nothing else runs on that loop. Module-scoped, so it brackets the
    # function-scoped database fixtures and is undone after this module.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    yield
    if previous is None:
        del os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"]
    else:
        os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    return {
        **browser_type_launch_args,
        "executable_path": CHROMIUM,
        "headless": True,
        "args": [
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ],
    }


@pytest.fixture
def portal(live_server, use_devidp, world):
    assert live_server.url == f"http://{PORTAL_ADDRESS}", live_server.url
    return live_server.url


def test_fastlege_logs_in_looks_up_a_list_patient_and_opens_a_pdf(portal, world, page):
    pdf = epikrise_pdf()
    doc = add_document(world, title=EPIKRISE_TITLE, data=pdf, days_ago=12)

    page.goto(f"{portal}/")
    page.get_by_test_id("login").click()
    # The identity provider's own login page.
    page.wait_for_url(f"{IDP}/**")
    page.fill("#username", "fastlege")
    page.fill("#password", "test")
    page.get_by_role("button", name="Logg inn").click()

    page.wait_for_url(f"{portal}/")
    assert page.get_by_test_id("current-user").inner_text() == "Kari Fastlege"
    page.fill("#id_national_id", LIST_PATIENT_ID)
    page.get_by_role("button", name="Slå opp").click()

    page.wait_for_url("**/grunnlag/")
    assert LIST_PATIENT_ID not in page.url
    page.get_by_label("Unntak fra samtykke").check()
    page.get_by_role("button", name="Fortsett").click()

    page.wait_for_selector("[data-testid=document-row]")
    assert page.get_by_test_id("patient-banner").inner_text().startswith("Ingrid Testesen")
    link = page.get_by_test_id("open-document").first
    # Open the PDF as the clinician would: in the viewer above the list, in Chromium's PDF
    # viewer inside the pane's frame.
    link.click()
    viewer = page.get_by_test_id("document-viewer")
    viewer.wait_for()
    href = page.get_by_test_id("viewer-frame").get_attribute("src")
    assert href and str(doc.document_id) in href
    assert page.get_by_test_id("document-list").is_visible()  # the list stays
    response = page.request.get(f"{portal}{href}")
    assert response.status == 200
    assert response.headers["content-type"] == "application/pdf"
    assert response.body() == pdf
    assert response.headers["content-security-policy"].startswith("sandbox")
    # Chromium's PDF viewer is an extension frame: it is there only when the browser
    # displays the PDF rather than downloading or blocking it.
    page.wait_for_timeout(1500)
    assert any(f.url.startswith("chrome-extension://") for f in page.frames), [f.url for f in page.frames]
    page.screenshot(path=str(ROOT / "test-results" / "pdf-open.png"))

    from pjd_portal.auditlog.models import AccessEvent

    opens = AccessEvent.objects.filter(event_type="document_open", document=doc)
    assert opens.count() == 2  # the browser's open and the check above
    assert AccessEvent.objects.filter(event_type="login", actor_user_id=world.fastlege.pk).count() == 1

    # Log out (here and at the provider); the back button then shows no patient data.
    page.get_by_role("button", name="Logg ut").click()  # once: the provider does not ask again
    page.wait_for_url(f"{portal}/logget-ut/")
    for _ in range(3):
        page.go_back()
        page.wait_for_load_state()
        html = page.content()
        assert "Ingrid" not in html and "Testesen" not in html and LIST_PATIENT_ID not in html, page.url
    assert AccessEvent.objects.filter(event_type="logout", actor_user_id=world.fastlege.pk).count() == 1


# --- logout: one click ends the portal's and the provider's session -------------------------


def _log_in_at_the_provider(page, portal: str, username: str = "fastlege") -> None:
    page.goto(f"{portal}/")
    page.get_by_test_id("login").click()
    page.wait_for_url(f"{IDP}/**")
    page.fill("#username", username)
    page.fill("#password", "test")
    page.get_by_role("button", name="Logg inn").click()
    page.wait_for_url(f"{portal}/")


def _watch_logout(page) -> tuple[list[str], list[str]]:
    """The main frame's addresses, and the provider's pages as served, from now on."""

    urls: list[str] = []
    provider_pages: list[str] = []
    page.on("framenavigated", lambda frame: urls.append(frame.url) if frame == page.main_frame else None)

    def keep(response) -> None:
        if response.url.startswith(IDP) and "text/html" in response.headers.get("content-type", ""):
            try:
                provider_pages.append(response.text())
            except PlaywrightError:  # the page went on (auto-submitted) before its body was read
                provider_pages.append("")  # a question would have stopped it there

    page.on("response", keep)
    return urls, provider_pages


def test_one_click_logs_out_here_and_at_the_provider(portal, world, page):
    from pjd_portal.auditlog.models import AccessEvent

    _log_in_at_the_provider(page, portal)
    urls, provider_pages = _watch_logout(page)
    requests_sent: list[Any] = []

    def sent(request: Any) -> None:  # Playwright wraps handlers: a bound builtin will not do
        requests_sent.append(request)

    page.on("request", sent)

    page.get_by_role("button", name="Logg ut").click()
    page.wait_for_url(f"{portal}/logget-ut/")

    # Through the provider and back without a question: no "are you sure" page served.
    assert any(u.startswith(IDP) for u in urls), urls
    assert provider_pages and not any("Vil du logge ut?" in p for p in provider_pages)
    # The id token went to the provider in a POST body, never in an address.
    (end_session,) = [r for r in requests_sent if r.url.split("?")[0].rstrip("/").endswith("/session/end")]
    assert end_session.method == "POST" and "?" not in end_session.url
    assert "id_token_hint=" in (end_session.post_data or "")
    for address in urls + [r.url for r in requests_sent]:
        assert "id_token_hint" not in address and "eyJ" not in address, address
    assert page.get_by_role("heading", name="Du er logget ut").is_visible()
    assert _axe_violations(page) == []
    assert AccessEvent.objects.filter(event_type="logout", actor_user_id=world.fastlege.pk).count() == 1

    # The provider's session has ended too: a new login asks for the password again.
    page.get_by_role("link", name="Logg inn igjen").click()
    page.get_by_test_id("login").click()
    page.wait_for_url(f"{IDP}/**")
    assert page.locator("#password").is_visible()


def test_without_the_script_the_logout_page_has_a_button_that_does_the_same(portal, world, page):
    """Where logout.js does not run: the portal's page waits for one more click, then the
    provider ends its session without asking."""

    _log_in_at_the_provider(page, portal)
    page.route(
        "**/static/js/logout.js",
        lambda route: route.fulfill(status=200, body="", content_type="text/javascript"),
    )
    page.get_by_role("button", name="Logg ut").click()
    page.wait_for_url(f"{portal}/logg-ut/")
    assert page.get_by_role("heading", name="Logger ut").is_visible()
    assert _axe_violations(page) == []
    page.screenshot(path=str(ROOT / "test-results" / "logging-out.png"), full_page=True)

    page.get_by_role("button", name="Logg ut av HelseID").click()
    page.wait_for_url(f"{portal}/logget-ut/")
    page.goto(f"{portal}/")
    page.get_by_test_id("login").click()
    page.wait_for_url(f"{IDP}/**")
    assert page.locator("#password").is_visible()


# --- remote sources: the list never waits on the slowest source ------------------------------

AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"


def _axe_violations(page) -> list[str]:
    """axe-core's WCAG 2.x A/AA rules on the page as it is now: the violations' ids."""

    if not AXE.exists():
        raise RuntimeError("node_modules/axe-core is missing: run `make setup`")
    # Evaluated through the DevTools protocol: the portal's CSP (script-src 'self') rightly
    # refuses an injected <script>, and it stays on for the test.
    page.evaluate(AXE.read_text(encoding="utf-8"))
    result = page.evaluate(
        "async () => (await axe.run(document, {runOnly: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']}))"
        ".violations.map(v => v.id + ': ' + v.nodes.map(n => n.target.join(' ')).join(', '))"
    )
    return list(result)


@pytest.fixture
def remote_sources(world, settings, tmp_path):
    """Two MHD sources for the list patient: Helse Bergen HF answers, UNN HF hangs."""

    from django.core.cache import cache

    from pjd_portal.accounts.models import Organisation, OrganisationKind
    from pjd_portal.documents.models import DocumentSource
    from pjd_portal.documents.sources.breaker import reset_breakers
    from tests import test_remote_sources as remote_tests
    from tests.fhirserver import start as start_fhir_server

    servers = {}
    try:
        for orgnr, name, documents in (
            (remote_tests.BERGEN, "Helse Bergen HF", remote_tests.BERGEN_DOCUMENTS),
            (remote_tests.NORD, "UNN HF", remote_tests.NORD_DOCUMENTS),
        ):
            seed = remote_tests._seed_file(tmp_path / f"{orgnr}.json", documents)
            servers[orgnr] = start_fhir_server(tmp_path, orgnr, seed_file=seed)
            org = Organisation.objects.create(orgnr=orgnr, name=name, kind=OrganisationKind.HELSEFORETAK)
            DocumentSource.objects.create(organisation=org, name=name, kind="mhd")
        servers[remote_tests.NORD].set_fault("slow", delay_ms=10000)
        settings.MHD_SOURCES = {o: {"base_url": s.base_url, "token": False} for o, s in servers.items()}
        settings.DOCUMENT_SOURCE_CONNECT_TIMEOUT = 0.5
        settings.DOCUMENT_SOURCE_READ_TIMEOUT = 1.0
        settings.DOCUMENT_SOURCE_SEARCH_BUDGET = 4.0
        reset_breakers()
        cache.clear()
        yield servers
    finally:
        for server in servers.values():
            server.stop()
        reset_breakers()
        cache.clear()


def _logged_in_with_a_list(live_server, world, context) -> str:
    """A fastlege session with the list patient looked up and UNNTAK stated, in `context`
    (logged in directly: the identity provider's login is the first test's business)."""

    from django.test import Client

    from tests.builders import login, lookup_and_attest

    client = login(Client(), world.fastlege, world.gp_office)
    handle = lookup_and_attest(client)
    context.add_cookies(
        [{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": live_server.url}]
    )
    return f"{live_server.url}/pasient/{handle}/"


def test_a_hanging_source_does_not_hold_the_list(live_server, world, remote_sources, page, browser):
    import time

    from tests.builders import add_document

    add_document(world, title="Lokal epikrise fra Oslo", days_ago=1)
    _logged_in_with_a_list(live_server, world, page.context)
    rows = page.get_by_test_id("document-row")
    # Warm, as a portal in use is: templates compiled, styles cached, the FHIR models built
    # (fhir.resources builds its validators on first use, some 100 ms).
    page.goto(f"{live_server.url}/")
    from pjd_portal.documents.sources.mhd import MhdSourceClient
    from pjd_portal.documents.sources.tokens import StaticTokenProvider
    from tests.builders import OTHER_PATIENT_ID
    from tests.test_remote_sources import ACCESS

    MhdSourceClient(
        source_id=0,
        name="warm-up",
        base_url=remote_sources["310400009"].base_url,
        token_provider=StaticTokenProvider(None),
        connect_timeout=1,
        read_timeout=1,
    ).search(OTHER_PATIENT_ID, access=ACCESS)

    def first_rows(address: str) -> tuple[float, float, float]:
        """(local rows, the answering source's rows) from navigation, and that source's rows
        from the page's arrival: what the portal does after the page, not the first list
        render's own server time."""

        started = time.monotonic()
        page.goto(address, wait_until="commit")
        arrived = time.monotonic()
        page.get_by_text("Lokal epikrise fra Oslo").wait_for()
        local = time.monotonic() - started
        page.get_by_text("Epikrise (bergen-epikrise)").wait_for()
        return local, time.monotonic() - started, time.monotonic() - arrived

    # Three loads, each a fresh lookup (nothing kept): the live server serves the page, its
    # styles and fonts and both sources' fragments from one Python process, so one load can
    # be slowed by the machine; the median is the figure.
    # Each load is a new login too: a handle is its own login's (a later login's session
    # does not find an earlier login's handles), so the last load gets a handle of its own.
    loads = [first_rows(_logged_in_with_a_list(live_server, world, page.context)) for _ in range(2)]
    url = _logged_in_with_a_list(live_server, world, page.context)
    started = time.monotonic()
    loads.append(first_rows(url))
    local_rows, other_source, _after = loads[-1]
    median_after_arrival = sorted(after for _local, _other, after in loads)[1]
    # The hanging source is still on its way: said so, while the others are readable.
    assert page.get_by_test_id("source-loading").inner_text().strip() == "Henter fra UNN HF…"
    assert not page.get_by_test_id("source-not-answering").is_visible()
    assert _axe_violations(page) == []
    page.screenshot(path=str(ROOT / "test-results" / "remote-list-loading.png"), full_page=True)

    page.get_by_test_id("source-not-answering").wait_for()
    warning = time.monotonic() - started
    print(
        "\nlist with one source hanging, three loads (local rows / the answering source's rows from "
        "navigation / the same from the page's arrival, ms): "
        + ", ".join(f"{a * 1000:.0f}/{b * 1000:.0f}/{c * 1000:.0f}" for a, b, c in loads)
        + f"; the hanging source's warning {warning * 1000:.0f} ms (last load)"
    )
    assert median_after_arrival < 1.0, loads
    assert page.get_by_test_id("source-not-answering").inner_text().startswith("UNN HF svarer ikke")
    assert not page.get_by_test_id("source-loading").count()
    assert rows.count() == 6  # the local one and Helse Bergen's five listable ones
    assert _axe_violations(page) == []
    page.screenshot(path=str(ROOT / "test-results" / "remote-list-answered.png"), full_page=True)

    # Sorting works over the merged list, from the answers kept (no source asked again).
    bergen = remote_sources["310400009"]
    searches = len([r for r in bergen.requests_seen() if r["method"] == "POST"])
    page.get_by_role("link", name="Tittel").click()  # a column's first click: descending
    page.wait_for_url("**sort=-title**")
    page.locator("th[aria-sort=descending]").wait_for()
    titles = [rows.nth(i).locator("td").nth(3).inner_text() for i in range(rows.count())]
    assert titles == sorted(titles, reverse=True) and "Lokal epikrise fra Oslo" in titles
    assert len(titles) == 6
    assert len([r for r in bergen.requests_seen() if r["method"] == "POST"]) == searches

    # Without JavaScript: the page asks again and waits, and shows the same merged answer.
    no_js = browser.new_context(java_script_enabled=False)
    try:
        fresh = _logged_in_with_a_list(live_server, world, no_js)  # a new lookup: nothing kept
        plain = no_js.new_page()
        plain.goto(fresh)
        plain.wait_for_url("**wait=1**")
        assert plain.get_by_text("Epikrise (bergen-epikrise)").is_visible()
        assert plain.get_by_text("Lokal epikrise fra Oslo").is_visible()
        assert plain.get_by_test_id("source-not-answering").is_visible()
    finally:
        no_js.close()


def test_a_source_whose_fragment_fails_says_so_instead_of_spinning(
    live_server, world, remote_sources, page, monkeypatch
):
    """The fragment answers 503 (its access event could not be written): the line says the
    source could not be asked, and the list does not spin or retry."""

    from pjd_portal.auditlog.services import AuditWriteFailed
    from pjd_portal.clinic import listing as views

    real = views.record_event_committed  # type: ignore[attr-defined]  # the name the sources' recorder calls, patched below

    def failing(event, **kwargs):
        if event.source_orgnr:
            raise AuditWriteFailed("test")
        return real(event, **kwargs)

    monkeypatch.setattr(views, "record_event_committed", failing)
    url = _logged_in_with_a_list(live_server, world, page.context)
    page.goto(url)
    from playwright.sync_api import expect

    failed = page.get_by_test_id("source-fetch-failed")
    # Both: Helse Bergen's at once, UNN's at its timeouts (and then no request is left
    # running into the next test's database).
    expect(failed).to_have_count(2, timeout=10_000)
    assert "Helse Bergen HF kunne ikke spørres akkurat nå" in page.content()
    assert not page.get_by_test_id("source-loading").count()
    assert _axe_violations(page) == []
