"""In a real browser: log in through the dev identity provider's login page as `fastlege`,
look up a list patient, state the basis, open a PDF and see it.

Debian's Chromium drives it (Playwright cannot download browsers here). The dev identity
provider (devidp/, the npm package oidc-provider) runs as a subprocess on a fixed port,
because redirect URIs are matched exactly.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import DEVIDP_PORT, LIST_PATIENT_ID, LIVE_SERVER_ADDRESS, add_document

ROOT = Path(__file__).resolve().parent.parent
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
    import datetime

    from pjd_portal.documents import demo_content

    spec = demo_content.DemoDocumentSpec(
        category="A00-1",
        type_code="A03-2",
        type_name="Epikrise",
        title="Epikrise etter innleggelse for lungebetennelse",
        service_date=datetime.date.today() - datetime.timedelta(days=12),
        author="Overlege Anne Berg",
        institution="Oslo universitetssykehus HF",
        department="Medisinsk klinikk",
        patient_name="Ingrid Testesen",
        patient_birth_date=datetime.date(1971, 4, 3),
        seed=1,
    )
    pdf = demo_content.render_pdf(spec)
    doc = add_document(world, title=spec.title, data=pdf)

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
    href = link.get_attribute("href")
    assert href and str(doc.document_id) in href

    # Open the PDF as the clinician would; Chromium shows it in its PDF viewer.
    with page.context.expect_page() as popup_info:
        link.click()
    popup = popup_info.value
    popup.wait_for_load_state()
    response = page.request.get(f"{portal}{href}")
    assert response.status == 200
    assert response.headers["content-type"] == "application/pdf"
    assert response.body() == pdf
    assert popup.url.endswith(href)
    assert response.headers["content-security-policy"].startswith("sandbox")
    # Chromium's PDF viewer is an extension frame inside the tab: it is there only when the
    # browser displays the PDF rather than downloading or blocking it.
    popup.wait_for_timeout(1500)
    assert any(f.url.startswith("chrome-extension://") for f in popup.frames), [f.url for f in popup.frames]
    popup.screenshot(path=str(ROOT / "test-results" / "pdf-open.png"))

    from pjd_portal.audit.models import AccessEvent

    opens = AccessEvent.objects.filter(event_type="document_open", document=doc)
    assert opens.count() == 2  # the browser's open and the check above
    assert AccessEvent.objects.filter(event_type="login", actor_user_id=world.fastlege.pk).count() == 1

    # Log out (here and at the provider); the back button then shows no patient data.
    popup.close()
    page.get_by_role("button", name="Logg ut").click()
    page.wait_for_url(f"{IDP}/**")
    page.get_by_role("button", name="Logg ut").click()  # the provider's confirmation
    page.wait_for_url(f"{portal}/logget-ut/")
    for _ in range(3):
        page.go_back()
        page.wait_for_load_state()
        html = page.content()
        assert "Ingrid" not in html and "Testesen" not in html and LIST_PATIENT_ID not in html, page.url
    assert AccessEvent.objects.filter(event_type="logout", actor_user_id=world.fastlege.pk).count() == 1
