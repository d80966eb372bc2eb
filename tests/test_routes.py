"""Every URL pattern × every persona: the expected status, and no pattern left out."""

from __future__ import annotations

import datetime
import uuid
from typing import Any

import pytest
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone

from pjd_portal.accounts.roles import grants_in_force
from pjd_portal.auditlog.models import AccessEvent
from pjd_portal.review.models import ReviewItem
from pjd_portal.review.queue import build_queue
from tests.builders import add_document, login, lookup_and_attest

PERSONAS = ["anonymous", "fastlege", "other_clinician", "auditor", "administrator", "privacy_officer"]
LOGIN_REDIRECT = 302

# route name -> (method, expected status per persona, in PERSONAS order).
# Each clinician (the fastlege, the legevakt doctor) works on a handle of their own for the
# patient (someone else's handle is a 404: test_someone_elses_handle_is_404); auditor,
# administrator and privacy officer have no clinician role (403 with a clear page);
# anonymous users are sent to log in. The
# privacy officer works on their own handle for the patient: registering a reservation and
# blocking or unblocking the document succeed (302 to the patient's page), lifting without
# a choice named is refused with its message (400).
MATRIX = {
    "accounts:home": ("get", [200, 200, 200, 200, 200, 200]),
    "accounts:logout": ("post", [302, 302, 302, 302, 302, 302]),
    "accounts:logged_out": ("get", [200, 200, 200, 200, 200, 200]),
    # Session lifetime: the expired page is for anonymous users (a live session goes home);
    # the JSON endpoints answer 401 without a session, never a login page.
    "accounts:session_expired": ("get", [200, 302, 302, 302, 302, 302]),
    "accounts:session_status": ("get", [401, 200, 200, 200, 200, 200]),
    "accounts:session_keepalive": ("post", [401, 204, 204, 204, 204, 204]),
    "accounts:client_jwks": ("get", [200, 200, 200, 200, 200, 200]),
    # Only for those who may act for several organisations; others are sent home.
    "accounts:choose_organisation": ("get", [LOGIN_REDIRECT, 302, 302, 302, 302, 302]),
    "patients:lookup": ("post", [LOGIN_REDIRECT, 302, 302, 403, 403, 403]),
    # The owner has a live basis for this patient: the card sends them on to the list.
    "patients:basis": ("get", [LOGIN_REDIRECT, 302, 302, 403, 403, 403]),
    # Only for a restricted patient; for this one the step sends the owner to the list.
    "patients:elevated": ("get", [LOGIN_REDIRECT, 302, 302, 403, 403, 403]),
    "documents:list": ("get", [LOGIN_REDIRECT, 200, 200, 403, 403, 403]),
    "documents:open": ("get", [LOGIN_REDIRECT, 200, 200, 403, 403, 403]),
    # The viewer (the document beside the list): the same decision as an open.
    "documents:view": ("get", [LOGIN_REDIRECT, 200, 200, 403, 403, 403]),
    "documents:view_remote": ("get", [LOGIN_REDIRECT, 404, 404, 403, 403, 403]),
    # No MHD source is configured here: the clinician's request names no remote source, 404.
    "documents:open_remote": ("get", [LOGIN_REDIRECT, 404, 404, 403, 403, 403]),
    # A source's part of the list is an htmx fragment: a plain GET by the owner goes to the
    # list (tests/test_mhd_source.py has the fragment itself).
    "documents:list_source": ("get", [LOGIN_REDIRECT, 302, 302, 403, 403, 403]),
    "oidc_authentication_init": ("get", [302, 302, 302, 302, 302, 302]),
    "oidc_authentication_callback": ("get", [403, 403, 403, 403, 403, 403]),
    "set_language": ("post", [302, 302, 302, 302, 302, 302]),
    # The SMART EHR launch (tests/test_smart_launch.py): without its parameters a clinician
    # gets the refusal page (400); no state is no launch begun (400).
    "smart_launch": ("get", [LOGIN_REDIRECT, 400, 400, 403, 403, 403]),
    "smart_callback": ("get", [LOGIN_REDIRECT, 400, 400, 403, 403, 403]),
    # The administration area: only the privacy officer (tests/test_patient_access_log.py);
    # everyone else gets the 404 of a missing page.
    "forvaltning:patient_log": ("get", [404, 404, 404, 404, 404, 200]),
    # Log review (loggkontroll): only the auditor (tests/test_log_review.py); the event is
    # a document open on the auditor's hospital's document.
    "forvaltning:log_search": ("get", [404, 404, 404, 200, 404, 404]),
    "forvaltning:log_event": ("get", [404, 404, 404, 200, 404, 404]),
    "forvaltning:log_export": ("post", [404, 404, 404, 200, 404, 404]),
    # The review queue (tests/test_review_queue.py): only the auditor; the item is that
    # document open, queued; the empty status form is refused with its messages (400).
    "forvaltning:review_queue": ("get", [404, 404, 404, 200, 404, 404]),
    "forvaltning:review_item": ("get", [404, 404, 404, 200, 404, 404]),
    "forvaltning:review_item_status": ("post", [404, 404, 404, 400, 404, 404]),
    # The auditor's overview (tests/test_log_overview.py): only the auditor.
    "forvaltning:log_overview": ("get", [404, 404, 404, 200, 404, 404]),
    # Patients' privacy choices: only the privacy officer (tests/test_privacy_choices_admin.py).
    "forvaltning:privacy_lookup": ("post", [404, 404, 404, 404, 404, 302]),
    "forvaltning:privacy_patient": ("get", [404, 404, 404, 404, 404, 200]),
    "forvaltning:privacy_register": ("post", [404, 404, 404, 404, 404, 302]),
    "forvaltning:privacy_lift": ("post", [404, 404, 404, 404, 404, 400]),
    "forvaltning:privacy_block_document": ("post", [404, 404, 404, 404, 404, 302]),
    "forvaltning:privacy_unblock_document": ("post", [404, 404, 404, 404, 404, 302]),
    # Access roles: only the access administrator of the GP office (tests/test_access_roles.py);
    # the grant gives the fastlege the auditor role, the revoke ends the fastlege's role.
    "forvaltning:access_roles": ("get", [404, 404, 404, 404, 200, 404]),
    "forvaltning:access_role_grant": ("post", [404, 404, 404, 404, 302, 404]),
    "forvaltning:access_role_revoke": ("post", [404, 404, 404, 404, 302, 404]),
    # Token-authenticated (the citizen portal's signed JWT): a session is no credential.
    "fhir:auditevent_search": ("post", [401, 401, 401, 401, 401, 401]),
    # The MHD API for EPJ systems (tests/test_mhd_api.py): a DPoP-bound token, never a
    # session; its metadata and OpenAPI description are open to all.
    "fhir:metadata": ("get", [200, 200, 200, 200, 200, 200]),
    "openapi": ("get", [200, 200, 200, 200, 200, 200]),
    "fhir:documentreference": ("get", [401, 401, 401, 401, 401, 401]),
    "fhir:documentreference_search": ("post", [401, 401, 401, 401, 401, 401]),
    "fhir:binary": ("get", [401, 401, 401, 401, 401, 401]),
    "fhir:unknown": ("get", [404, 404, 404, 404, 404, 404]),
    # The launch from the EPJ (tests/test_epj_launch.py): the code is for an EPJ's DPoP
    # token, never a session; the browser's form with no code opens nothing for anyone, and
    # the finish without a launch redeemed in this session is the same refusal.
    "epj_launch": ("post", [401, 401, 401, 401, 401, 401]),
    "epj_start": ("post", [403, 403, 403, 403, 403, 403]),
    "epj_start_finish": ("get", [LOGIN_REDIRECT, 403, 403, 403, 403, 403]),
    # Operations (tests/test_operations.py): the probes answer everyone alike, with no login;
    # /metrics only the scraper's bearer token (no token configured here: no page at all).
    "healthz": ("get", [200, 200, 200, 200, 200, 200]),
    "readyz": ("get", [200, 200, 200, 200, 200, 200]),
    "metrics": ("get", [404, 404, 404, 404, 404, 404]),
}


