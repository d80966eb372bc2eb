"""Roles have one record: django-guardian's permission rows on the organisation. A revoked
role is gone from everything that reads roles; migration 0006 moved Membership's active
grants there and its revoked ones to RevokedRoleGrant."""

from __future__ import annotations

import datetime

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test import Client
from django.utils import timezone

from pjd_portal.accounts.context import organisation_choices
from pjd_portal.accounts.models import Organisation, OrganisationKind, RevokedRoleGrant, Role, User
from pjd_portal.accounts.roles import grants_in_force, organisations_held, roles_held_by_pid
from pjd_portal.auditlog import events as kinds
from tests.builders import events, login, roles_held

PAGE = "/forvaltning/tilgang/"
GRANT = "/forvaltning/tilgang/tildel/"
REVOKE = "/forvaltning/tilgang/trekk-tilbake/"


def test_a_revoked_role_is_gone_everywhere(world, persona_client):
    admin = persona_client("administrator")
    assert (
        admin.post(GRANT, {"person": str(world.fastlege.public_id), "role": Role.AUDITOR}).status_code == 302
    )
    as_fastlege = login(Client(), world.fastlege, world.gp_office)
    assert as_fastlege.get("/forvaltning/loggkontroll/").status_code == 200
    grant = grants_in_force().get(user=world.fastlege, permission__codename="role_auditor")

    assert admin.post(REVOKE, {"grant": grant.pk}).status_code == 302
    # Every reader of roles: the request's roles, the login's, the chooser, own staff.
    assert as_fastlege.get("/forvaltning/loggkontroll/").status_code == 404
    assert roles_held(world.fastlege, world.gp_office) == {Role.CLINICIAN}
    assert roles_held_by_pid(world.fastlege.pid) == {Role.CLINICIAN}
    assert organisation_choices(world.fastlege, None) == [world.gp_office]
    body = admin.get(PAGE).content.decode()
    assert body.count('data-testid="role-in-force"') == 2  # fastlege's clinician, the administrator
    assert body.count('data-testid="role-revoked"') == 1
    assert [e.details["grant_id"] for e in events(kinds.ROLE_REVOKED.name)] == [grant.pk]

    # Revoking the last one leaves no role at all, and the person still own staff: the
    # role can be granted again, by HPR number too.
    clinician = grants_in_force().get(user=world.fastlege)
    assert admin.post(REVOKE, {"grant": clinician.pk}).status_code == 302
    assert roles_held_by_pid(world.fastlege.pid) == frozenset()
    assert organisation_choices(world.fastlege, None) == []
    assert organisations_held([world.fastlege.pk]) == {world.fastlege.pk: frozenset({world.gp_office.pk})}
    response = admin.post(GRANT, {"hpr_number": world.fastlege.hpr_number, "role": Role.CLINICIAN})
    assert response.status_code == 302
    assert roles_held(world.fastlege, world.gp_office) == {Role.CLINICIAN}


# --- migration 0006: Membership -> guardian ----------------------------------------------------

BEFORE = [("accounts", "0004_legal_entity")]
AFTER = [("accounts", "0007_remove_membership")]


@pytest.mark.django_db(transaction=True)
def test_the_migration_moves_active_grants_to_guardian_and_keeps_revoked_ones_out():
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    old = executor.loader.project_state(BEFORE).apps
    OldUser = old.get_model("accounts", "User")
    OldOrganisation = old.get_model("accounts", "Organisation")
    Membership = old.get_model("accounts", "Membership")
    org = OldOrganisation.objects.create(
        orgnr="310000000", name="Storgata", kind=OrganisationKind.FASTLEGEKONTOR
    )
    national = OldOrganisation.objects.create(
        orgnr="310900001", name="PJD", kind=OrganisationKind.FORVALTNING
    )
    admin = OldUser.objects.create(username="t-admin", pid="19058528700")
    doctor = OldUser.objects.create(username="t-lege", pid="12037512300")
    officer = OldUser.objects.create(username="t-pvo", pid="09127937600")
    then = timezone.now() - datetime.timedelta(days=400)

    def membership(**kwargs):
        m = Membership.objects.create(**kwargs)
        Membership.objects.filter(pk=m.pk).update(granted_at=then)  # auto_now_add
        return m

    membership(user=admin, organisation=org, role=Role.ACCESS_ADMINISTRATOR)
    membership(user=doctor, organisation=org, role=Role.CLINICIAN, granted_by=admin)
    membership(
        user=doctor,
        organisation=org,
        role=Role.AUDITOR,
        granted_by=admin,
        active=False,
        revoked_at=then + datetime.timedelta(days=1),
        revoked_by=admin,
    )
    membership(user=officer, organisation=national, role=Role.PRIVACY_OFFICER)

    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(AFTER)

    in_force = {
        (row.user.username, row.content_object.orgnr, row.role, row.granted_by_id)
        for row in grants_in_force().select_related("user", "content_object", "permission")
    }
    assert in_force == {
        ("t-admin", "310000000", Role.ACCESS_ADMINISTRATOR, None),
        ("t-lege", "310000000", Role.CLINICIAN, admin.pk),
        ("t-pvo", "310900001", Role.PRIVACY_OFFICER, None),  # a guardian permission now
    }
    assert all(row.granted_at == then for row in grants_in_force())
    # The revoked grant is no role: not in guardian's table, kept as a revoked grant.
    [revoked] = RevokedRoleGrant.objects.all()
    assert (revoked.user.username, revoked.role, revoked.grant_id) == ("t-lege", Role.AUDITOR, None)
    assert revoked.granted_at == then and revoked.revoked_at == then + datetime.timedelta(days=1)
    assert revoked.granted_by_id == revoked.revoked_by_id == admin.pk
    assert roles_held_by_pid("12037512300") == {Role.CLINICIAN}
    assert organisations_held([doctor.pk]) == {doctor.pk: frozenset({org.pk})}

    # And back: the same Membership rows, the privacy officer's permission gone again.
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(BEFORE)
    old = MigrationExecutor(connection).loader.project_state(BEFORE).apps
    Membership = old.get_model("accounts", "Membership")
    rows = {
        (m.user.username, m.role, m.active, m.granted_at == then, m.granted_by_id)
        for m in Membership.objects.select_related("user")
    }
    assert rows == {
        ("t-admin", Role.ACCESS_ADMINISTRATOR, True, True, None),
        ("t-lege", Role.CLINICIAN, True, True, admin.pk),
        ("t-lege", Role.AUDITOR, False, True, admin.pk),
        ("t-pvo", Role.PRIVACY_OFFICER, True, True, None),
    }
    Permissions = old.get_model("accounts", "OrganisationUserObjectPermission")
    assert set(Permissions.objects.values_list("permission__codename", flat=True)) == {
        "role_access_administrator",
        "role_clinician",
    }
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(AFTER)
    assert User.objects.count() == 3 and Organisation.objects.count() == 2
    # Leave the schema as every later test expects it: all migrations applied (since
    # accounts 0008 the latest is past AFTER).
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())
