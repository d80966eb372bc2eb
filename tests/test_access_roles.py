"""Access roles for an organisation's access administrators (/forvaltning/tilgang/), roles
as django-guardian object permissions, and the deactivation of unused accounts."""

from __future__ import annotations

import datetime
import re
from io import StringIO
from typing import Any

import pytest
import time_machine
from django.core.management import call_command
from django.db import IntegrityError, connection, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from guardian.core import ObjectPermissionChecker
from guardian.shortcuts import assign_perm, remove_perm

from pjd_portal.access import policy
from pjd_portal.accounts.context import active_roles
from pjd_portal.accounts.models import (
    HprAuthorization,
    OrganisationUserObjectPermission,
    RevokedRoleGrant,
    Role,
    User,
)
from pjd_portal.accounts.roles import grants_in_force
from pjd_portal.auditlog import events as kinds
from pjd_portal.auditlog.events import Outcome
from pjd_portal.auditlog.models import AccessEvent
from tests.builders import (
    LIST_PATIENT_ID,
    World,
    comparable,
    events,
    grant_role,
    login,
    make_user,
    post_at_once,
    request_as,
    revoke_roles,
    synthetic_id,
)

PAGE = "/forvaltning/tilgang/"
GRANT = "/forvaltning/tilgang/tildel/"
REVOKE = "/forvaltning/tilgang/trekk-tilbake/"
NEW_HPR = "910000033"


def perms(user: User, org) -> set[str]:
    return set(
        OrganisationUserObjectPermission.objects.filter(user=user, content_object=org).values_list(
            "permission__codename", flat=True
        )
    )


def former_clinician(world: World) -> User:
    """A doctor at the GP office whose clinician role was revoked earlier: own staff, no role."""

    user = make_user("t-nylege", synthetic_id(2, 6, 80, 512), NEW_HPR, "Nina Nylege")
    HprAuthorization.objects.create(hpr_number=NEW_HPR, code="LE")
    RevokedRoleGrant.objects.create(
        user=user,
        organisation=world.gp_office,
        role=Role.CLINICIAN,
        granted_at=timezone.now() - datetime.timedelta(days=30),
        revoked_at=timezone.now(),
        revoked_by=world.administrator,
    )
    return user


def held(user: User, role: str | None = None):
    rows = grants_in_force().filter(user=user)
    return rows.filter(permission__codename=f"role_{role}") if role else rows


# --- who may use the pages ------------------------------------------------------------------


@pytest.mark.parametrize("persona", ["anonymous", "fastlege", "other_clinician", "auditor"])
def test_everyone_but_the_access_administrator_gets_the_404(persona, world, persona_client):
    client = persona_client(persona)
    missing = client.get("/forvaltning/finnes-ikke/")
    for method, url, data in (
        ("get", PAGE, {}),
        ("post", GRANT, {"person": str(world.fastlege.public_id), "role": Role.AUDITOR}),
        ("post", REVOKE, {"grant": grants_in_force().order_by("pk")[0].pk}),
    ):
        response = getattr(client, method)(url, data)
        assert response.status_code == 404, (persona, url)
        assert comparable(response) == comparable(missing)
    assert held(world.fastlege).count() == 1
    denied = AccessEvent.objects.filter(
        event_type=kinds.ACCESS_DENIED.name, reason_code="not_access_administrator"
    )
    assert denied.count() == (0 if persona == "anonymous" else 3)
    assert not events(kinds.ROLE_GRANTED.name) and not events(kinds.ROLE_REVOKED.name)


def test_the_administrator_sees_who_has_what_since_when_and_by_whom(world, persona_client):
    nurse = former_clinician(world)
    grant_role(world.fastlege, world.gp_office, Role.AUDITOR, granted_by=world.administrator)
    grant_role(world.other_clinician, world.legevakt, Role.AUDITOR)
    client = persona_client("administrator")
    response = client.get(PAGE)
    assert response.status_code == 200
    body = response.content.decode()
    assert 'data-testid="access-roles-link"' in body
    assert body.count('data-testid="role-in-force"') == 3  # fastlege ×2, administrator
    assert body.count('data-testid="role-revoked"') == 1
    assert "Kari Fastlege" in body and "Tor Tilgangsstyrer" in body and "Nina Nylege" in body
    assert "Lars Legevakt" not in body  # another organisation's staff and grants
    assert str(nurse.public_id) in body  # offered in the list of own staff
    assert world.fastlege.pid not in body  # never a national id
    # The link shows only for those the policy lets in.
    assert (
        'data-testid="access-roles-link"'
        not in persona_client("auditor").get("/forvaltning/loggkontroll/").content.decode()
    )