def all_route_names(resolver=None, namespace=""):
    resolver = resolver or get_resolver()
    names = set()
    for pattern in resolver.url_patterns:
        if isinstance(pattern, URLResolver):
            ns = f"{namespace}{pattern.namespace}:" if pattern.namespace else namespace
            names |= all_route_names(pattern, ns)
        elif isinstance(pattern, URLPattern):
            assert pattern.name, f"unnamed URL pattern {pattern.pattern}"
            names.add(f"{namespace}{pattern.name}")
    return names


def test_matrix_covers_every_url_pattern():
    missing = all_route_names() - set(MATRIX)
    assert not missing, f"URL patterns missing from the route × persona matrix: {sorted(missing)}"


@pytest.mark.parametrize("route", sorted(MATRIX))
@pytest.mark.parametrize("persona_index", range(len(PERSONAS)))
def test_route_persona(route, persona_index, world, persona_client, client, settings):
    from django.urls import reverse

    # Who may reach each route is the question here, not the identity provider: start
    # logins without PAR, so no provider has to be running (test_login.py covers PAR).
    settings.OIDC_USE_PAR = False
    persona = PERSONAS[persona_index]
    owner = login(client, world.fastlege, world.gp_office)
    doc = add_document(world)
    handle = lookup_and_attest(owner)
    c = owner if persona == "fastlege" else persona_client(persona)
    if persona == "other_clinician" and route in HANDLE_ROUTES:
        handle = lookup_and_attest(c)  # the legevakt doctor's own handle for the patient
    kwargs: dict[str, Any] = {}
    if route in ("patients:basis", "patients:elevated", "documents:list"):
        kwargs = {"handle": handle}
    elif route in ("documents:open", "documents:view"):
        kwargs = {"handle": handle, "document_id": doc.document_id}
    elif route == "documents:list_source":
        kwargs = {"handle": handle, "source_id": world.source.pk}
    elif route in ("documents:open_remote", "documents:view_remote"):
        kwargs = {"handle": handle, "source_id": world.source.pk, "document_id": "abc-123"}
    elif route == "fhir:binary":
        kwargs = {"binary_id": str(doc.document_id)}
    elif route == "fhir:unknown":
        kwargs = {"rest": "Patient/1"}
    elif route == "forvaltning:log_event":
        owner.get(reverse("documents:open", kwargs={"handle": handle, "document_id": doc.document_id}))
        kwargs = {"event_id": AccessEvent.objects.get(event_type="document_open").event_id}
    elif route in ("forvaltning:review_item", "forvaltning:review_item_status"):
        owner.get(reverse("documents:open", kwargs={"handle": handle, "document_id": doc.document_id}))
        build_queue(AccessEvent.objects.get(event_type="document_open").occurred_at, rate=1.0)
        # The auditor persona reviews for the hospital, whose document was opened.
        kwargs = {"item_id": ReviewItem.objects.get(reviewer_orgnr=world.hospital.orgnr).item_id}
    elif route.startswith("forvaltning:privacy_") and route != "forvaltning:privacy_lookup":
        kwargs = {"handle": uuid.uuid4()}
        if persona == "privacy_officer":  # the privacy officer's own handle for the patient
            looked_up = c.post(
                reverse("forvaltning:privacy_lookup"), {"national_id": world.patient.national_id}
            )
            kwargs = {"handle": looked_up["Location"].rstrip("/").rsplit("/", 1)[1]}
    url = reverse(route, kwargs=kwargs)
    method, expected = MATRIX[route]
    data = {}
    if route in ("patients:lookup", "forvaltning:privacy_lookup"):
        data = {"national_id": world.patient.national_id}
    patient_request = {
        "reference": "PVO-2026/0042",
        "request_date": (timezone.localdate() - datetime.timedelta(days=2)).isoformat(),
        "reason": "Pasientens ønske (syntetiske testdata)",
    }
    if route == "forvaltning:privacy_register":
        data = {**patient_request, "kind": "reservation", "blocked_hpr_number": ""}
    if route in ("forvaltning:privacy_block_document", "forvaltning:privacy_unblock_document"):
        data = {**patient_request, "document": str(doc.document_id)}
    if route == "set_language":
        data = {"language": "en", "next": "/"}
    if route == "forvaltning:access_role_grant":
        data = {"person": str(world.fastlege.public_id), "role": "auditor"}
    if route == "forvaltning:access_role_revoke":
        data = {"grant": grants_in_force().get(user=world.fastlege).pk}
    response = getattr(c, method)(url, data)
    assert response.status_code == expected[persona_index], (route, persona, response.status_code)
    if (
        response.status_code == LOGIN_REDIRECT
        and persona == "anonymous"
        and route.startswith(("patients", "documents"))
    ):
        assert response["Location"].startswith("/?next=")
    # Every response carries the security headers.
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Cache-Control"] == "no-store"
    if response.get("Content-Type", "").startswith("text/html"):  # a 204 has none
        csp = response["Content-Security-Policy"]
        assert "'unsafe-inline'" not in csp and "'unsafe-eval'" not in csp
        assert "object-src 'none'" in csp and "base-uri 'none'" in csp and "frame-ancestors 'none'" in csp


