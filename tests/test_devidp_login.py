"""Login against the real dev identity provider (devidp/, npm oidc-provider), set up as
HelseID sets up a new client: private_key_jwt, PAR required, PKCE S256.

The portal's own code runs in the Django test client; the provider's login page is
driven over HTTP as a browser would, without a browser (test_browser.py does that).
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from html import unescape
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import pytest
import requests
from django.conf import settings
from django.test import Client

from pjd_portal.accounts.context import SESSION_ORG_KEY
from pjd_portal.auditlog import events as kinds
from pjd_portal.auditlog.models import AccessEvent
from tests.builders import World, provider_logout_form

pytestmark = pytest.mark.django_db(transaction=True)

CALLBACK = "http://testserver/oidc/callback/"


def _follow(session: requests.Session, response: requests.Response) -> tuple[requests.Response, str | None]:
    """Follow redirects inside the provider; stop when it sends the browser back to us."""

    for _ in range(10):
        if response.status_code not in (302, 303):
            return response, None
        location = urljoin(response.url, response.headers["Location"])
        if location.startswith("http://testserver/"):
            return response, location
        response = session.get(location, allow_redirects=False, timeout=5)
    raise AssertionError("too many redirects")


def _at_provider(
    portal: Client, username: str, button: str = "login", browser: requests.Session | None = None
) -> str:
    """Start at the portal, log in on the provider's page; return where it sends us back."""

    start = portal.get("/oidc/authenticate/")
    assert start.status_code == 302, start.content[:300]
    browser = browser or requests.Session()
    page, back = _follow(browser, browser.get(start["Location"], allow_redirects=False, timeout=5))
    assert back is None and page.status_code == 200, page.text[:300]
    form = re.search(r'<form[^>]*method="post"[^>]*action="([^"]+)"', page.text)
    assert form, page.text[:500]
    action = urljoin(page.url, unescape(form.group(1)))
    if button == "abort":
        action = action.rsplit("/", 1)[0] + "/abort"
    answer = browser.post(
        action, data={"username": username, "password": "test"}, allow_redirects=False, timeout=5
    )
    _, back = _follow(browser, answer)
    assert back is not None, "the provider did not send the browser back"
    return back


def _return_to_portal(portal: Client, back: str) -> Any:
    url = urlsplit(back)
    assert f"{url.scheme}://{url.netloc}{url.path}" == CALLBACK
    return portal.get(f"{url.path}?{url.query}")


def test_fastlege_logs_in_with_private_key_jwt_par_and_pkce(use_devidp: dict[str, Any], world: World) -> None:
    portal = Client()
    start = portal.get("/oidc/authenticate/")
    # PAR: the browser is sent with only the client id and a request_uri.
    query = parse_qs(urlsplit(start["Location"]).query)
    assert set(query) == {"client_id", "request_uri"}
    assert query["request_uri"][0].startswith("urn:ietf:params:oauth:request_uri:")

    response = _return_to_portal(portal, _at_provider(portal, "fastlege"))
    assert response.status_code == 302, response.content[:500]
    assert portal.session["_auth_user_id"] == str(world.fastlege.pk)
    assert portal.session[SESSION_ORG_KEY] == world.gp_office.pk
    home = portal.get("/").content.decode()
    assert 'data-testid="current-user">Kari Fastlege<' in home
    [login] = AccessEvent.objects.filter(event_type=kinds.LOGIN.name)
    assert login.actor_pid == world.fastlege.pid and login.organisation_orgnr == world.gp_office.orgnr


@pytest.mark.parametrize(
    ("username", "reason"), [("niva3", "security_level_too_low"), ("uten-hpr", "no_hpr_number")]
)
def test_provider_users_the_portal_must_refuse(
    use_devidp: dict[str, Any], world: World, username: str, reason: str
) -> None:
    portal = Client()
    response = _return_to_portal(portal, _at_provider(portal, username))
    assert response.status_code == 403
    assert f'data-reason="{reason}"' in response.content.decode()
    assert "_auth_user_id" not in portal.session
    assert [e.reason_code for e in AccessEvent.objects.filter(event_type=kinds.LOGIN_REFUSED.name)] == [
        reason
    ]


def test_cancelled_at_the_provider(use_devidp: dict[str, Any], world: World) -> None:
    portal = Client()
    response = _return_to_portal(portal, _at_provider(portal, "fastlege", button="abort"))
    assert response.status_code == 403
    assert 'data-reason="cancelled"' in response.content.decode()
    assert [e.reason_code for e in AccessEvent.objects.filter(event_type=kinds.LOGIN_REFUSED.name)] == [
        "provider_access_denied"
    ]