# --- grant and revoke take effect on the next request -----------------------------------------


def test_a_grant_applies_to_the_persons_next_request_and_a_revoke_removes_it(world, persona_client):
    nurse = former_clinician(world)
    admin = persona_client("administrator")
    as_nurse = login(Client(), nurse, world.gp_office)
    assert as_nurse.post("/pasient/sok/", {"national_id": LIST_PATIENT_ID}).status_code == 403

    response = admin.post(GRANT, {"hpr_number": NEW_HPR, "role": Role.CLINICIAN})
    assert response.status_code == 302 and response["Location"] == PAGE
    assert "Den gjelder fra personens neste forespørsel" in admin.get(PAGE).content.decode()
    grant = held(nurse, Role.CLINICIAN).get()
    assert grant.granted_by == world.administrator
    assert perms(nurse, world.gp_office) == {"role_clinician"}
    [event] = events(kinds.ROLE_GRANTED.name)
    assert event.outcome == Outcome.GRANTED and event.actor_user_id == world.administrator.pk
    assert event.organisation_orgnr == world.gp_office.orgnr
    assert event.details["target_user_id"] == nurse.pk and event.details["role"] == Role.CLINICIAN
    assert event.details["via"] == "hpr_number"

    assert as_nurse.post("/pasient/sok/", {"national_id": LIST_PATIENT_ID}).status_code == 302

    response = admin.post(REVOKE, {"grant": grant.pk})
    assert response.status_code == 302
    # The role's row is gone; what was revoked, when and by whom, is kept.
    assert not OrganisationUserObjectPermission.objects.filter(pk=grant.pk).exists()
    ended = RevokedRoleGrant.objects.get(grant_id=grant.pk)
    assert (ended.user, ended.role, ended.granted_by) == (nurse, Role.CLINICIAN, world.administrator)
    assert ended.granted_at == grant.granted_at
    assert ended.revoked_by == world.administrator and ended.revoked_at is not None
    assert perms(nurse, world.gp_office) == set()
    assert as_nurse.post("/pasient/sok/", {"national_id": LIST_PATIENT_ID}).status_code == 403
    [revoked] = events(kinds.ROLE_REVOKED.name)
    assert revoked.outcome == Outcome.GRANTED and revoked.details["grant_id"] == grant.pk
    assert events(kinds.ROLE_GRANTED.name)[0].details["grant_id"] == grant.pk
    # Both grants are listed as revoked: the earlier one and this one.
    assert RevokedRoleGrant.objects.filter(user=nurse).count() == 2
    assert not held(nurse).exists()
    body = admin.get(PAGE).content.decode()
    assert body.count('data-testid="role-revoked"') == 2


def test_a_role_granted_from_the_list_of_own_staff(world, persona_client):
    admin = persona_client("administrator")
    response = admin.post(GRANT, {"person": str(world.fastlege.public_id), "role": Role.AUDITOR})
    assert response.status_code == 302
    assert perms(world.fastlege, world.gp_office) == {"role_clinician", "role_auditor"}
    as_fastlege = login(Client(), world.fastlege, world.gp_office)
    assert as_fastlege.get("/forvaltning/loggkontroll/").status_code == 200
    assert events(kinds.ROLE_GRANTED.name)[0].details["via"] == "list"


def test_the_form_says_what_is_missing(world, persona_client):
    admin = persona_client("administrator")
    before = grants_in_force().count()
    for data, message in (
        ({"role": Role.AUDITOR}, "Velg personen, eller skriv inn HPR-nummeret"),
        ({"hpr_number": "12", "role": Role.AUDITOR}, "Et HPR-nummer har 9 siffer"),
        ({"hpr_number": NEW_HPR, "person": str(world.fastlege.public_id), "role": "auditor"}, "ikke begge"),
        ({"person": str(world.fastlege.public_id)}, "Velg rollen som skal tildeles"),
        ({"person": str(world.fastlege.public_id), "role": Role.PRIVACY_OFFICER}, "Velg en av rollene"),
    ):
        response = admin.post(GRANT, data, HTTP_ACCEPT_LANGUAGE="nb")
        assert response.status_code == 400, data
        assert message in response.content.decode(), data
    assert grants_in_force().count() == before  # nothing was granted