HANDLE_ROUTES = [
    "patients:basis",
    "patients:elevated",
    "documents:list",
    "documents:open",
    "documents:list_source",
    "documents:open_remote",
    "documents:view",
    "documents:view_remote",
]


def test_every_persona_has_its_200s():
    """Each persona reaches a page of its own work, not only the public ones."""

    public = {"accounts:home", "accounts:logged_out", "accounts:client_jwks", "accounts:session_status"}
    for index, persona in enumerate(PERSONAS):
        own = [
            route for route, (_, expected) in MATRIX.items() if expected[index] == 200 and route not in public
        ]
        assert own, f"no page of its own answers the {persona} with 200"


@pytest.mark.parametrize("route", HANDLE_ROUTES)
def test_someone_elses_handle_is_404(route, world, persona_client):
    """The legevakt doctor may use the portal, but the fastlege's handle is not theirs."""

    from django.urls import reverse

    owner = persona_client("fastlege")
    doc = add_document(world)
    handle = lookup_and_attest(owner)
    kwargs: dict[str, object] = {"handle": handle}
    if route in ("documents:open", "documents:open_remote", "documents:view", "documents:view_remote"):
        local = route in ("documents:open", "documents:view")
        kwargs["document_id"] = doc.document_id if local else "abc-123"
    if route in ("documents:list_source", "documents:open_remote", "documents:view_remote"):
        kwargs["source_id"] = world.source.pk
    assert persona_client("other_clinician").get(reverse(route, kwargs=kwargs)).status_code == 404