def test_the_provider_requires_par_for_the_portal(use_devidp: dict[str, Any]) -> None:
    config = use_devidp["config"]
    verifier = secrets.token_urlsafe(48)
    challenge = hashlib.sha256(verifier.encode()).digest()

    plain = requests.get(
        config["authorization_endpoint"],
        params={
            "client_id": settings.OIDC_RP_CLIENT_ID,
            "response_type": "code",
            "redirect_uri": CALLBACK,
            "scope": "openid",
            "state": "s",
            "nonce": "n",
            "code_challenge": base64.urlsafe_b64encode(challenge).rstrip(b"=").decode(),
            "code_challenge_method": "S256",
        },
        allow_redirects=False,
        timeout=5,
    )
    # Refused at once, or sent back with an error: either way, no login page.
    assert plain.status_code in (302, 303, 400), plain.status_code
    where = plain.headers.get("Location", "") + plain.text
    assert "error" in where and 'name="username"' not in where


def test_the_provider_refuses_a_client_secret(use_devidp: dict[str, Any]) -> None:
    answer = requests.post(
        use_devidp["config"]["token_endpoint"],
        data={
            "grant_type": "authorization_code",
            "code": "x",
            "redirect_uri": CALLBACK,
            "code_verifier": "v",
        },
        auth=(settings.OIDC_RP_CLIENT_ID, "a-guessed-secret"),
        timeout=5,
    )
    assert answer.status_code in (400, 401) and answer.json()["error"] == "invalid_client"


def _logged_in(username: str = "fastlege") -> tuple[Client, requests.Session]:
    """A portal session and the browser's provider session behind it."""

    portal, browser = Client(), requests.Session()
    assert _return_to_portal(portal, _at_provider(portal, username, browser=browser)).status_code == 302
    return portal, browser


def _provider_asks_for_the_password(browser: requests.Session) -> bool:
    """Whether a new login in this browser shows the provider's login page (no session
    there) rather than riding straight back to the portal on its session."""

    start = Client().get("/oidc/authenticate/")
    page, back = _follow(browser, browser.get(start["Location"], allow_redirects=False, timeout=5))
    return back is None and 'name="password"' in page.text


def _submit_provider_form(browser: requests.Session, page: requests.Response) -> requests.Response:
    """Submit the provider's logout form as its script (or its button) would."""

    form = re.search(r'<form id="op.logoutForm" method="post" action="([^"]+)">(.*?)</form>', page.text, re.S)
    assert form, page.text[:800]
    fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"/>', form.group(2)))
    return browser.post(
        urljoin(page.url, unescape(form.group(1))), data=fields, allow_redirects=False, timeout=5
    )


def test_logout_ends_the_session_at_the_provider_without_asking(
    use_devidp: dict[str, Any], world: World
) -> None:
    portal, browser = _logged_in()
    id_token = portal.session["oidc_id_token"]

    fields = provider_logout_form(portal.post("/logg-ut/"), id_token)
    endpoint = use_devidp["config"]["end_session_endpoint"]
    # The browser POSTs the form to the provider: the hint is in the body, not the URL.
    page = browser.post(endpoint, data=fields, allow_redirects=False, timeout=5)
    assert page.status_code == 200 and id_token not in page.url
    # A valid hint for the signed-in user: no "are you sure", a form that sends itself.
    assert "Vil du logge ut?" not in page.text and "Forbli innlogget" not in page.text
    assert '<input type="hidden" name="logout" value="yes"/>' in page.text
    assert "document.getElementById('op.logoutForm').submit()" in page.text

    done = _submit_provider_form(browser, page)
    assert done.status_code == 303 and done.headers["Location"] == "http://testserver/logget-ut/"
    assert _provider_asks_for_the_password(browser)  # the provider's session has ended


def test_logout_without_a_hint_still_asks_at_the_provider(use_devidp: dict[str, Any], world: World) -> None:
    _, browser = _logged_in()
    page = browser.post(
        use_devidp["config"]["end_session_endpoint"],
        data={
            "client_id": settings.OIDC_RP_CLIENT_ID,
            "post_logout_redirect_uri": "http://testserver/logget-ut/",
        },
        timeout=5,
    )
    assert page.status_code == 200 and "Vil du logge ut?" in page.text
    assert 'name="logout" value="yes"' not in page.text.split("</form>")[0]  # the user chooses


