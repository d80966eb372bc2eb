"""In a real browser: log in through the dev identity provider's login page as `fastlege`,
look up a list patient, state the basis, open a PDF and see it.

Debian's Chromium drives it (Playwright cannot download browsers here). The dev identity
provider (devidp/, the npm package oidc-provider) runs as a subprocess on a fixed port,
because redirect URIs are matched exactly.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
import requests

from pjd_portal.accounts.keys import ensure_client_key
from tests.conftest import LIST_PATIENT_ID, add_document

ROOT = Path(__file__).resolve().parent.parent
PORTAL_ADDRESS = "127.0.0.1:8765"
IDP_PORT = 9911
IDP = f"http://127.0.0.1:{IDP_PORT}"
CHROMIUM = "/usr/bin/chromium"

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


def _wait_for(url: str, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up")


@pytest.fixture(scope="module")
def client_key(tmp_path_factory):
    folder = tmp_path_factory.mktemp("client-key")
    ensure_client_key(folder / "key.pem", folder / "jwks.json")
    return folder


@pytest.fixture(scope="module")
def devidp(client_key, tmp_path_factory):
    node = shutil.which("node")
    assert node, "Node.js is needed for the dev identity provider"
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", IDP_PORT)) != 0, f"port {IDP_PORT} is taken"
    env = {
        **os.environ,
        "IDP_PORT": str(IDP_PORT),
        "RP_BASES": f"http://{PORTAL_ADDRESS}",
        "IDP_CLIENT_JWKS": str(client_key / "jwks.json"),
        "IDP_SIGNING_KEY_FILE": str(tmp_path_factory.mktemp("idp") / "signing-key.json"),
    }
    proc = subprocess.Popen(
        [node, "server.mjs"], cwd=ROOT / "devidp", env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        _wait_for(f"{IDP}/.well-known/openid-configuration")
        yield json.loads(requests.get(f"{IDP}/.well-known/openid-configuration", timeout=5).text)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture
def portal(settings, live_server, devidp, client_key, world):
    assert live_server.url == f"http://{PORTAL_ADDRESS}", live_server.url
    settings.OIDC_ISSUER = devidp["issuer"]
    settings.OIDC_OP_AUTHORIZATION_ENDPOINT = devidp["authorization_endpoint"]
    settings.OIDC_OP_TOKEN_ENDPOINT = devidp["token_endpoint"]
    settings.OIDC_OP_JWKS_ENDPOINT = devidp["jwks_uri"]
    settings.OIDC_OP_LOGOUT_ENDPOINT = devidp["end_session_endpoint"]
    settings.OIDC_RP_CLIENT_PRIVATE_KEY_FILE = client_key / "key.pem"
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