def test_unknown_handle_is_404_for_everyone_with_a_clinician_role(persona_client, world):
    for persona in ("fastlege", "other_clinician"):
        response = persona_client(persona).get(f"/pasient/{uuid.uuid4()}/")
        assert response.status_code == 404


# Separation of duties, beside the matrix: the auditor persona also works as a clinician in
# the hospital. An item of their own access, or of an access to them as a patient, opens
# (marked, without the form) but its status form is refused (403, logged); the
# administrator persona's grant to themselves is refused with its message (400, logged).
SELF_CASES = [
    ("forvaltning:review_item", "get", "own_access", 200),
    ("forvaltning:review_item_status", "post", "own_access", 403),
    ("forvaltning:review_item", "get", "own_patient_record", 200),
    ("forvaltning:review_item_status", "post", "own_patient_record", 403),
    ("forvaltning:access_role_grant", "post", "self_grant", 400),
]


@pytest.mark.parametrize(("route", "method", "case", "expected"), SELF_CASES)
def test_no_one_acts_on_their_own_case(route, method, case, expected, world, persona_client):
    from django.urls import reverse

    from pjd_portal.accounts.models import Role
    from tests.builders import T0, grant_role, make_patient, record

    before = set(AccessEvent.objects.values_list("pk", flat=True))
    if case == "self_grant":
        response = persona_client("administrator").post(
            reverse(route), {"person": str(world.administrator.public_id), "role": "auditor"}
        )
        reason = "no_self_grant"
    else:
        grant_role(world.auditor, world.hospital, Role.CLINICIAN)
        if case == "own_access":
            event = record(world, T0, user=world.auditor, org=world.hospital, patient=world.patient)
        else:
            patient = make_patient("Revisor", national_id=world.auditor.pid)
            event = record(world, T0, user=world.fastlege, org=world.hospital, patient=patient)
        build_queue(T0 - datetime.timedelta(days=1), T0 + datetime.timedelta(days=1), rate=1.0)
        item = ReviewItem.objects.get(event_id=event.event_id)
        before = set(AccessEvent.objects.values_list("pk", flat=True))
        data = {"status": "justified", "comment": "x", "version": 1} if method == "post" else {}
        response = getattr(persona_client("auditor"), method)(
            reverse(route, kwargs={"item_id": item.item_id}), data
        )
        reason = f"review_{case}"
        assert 'data-testid="review-own"' in response.content.decode()
    assert response.status_code == expected
    if method == "post":
        refused = AccessEvent.objects.exclude(pk__in=before).filter(outcome="denied")
        assert list(refused.values_list("reason_code", flat=True)) == [reason]