# --- only the organisation's own staff ----------------------------------------------------------


def test_another_organisations_staff_is_refused(world, persona_client):
    admin = persona_client("administrator")
    missing = admin.get("/forvaltning/finnes-ikke/")
    # A forged id of the legevakt's doctor: as for a missing page, logged.
    forged = admin.post(GRANT, {"person": str(world.other_clinician.public_id), "role": Role.CLINICIAN})
    assert forged.status_code == 404 and comparable(forged) == comparable(missing)
    # The same doctor's HPR number: the same answer as for an unknown number.
    by_hpr = admin.post(GRANT, {"hpr_number": world.other_clinician.hpr_number, "role": Role.CLINICIAN})
    unknown = admin.post(GRANT, {"hpr_number": "999999999", "role": Role.CLINICIAN})
    assert by_hpr.status_code == unknown.status_code == 400
    assert "Roller kan bare tildeles egne ansatte" in by_hpr.content.decode()
    assert not held(world.other_clinician).filter(content_object=world.gp_office).exists()
    assert perms(world.other_clinician, world.gp_office) == set()
    refused = AccessEvent.objects.filter(event_type=kinds.ACCESS_DENIED.name, reason_code="not_own_staff")
    assert refused.count() == 3
    assert not events(kinds.ROLE_GRANTED.name)
    # Nor may a grant of another organisation be revoked by id.
    theirs = held(world.other_clinician).get()
    assert admin.post(REVOKE, {"grant": theirs.pk}).status_code == 404
    assert admin.post(REVOKE, {"grant": "x"}).status_code == 404
    assert OrganisationUserObjectPermission.objects.filter(pk=theirs.pk).exists()
    assert perms(world.other_clinician, world.legevakt) == {"role_clinician"}
    assert AccessEvent.objects.filter(reason_code="unknown_grant").count() == 2


def test_the_last_administrator_cannot_revoke_their_own_role(world, persona_client):
    admin = persona_client("administrator")
    own = held(world.administrator, Role.ACCESS_ADMINISTRATOR).get()
    response = admin.post(REVOKE, {"grant": own.pk}, HTTP_ACCEPT_LANGUAGE="nb")
    assert response.status_code == 400
    assert "eneste aktive tilgangsstyrer" in response.content.decode()
    assert perms(world.administrator, world.gp_office) == {"role_access_administrator"}
    [event] = events(kinds.ROLE_REVOKED.name)
    assert event.outcome == Outcome.DENIED and event.reason_code == "last_access_administrator"
    # With a second administrator, one may step down.
    assert (
        admin.post(
            GRANT, {"person": str(world.fastlege.public_id), "role": "access_administrator"}
        ).status_code
        == 302
    )
    assert admin.post(REVOKE, {"grant": own.pk}).status_code == 302
    assert admin.get(PAGE).status_code == 404  # the very next request
    assert perms(world.administrator, world.gp_office) == set()


def test_a_revoked_grant_revoked_again_changes_nothing(world, persona_client):
    admin = persona_client("administrator")
    grant = held(world.fastlege).get()
    assert admin.post(REVOKE, {"grant": grant.pk}).status_code == 302
    assert admin.post(REVOKE, {"grant": grant.pk}).status_code == 302
    first, again = events(kinds.ROLE_REVOKED.name)
    assert [first.outcome, again.outcome] == [Outcome.GRANTED, Outcome.INVALID]
    assert again.reason_code == "role_not_in_force"
    assert again.details["grant_id"] == grant.pk and again.details["role"] == Role.CLINICIAN
    assert again.details["target_user_id"] == world.fastlege.pk
    assert "allerede trukket tilbake" in admin.get(PAGE).content.decode()


# --- one row per grant --------------------------------------------------------------------------