@pytest.mark.parametrize(
    ("change", "why"),
    [
        (
            {"post_logout_redirect_uri": "http://evil.example/logget-ut/"},
            "post_logout_redirect_uri not registered",
        ),
        (
            {"post_logout_redirect_uri": "http://testserver/pasient/"},
            "post_logout_redirect_uri not registered",
        ),
        ({"client_id": "another-client"}, "client_id does not match"),
        ({"id_token_hint": "tampered"}, "could not validate id_token_hint"),
    ],
)
def test_the_provider_refuses_a_logout_helseid_would_refuse(
    use_devidp: dict[str, Any], world: World, change: dict[str, str], why: str
) -> None:
    portal, browser = _logged_in()
    id_token = portal.session["oidc_id_token"]
    fields = provider_logout_form(portal.post("/logg-ut/"), id_token)
    if change.get("id_token_hint") == "tampered":
        header, payload, signature = id_token.split(".")
        change = {"id_token_hint": f"{header}.{payload}.{signature[:-8]}AAAAAAAA"}
    page = browser.post(
        use_devidp["config"]["end_session_endpoint"],
        data={**fields, **change},
        allow_redirects=False,
        timeout=5,
    )
    assert page.status_code == 400, page.status_code
    assert why in page.text and "logoutForm" not in page.text
    assert not _provider_asks_for_the_password(browser)  # still logged in there


def test_the_provider_takes_a_logout_post_only_as_a_form(use_devidp: dict[str, Any], world: World) -> None:
    portal, browser = _logged_in()
    id_token = portal.session["oidc_id_token"]
    fields = provider_logout_form(portal.post("/logg-ut/"), id_token)
    page = browser.post(
        use_devidp["config"]["end_session_endpoint"], json=fields, allow_redirects=False, timeout=5
    )
    assert page.status_code == 400
    assert not _provider_asks_for_the_password(browser)


def test_the_provider_refuses_a_hint_for_someone_else(use_devidp: dict[str, Any], world: World) -> None:
    portal, _ = _logged_in("fastlege")
    fastlege_token = portal.session["oidc_id_token"]
    other_browser = requests.Session()
    _at_provider(Client(), "legevakt", browser=other_browser)  # another user's provider session

    page = other_browser.post(
        use_devidp["config"]["end_session_endpoint"],
        data={
            "id_token_hint": fastlege_token,
            "post_logout_redirect_uri": "http://testserver/logget-ut/",
            "client_id": settings.OIDC_RP_CLIENT_ID,
        },
        allow_redirects=False,
        timeout=5,
    )
    assert page.status_code == 400 and "not for the signed-in user" in page.text
    assert not _provider_asks_for_the_password(other_browser)


def test_after_a_timeout_the_provider_asks_for_the_password_again(
    use_devidp: dict[str, Any], world: World
) -> None:
    browser = requests.Session()
    portal = Client()
    assert _return_to_portal(portal, _at_provider(portal, "fastlege", browser=browser)).status_code == 302

    # An ordinary new login rides on the provider's session: straight back, no page.
    again = Client().get("/oidc/authenticate/")
    _, back = _follow(browser, browser.get(again["Location"], allow_redirects=False, timeout=5))
    assert back is not None and back.startswith(CALLBACK)

    # After a session timeout the portal asks for a fresh login: the login page shows.
    fresh = Client().get("/oidc/authenticate/?reauth=1")
    page, back = _follow(browser, browser.get(fresh["Location"], allow_redirects=False, timeout=5))
    assert back is None and 'name="password"' in page.text


def test_the_portal_gets_a_token_for_document_sources_with_client_credentials(
    use_devidp: dict[str, Any],
) -> None:
    """The token an MHD source is called with: client credentials, authenticated with
    private_key_jwt (no secret), from the real provider."""
    from pjd_portal.accounts import provider
    from pjd_portal.documents.sources.tokens import ClientCredentialsTokenProvider

    tokens = ClientCredentialsTokenProvider(
        token_endpoint=use_devidp["config"]["token_endpoint"],
        client_id=settings.OIDC_RP_CLIENT_ID,
        private_key=provider.client_private_key,
        timeout=5,
    )
    token = tokens.access_token()
    assert token and isinstance(token, str)
    assert tokens.access_token() == token  # cached until shortly before it expires
