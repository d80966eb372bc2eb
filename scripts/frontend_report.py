"""How heavy the portal's front end is, measured in Chromium against a running portal.

    # a production-mode portal on a throw-away database (values for measuring only)
    export DEBUG=false PJD_TEST_ENVIRONMENT=true PJD_ALLOW_SYNTHETIC_IDS=true \
        PJD_TEST_IDENTITIES=true SECURE_COOKIES=false SECURE_SSL_REDIRECT=false \
        ALLOWED_HOSTS=127.0.0.1 SECRET_KEY=<50+ random characters> PJD_AUDIT_ANCHOR_KEY=<another> \
        PJD_CACHE_URL=redis://127.0.0.1:6379/0 DATABASE_URL=sqlite:///$PWD/var/frontend.sqlite3
    .venv/bin/python manage.py migrate && .venv/bin/python manage.py seed_demo
    .venv/bin/python manage.py collectstatic --noinput
    .venv/bin/python manage.py runserver --noreload 127.0.0.1:8500 &  # WhiteNoise serves /static/
    # in the portal's environment (same DATABASE_URL, SECRET_KEY …): a logged-in session
    .venv/bin/python scripts/frontend_report.py new-session fastlege
    # then, against the portal serving that database
    .venv/bin/python scripts/frontend_report.py measure http://127.0.0.1:8500 SESSION_COOKIE

`measure` prints JSON: the bytes transferred on a cold first load of the lookup page (the
landing page after login), the bytes of each htmx swap on the clinician path (the list's
sorting and paging, opening a document into the viewer), and Lighthouse's performance
score and LCP, mobile and desktop. Measure a production-mode portal (DEBUG off, static
files from `collectstatic`): the development server sends its files uncompressed.

The targets (issue 14): first load ≤ 60 KB, each htmx swap ≤ 10 KB, Lighthouse ≥ 95 mobile
and 100 desktop.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("CHROME_PATH", "/usr/bin/chromium")
LIGHTHOUSE = "lighthouse@12.2.3"
# The list patient of the demo (seed_demo): on the fastlege's list, documents in every class.
LIST_PATIENT_ID = "13116900216"
SESSION_COOKIE_NAME = "sessionid"  # SECURE_COOKIES off: the measured portal runs on plain http


def _path(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def _transferred(response: Any) -> int:
    """Bytes over the wire for one response: headers and the (compressed) body."""

    sizes = response.request.sizes()
    return int(sizes["responseHeadersSize"]) + int(sizes["responseBodySize"])


def _browser_figures(base_url: str, cookie: str) -> dict[str, Any]:
    from playwright.sync_api import Response, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        # A new context is an empty cache: the first load is a cold one.
        context = browser.new_context()
        context.add_cookies([{"name": SESSION_COOKIE_NAME, "value": cookie, "url": base_url}])
        page = context.new_page()
        responses: list[Response] = []

        def keep(response: Response) -> None:  # Playwright wraps handlers: a builtin will not do
            responses.append(response)

        page.on("response", keep)

        def settled() -> list[Response]:
            page.wait_for_load_state("networkidle")
            for response in responses:
                response.finished()
            done = list(responses)
            responses.clear()
            return done

        page.goto(f"{base_url}/")
        first = settled()
        first_load = {
            "url": page.url,
            "bytes": sum(_transferred(r) for r in first),
            "requests": [{"url": _path(r.url), "status": r.status, "bytes": _transferred(r)} for r in first],
        }
        # The clinician path: look up (a form POST, a page), state the basis, the list.
        page.get_by_test_id("lookup-form").locator("input[name=national_id]").fill(LIST_PATIENT_ID)
        page.get_by_test_id("lookup-form").locator("button[type=submit]").click()
        page.wait_for_load_state("networkidle")
        # While an earlier basis holds (a second run), the lookup leads to the list itself.
        if page.get_by_test_id("basis-form").count():
            page.locator("input[name=basis][value=UNNTAK]").check()
            page.get_by_test_id("basis-submit").click()
        page.wait_for_selector("#document-list")
        settled()

        swaps: list[dict[str, Any]] = []

        def swap(name: str, action: Any) -> None:
            with page.expect_response(lambda r: r.request.headers.get("hx-request") == "true"):
                action()
            done = settled()
            htmx = [r for r in done if r.request.headers.get("hx-request") == "true"]
            swaps.append(
                {
                    "name": name,
                    "bytes": sum(_transferred(r) for r in htmx),
                    "requests": [
                        {"url": _path(r.url), "status": r.status, "bytes": _transferred(r)} for r in htmx
                    ],
                    # What the swap brought with it (an iframe's PDF, say), not counted above.
                    "other_bytes": sum(_transferred(r) for r in done if r not in htmx),
                }
            )

        sort = page.locator("#document-list th a[hx-get]").first
        if sort.count():
            swap("sort the list", sort.click)
        nxt = page.get_by_test_id("next-page")
        if nxt.count():
            swap("next page", nxt.click)
        opener = page.get_by_test_id("open-document").first
        if opener.count():
            swap("open a document", opener.click)
        browser.close()
    return {"first_load": first_load, "htmx_swaps": swaps}


def _lighthouse(url: str, cookie: str, *, desktop: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "report.json"
        command = [
            "npx",
            "--yes",
            LIGHTHOUSE,
            url,
            "--only-categories=performance",
            "--output=json",
            f"--output-path={out}",
            "--quiet",
            "--chrome-flags=--headless=new --no-sandbox",
            "--extra-headers=" + json.dumps({"Cookie": f"{SESSION_COOKIE_NAME}={cookie}"}),
        ]
        if desktop:
            command.append("--preset=desktop")
        # No shell: the URL and the cookie are arguments, never parsed as a command.
        subprocess.run(command, check=True, env={**os.environ, "CHROME_PATH": CHROMIUM}, cwd=tmp)  # noqa: S603
        report = json.loads(out.read_text())
    audits = report["audits"]
    return {
        "final_url": report.get("finalDisplayedUrl") or report.get("finalUrl"),
        "performance": round(report["categories"]["performance"]["score"] * 100),
        "lcp_ms": round(audits["largest-contentful-paint"]["numericValue"]),
        "fcp_ms": round(audits["first-contentful-paint"]["numericValue"]),
        "tbt_ms": round(audits["total-blocking-time"]["numericValue"]),
        "cls": round(audits["cumulative-layout-shift"]["numericValue"], 3),
        "speed_index_ms": round(audits["speed-index"]["numericValue"]),
        "total_bytes": audits["total-byte-weight"]["numericValue"],
    }


def frontend_report(base_url: str, cookie: str) -> dict[str, Any]:
    """The figures for the portal at `base_url`, as the session `cookie` sees it."""

    base_url = base_url.rstrip("/")
    report = _browser_figures(base_url, cookie)
    # Lighthouse loads the landing page; it does not follow the path (that would change
    # the session's state between the runs).
    report["lighthouse"] = {
        "mobile": _lighthouse(f"{base_url}/", cookie, desktop=False),
        "desktop": _lighthouse(f"{base_url}/", cookie, desktop=True),
    }
    report["targets"] = {
        "first_load_bytes_max": 60_000,
        "htmx_swap_bytes_max": 10_000,
        "lighthouse_mobile_min": 95,
        "lighthouse_desktop_min": 100,
    }
    return report


def new_session(username: str) -> str:
    """A session key for the demo user, acting for their organisation, as the OIDC login
    leaves it (auth, login and activity stamps, the organisation); no login event."""

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pjd_portal.settings")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.test import Client

    from pjd_portal.accounts.context import SESSION_ORG_KEY
    from pjd_portal.accounts.models import Organisation, User
    from pjd_portal.documents.management.commands.seed_demo import _load_users

    claims = _load_users()[username]
    user = User.objects.get(pid=claims["pid"])
    org = Organisation.objects.get(orgnr=claims["orgnr_parent"])
    client = Client()
    client.force_login(user)  # sends user_logged_in: the session's stamps are written
    session = client.session
    session[SESSION_ORG_KEY] = org.pk
    session.save()
    return str(session.session_key)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    session = commands.add_parser("new-session", help="print a session key for a demo user")
    session.add_argument("username", nargs="?", default="fastlege")
    measure = commands.add_parser("measure", help="measure the portal at BASE_URL")
    measure.add_argument("base_url")
    measure.add_argument("cookie")
    args = parser.parse_args(argv)
    if args.command == "new-session":
        print(new_session(args.username))
    else:
        print(json.dumps(frontend_report(args.base_url, args.cookie), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
