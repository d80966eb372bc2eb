"""The front page of staff without a clinical role: links to exactly the parts of the
administration area the policy lets them use, and their roles by name."""

from __future__ import annotations

import pytest

LINKS = {
    "log-review-home-link": "/forvaltning/loggkontroll/",
    "access-roles-home-link": "/forvaltning/tilgang/",
    "privacy-choices-home-link": "/forvaltning/personvern/",
    "patient-log-link": "/forvaltning/innsyn/",
}


@pytest.mark.parametrize(
    ("persona", "expected", "role_label"),
    [
        ("auditor", {"log-review-home-link"}, "Loggkontrollør"),
        ("administrator", {"access-roles-home-link"}, "Tilgangsstyrer"),
    ],
)
def test_each_admin_persona_gets_its_own_links(persona_client, world, persona, expected, role_label):
    client = persona_client(persona)
    page = client.get("/").content.decode()
    shown = {testid for testid in LINKS if f'data-testid="{testid}"' in page}
    assert shown == expected
    assert role_label in page
    for testid in shown:
        assert client.get(LINKS[testid]).status_code == 200


def test_a_clinician_gets_the_lookup_form_and_no_admin_links(persona_client, world):
    page = persona_client("fastlege").get("/").content.decode()
    assert 'data-testid="lookup-form"' in page
    assert not any(f'data-testid="{testid}"' in page for testid in LINKS)