def test_a_duplicate_grant_creates_one_row(world, persona_client):
    admin = persona_client("administrator")
    data = {"person": str(world.fastlege.public_id), "role": Role.AUDITOR}
    assert admin.post(GRANT, data).status_code == 302
    assert admin.post(GRANT, data).status_code == 302
    assert held(world.fastlege, Role.AUDITOR).count() == 1
    first, again = events(kinds.ROLE_GRANTED.name)
    assert [first.outcome, again.outcome] == [Outcome.GRANTED, Outcome.INVALID]
    assert (
        first.details["grant_id"] == again.details["grant_id"] == held(world.fastlege, Role.AUDITOR).get().pk
    )
    assert "har allerede denne rollen" in admin.get(PAGE).content.decode()


def test_the_constraint_holds_below_the_views(world):
    grant_role(world.fastlege, world.gp_office, Role.AUDITOR)
    with pytest.raises(IntegrityError), transaction.atomic():
        grant_role(world.fastlege, world.gp_office, Role.AUDITOR)
    revoke_roles(world.fastlege, role=Role.AUDITOR)
    grant_role(world.fastlege, world.gp_office, Role.AUDITOR)
    assert held(world.fastlege, Role.AUDITOR).count() == 1
    assert RevokedRoleGrant.objects.filter(user=world.fastlege, role=Role.AUDITOR).count() == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_concurrent_duplicate_grant_creates_one_row(world):
    admin = login(Client(), world.administrator, world.gp_office)
    n = 8
    statuses = post_at_once(admin, GRANT, {"person": str(world.fastlege.public_id), "role": Role.AUDITOR}, n)
    assert statuses == [302] * n, statuses
    assert held(world.fastlege, Role.AUDITOR).count() == 1
    assert perms(world.fastlege, world.gp_office) == {"role_clinician", "role_auditor"}
    outcomes = sorted(
        AccessEvent.objects.filter(event_type=kinds.ROLE_GRANTED.name).values_list("outcome", flat=True)
    )
    assert outcomes == [Outcome.GRANTED] + [Outcome.INVALID] * (n - 1)


# --- guardian's table is the one record of roles -----------------------------------------------


def test_guardian_is_the_one_record_whoever_writes_it(world):
    """What guardian's own API writes is what the portal enforces, and the other way round:
    there is no second record to keep in step."""

    assert perms(world.fastlege, world.gp_office) == {"role_clinician"}
    assign_perm("accounts.role_auditor", world.fastlege, world.legevakt)
    row = held(world.fastlege, Role.AUDITOR).get()
    assert row.granted_at is not None and row.granted_by is None  # registered outside the portal
    assert active_roles(request_as(world.fastlege, organisation=world.legevakt)) == {Role.AUDITOR}
    assert ObjectPermissionChecker(world.fastlege).has_perm("role_auditor", world.legevakt)
    remove_perm("accounts.role_clinician", world.fastlege, world.gp_office)
    assert active_roles(request_as(world.fastlege, organisation=world.gp_office)) == frozenset()
    # The privacy officer role is a guardian permission too, in the organisation it is held in.
    grant_role(world.auditor, world.hospital, Role.PRIVACY_OFFICER)
    assert perms(world.auditor, world.hospital) == {"role_auditor", "role_privacy_officer"}
    assert perms(world.privacy_officer, world.forvaltning) == {"role_privacy_officer"}


def test_active_roles_come_from_guardian_in_one_query(world):
    grant_role(world.auditor, world.hospital, Role.PRIVACY_OFFICER)
    active_roles(request_as(world.fastlege, organisation=world.gp_office))  # warm the content type cache
    request = request_as(world.auditor, organisation=world.hospital)
    with CaptureQueriesContext(connection) as queries:
        assert active_roles(request) == {Role.AUDITOR, Role.PRIVACY_OFFICER}
        assert active_roles(request) == {Role.AUDITOR, Role.PRIVACY_OFFICER}  # cached on the request
    assert len(queries) == 1
    # Deleting the rows ends the roles, the privacy officer's included: nothing else counts.
    OrganisationUserObjectPermission.objects.filter(user=world.auditor).delete()
    assert active_roles(request_as(world.auditor, organisation=world.hospital)) == frozenset()
    world.fastlege.is_active = False
    assert active_roles(request_as(world.fastlege, organisation=world.gp_office)) == frozenset()


def test_the_policy_on_grants(world):
    staff = policy.StaffFacts(
        user_id=1, organisation_id=5, roles=frozenset({Role.ACCESS_ADMINISTRATOR}), organisation_orgnr="1"
    )
    assert policy.may_grant_role(staff, Role.CLINICIAN, target_organisation_ids=frozenset({5, 6}))
    assert not policy.may_grant_role(staff, Role.CLINICIAN, target_organisation_ids=frozenset({6}))
    assert not policy.may_grant_role(staff, Role.PRIVACY_OFFICER, target_organisation_ids=frozenset({5}))
    assert not policy.may_grant_role(None, Role.CLINICIAN, target_organisation_ids=frozenset({5}))
    no_role = policy.StaffFacts(user_id=1, organisation_id=5, roles=frozenset({Role.AUDITOR}))
    assert not policy.may_administer_access(no_role)
    kwargs: dict[str, Any] = {
        "grant_organisation_id": 5,
        "grant_user_id": 1,
        "grant_role": Role.ACCESS_ADMINISTRATOR,
    }
    assert not policy.may_revoke_role(staff, other_administrators=0, **kwargs)
    assert policy.may_revoke_role(staff, other_administrators=1, **kwargs)
    assert not policy.may_revoke_role(staff, other_administrators=1, **{**kwargs, "grant_organisation_id": 6})


# --- the list's query count ----------------------------------------------------------------------


def _add_grants(world: World, n: int, start: int) -> None:
    for i in range(start, start + n):
        user = make_user(f"t-staff-{i}", synthetic_id(1 + i % 28, 1 + i % 12, 50, 600 + i), "", f"Ansatt {i}")
        grant_role(user, world.gp_office, Role.AUDITOR, granted_by=world.administrator)
        if i % 2:
            revoke_roles(user)


def test_the_list_costs_the_same_queries_for_3_and_30_grants(world, persona_client):
    admin = persona_client("administrator")
    admin.get(PAGE)  # warm up the session
    counts = {}
    for n, add in ((3, 1), (30, 27)):  # the world has 2 grants at the GP office
        _add_grants(world, add, start=n)
        with CaptureQueriesContext(connection) as queries:
            response = admin.get(PAGE)
        assert response.status_code == 200
        body = response.content.decode()
        assert body.count('data-testid="role-in-force"') + body.count('data-testid="role-revoked"') == n
        counts[n] = len(queries)
    assert counts[3] == counts[30], counts


# --- deactivating unused accounts ----------------------------------------------------------------


T0 = datetime.datetime(2026, 1, 5, 9, 0, tzinfo=datetime.UTC)


def test_unused_accounts_are_deactivated_with_a_frozen_clock(world, settings):
    settings.ACCOUNT_UNUSED_DAYS = 90
    with time_machine.travel(T0, tick=False):
        never = make_user("t-never", synthetic_id(9, 9, 90, 700), "", "Aldri Innlogget")
        fresh_never = None
        root = User.objects.create(username="root", is_superuser=True, is_staff=True)
    User.objects.filter(pk__in=[world.fastlege.pk, world.auditor.pk, root.pk]).update(
        last_login=T0 + datetime.timedelta(days=1), date_joined=T0
    )
    User.objects.filter(pk__in=[world.other_clinician.pk, world.administrator.pk]).update(
        last_login=T0 + datetime.timedelta(days=60), date_joined=T0
    )
    with time_machine.travel(T0 + datetime.timedelta(days=92), tick=False):
        fresh_never = make_user("t-fresh", synthetic_id(8, 8, 91, 710), "", "Ny Bruker")
        out = StringIO()
        call_command("deactivate_unused_accounts", "--dry-run", stdout=out)
        assert "Would deactivate 3 account(s)" in out.getvalue()
        assert User.objects.filter(is_active=False).count() == 0
        assert not events(kinds.ACCOUNT_DEACTIVATED.name)

        out = StringIO()
        call_command("deactivate_unused_accounts", stdout=out)
        assert "Deactivated 3 account(s) unused for 90 days." in out.getvalue()
    inactive = set(User.objects.filter(is_active=False).values_list("pk", flat=True))
    # Last login 91 days ago (fastlege, auditor), never logged in and created 92 days ago.
    assert inactive == {world.fastlege.pk, world.auditor.pk, never.pk}
    root.refresh_from_db()
    assert root.is_active  # superusers untouched, however old their last login
    assert fresh_never is not None and fresh_never.pk not in inactive
    deactivated = events(kinds.ACCOUNT_DEACTIVATED.name)
    assert sorted(e.details["target_user_id"] for e in deactivated) == sorted(inactive)
    assert all(e.actor_user_id is None and e.outcome == Outcome.GRANTED for e in deactivated)
    assert all(e.reason_code == "account_unused" for e in deactivated)
    # A deactivated account holds no role and has no session (the grants stay recorded).
    assert held(world.fastlege).exists()
    client = login(Client(), world.fastlege, world.gp_office)
    assert client.post("/pasient/sok/", {"national_id": LIST_PATIENT_ID}).status_code == 302
    assert client.post("/pasient/sok/", {"national_id": LIST_PATIENT_ID})["Location"].startswith("/?next=")

    # A second run finds nothing left to do.
    with time_machine.travel(T0 + datetime.timedelta(days=92), tick=False):
        out = StringIO()
        call_command("deactivate_unused_accounts", stdout=out)
    assert "Deactivated 0 account(s)" in out.getvalue()


def test_an_administrator_cannot_grant_themselves_a_role(world, persona_client):
    admin = persona_client("administrator")
    page = admin.get("/forvaltning/tilgang/").content.decode()
    options = re.findall(r'<option value="([0-9a-f-]+)"', page)
    # The grant list offers the organisation's staff, not the administrator themselves.
    assert str(world.fastlege.public_id) in options and str(world.administrator.public_id) not in options
    before = set(AccessEvent.objects.values_list("pk", flat=True))
    # Sent by hand all the same: a clear page saying why, and logged with its own reason.
    response = admin.post(GRANT, {"person": str(world.administrator.public_id), "role": "auditor"})
    assert response.status_code == 400
    assert "Du kan ikke gi deg selv en rolle" in response.content.decode()
    [event] = AccessEvent.objects.exclude(pk__in=before)
    assert (event.event_type, event.outcome, event.reason_code) == (
        "access_denied",
        "denied",
        "no_self_grant",
    )
    assert event.details["person"] == str(world.administrator.public_id)
    assert perms(world.administrator, world.gp_office) == {"role_access_administrator"}
    assert admin.get("/forvaltning/loggkontroll/").status_code == 404


def test_revoking_the_other_of_two_administrators_needs_an_active_one_left(world, persona_client):
    """Two administrators cannot revoke each other into none; a deactivated account does
    not count as the other administrator."""
    admin = persona_client("administrator")
    assert (
        admin.post(
            GRANT, {"person": str(world.fastlege.public_id), "role": "access_administrator"}
        ).status_code
        == 302
    )
    kari = held(world.fastlege, Role.ACCESS_ADMINISTRATOR).get()
    own = held(world.administrator, Role.ACCESS_ADMINISTRATOR).get()
    # Kari's account is deactivated: the administrator is then the only active one.
    type(world.fastlege).objects.filter(pk=world.fastlege.pk).update(is_active=False)
    assert admin.post(REVOKE, {"grant": own.pk}).status_code == 400
    # With Kari active again, the administrator may revoke Kari's role, but then not their own.
    type(world.fastlege).objects.filter(pk=world.fastlege.pk).update(is_active=True)
    assert admin.post(REVOKE, {"grant": kari.pk}).status_code == 302
    assert admin.post(REVOKE, {"grant": own.pk}).status_code == 400
    assert (
        grants_in_force()
        .filter(
            content_object=world.gp_office,
            permission__codename="role_access_administrator",
            user__is_active=True,
        )
        .exists()
    )


def test_a_grant_the_policy_refuses_by_hpr_number_is_logged(world, persona_client):
    world.administrator.hpr_number = "910000099"
    world.administrator.save()
    admin = persona_client("administrator")
    before = set(AccessEvent.objects.values_list("pk", flat=True))
    response = admin.post(GRANT, {"hpr_number": "910000099", "role": "auditor"})
    assert response.status_code == 400
    assert perms(world.administrator, world.gp_office) == {"role_access_administrator"}
    [event] = AccessEvent.objects.exclude(pk__in=before)
    assert (event.event_type, event.outcome) == ("access_denied", "denied")
    assert event.reason_code == "no_self_grant" and event.details["view"] == "access_role_grant"
    assert "Du kan ikke gi deg selv en rolle" in response.content.decode()
