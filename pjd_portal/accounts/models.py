"""People and organisations: who is logged in and for whom they act."""

from __future__ import annotations

import uuid

from django.contrib.auth.models import AbstractUser
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from guardian.models import GroupObjectPermissionBase, UserObjectPermissionBase


class OrganisationKind(models.TextChoices):
    FASTLEGEKONTOR = "fastlegekontor", _("GP office")
    LEGEVAKT = "legevakt", _("Emergency primary care (legevakt)")
    SYKEHJEM = "sykehjem", _("Nursing home")
    HELSEFORETAK = "helseforetak", _("Hospital trust")
    AVTALESPESIALIST = "avtalespesialist", _("Contract specialist")
    FORVALTNING = "forvaltning", _("Administration")


class Organisation(models.Model):
    """A legal entity or sub-unit, known by its org.nr (Enhetsregisteret)."""

    orgnr = models.CharField(max_length=9, unique=True)
    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=20, choices=OrganisationKind.choices)
    region = models.CharField(max_length=100, blank=True)
    is_source = models.BooleanField(default=False)
    is_consumer = models.BooleanField(default=False)
    # A sub-unit's legal entity (Enhetsregisteret: underenhet -> hovedenhet; HelseID's
    # orgnr_child / orgnr_parent). The access log records both: the sub-unit as the
    # point of care, the parent as the legal entity responsible.
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="units")

    class Meta:
        ordering = ["name"]
        # The portal roles held in an organisation, as django-guardian object permissions
        # on it (ROLE_PERMISSIONS below maps roles to these). The national privacy officer
        # role is held in the organisation it was granted in (the PJD administration).
        permissions = [
            ("role_clinician", "Holds the clinician role in the organisation"),
            ("role_auditor", "Holds the auditor role in the organisation"),
            ("role_access_administrator", "Holds the access administrator role in the organisation"),
            ("role_privacy_officer", "Holds the national privacy officer role in the organisation"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.orgnr})"


class User(AbstractUser):
    """A person who logs in with HelseID, keyed on the national id (pid), never e-mail.

    `username` is an opaque generated value: the pid is a national id and must not turn
    up wherever Django shows or logs a username.
    """

    pid = models.CharField(max_length=11, unique=True, null=True, blank=True)
    hpr_number = models.CharField(max_length=9, blank=True, db_index=True)
    display_name = models.CharField(max_length=200, blank=True)
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)

    def __str__(self) -> str:
        return self.display_name or self.username


class HprAuthorization(models.Model):
    """The local copy of the health personnel register (HPR): authorizations per number.

    Codes from Volven 9060: LE lege, SP sykepleier, JM jordmor, PS psykolog, …
    """

    hpr_number = models.CharField(max_length=9, db_index=True)
    code = models.CharField(max_length=5)
    name = models.CharField(max_length=100, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["hpr_number", "code"], name="uniq_hpr_authorization")]

    def __str__(self) -> str:
        return f"{self.hpr_number}:{self.code}"


class Role(models.TextChoices):
    CLINICIAN = "clinician", _("Clinician")
    AUDITOR = "auditor", _("Auditor")
    ACCESS_ADMINISTRATOR = "access_administrator", _("Access administrator")
    PRIVACY_OFFICER = "privacy_officer", _("Privacy officer")


# Role -> its permission codename on Organisation (Organisation.Meta.permissions).
ROLE_PERMISSIONS: dict[str, str] = {
    Role.CLINICIAN: "role_clinician",
    Role.AUDITOR: "role_auditor",
    Role.ACCESS_ADMINISTRATOR: "role_access_administrator",
    Role.PRIVACY_OFFICER: "role_privacy_officer",
}
PERMISSION_ROLES: dict[str, str] = {codename: role for role, codename in ROLE_PERMISSIONS.items()}


class OrganisationUserObjectPermission(UserObjectPermissionBase):
    """django-guardian's per-object permissions of users on an Organisation, with a direct
    foreign key (no generic content type and text primary key).

    A row with a role permission (ROLE_PERMISSIONS) is a role in force, and the one record
    of it: what the login, the organisation chooser, the pages and the access
    administrator's list read (accounts/roles.py). It carries the grant's metadata, shown
    on the access administrator's page. Revoking the role deletes the row (its end is kept
    in RevokedRoleGrant and in the access log's `role_revoked` event). guardian's unique
    (user, permission, object) keeps one grant in force per person, organisation and role.
    """

    content_object = models.ForeignKey(Organisation, on_delete=models.CASCADE)
    # A default, not auto_now_add: the data migration copies the original times.
    granted_at = models.DateTimeField(default=timezone.now)
    # None: registered outside the portal (seed_demo, a migration, a shell).
    granted_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.PROTECT, related_name="+")

    @property
    def role(self) -> str:
        """The portal role this permission is ("" for any other permission)."""

        return PERMISSION_ROLES.get(self.permission.codename, "")

    def get_role_display(self) -> str:
        return str(Role(self.role).label) if self.role else self.permission.codename


class OrganisationGroupObjectPermission(GroupObjectPermissionBase):
    """The group variant, so guardian's group lookups use a direct foreign key too. The
    portal grants roles to users only; no rows are expected here."""

    content_object = models.ForeignKey(Organisation, on_delete=models.CASCADE)


class RevokedRoleGrant(models.Model):
    """A role that was in force and was revoked: who held which role where, granted and
    revoked when and by whom. Written once, when the role's permission row is deleted, in
    the same transaction; never changed.

    Not a role: nothing reads this to decide what anyone may do. It is what the access
    administrator's page lists under "Revoked roles", and it keeps a former holder among
    the organisation's own staff (someone who has held a role there), to whom a role may be
    granted again.
    """

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="+")
    organisation = models.ForeignKey(Organisation, on_delete=models.CASCADE, related_name="+")
    role = models.CharField(max_length=30, choices=Role.choices)
    # The permission row's id while the role was in force (what the revoke form posted, and
    # the `grant_id` of its audit events); null for grants revoked before migration 0006.
    grant_id = models.BigIntegerField(null=True, blank=True)
    granted_at = models.DateTimeField()
    granted_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    # Null only for a grant revoked before migration 0006 without a recorded time.
    revoked_at = models.DateTimeField(null=True, blank=True, default=timezone.now)
    revoked_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.PROTECT, related_name="+")

    class Meta:
        indexes = [
            models.Index(fields=["organisation", "-revoked_at"], name="acc_revoked_org_time"),
            models.Index(fields=["grant_id"], name="acc_revoked_grant"),
        ]

    def __str__(self) -> str:
        return f"{self.user} {self.role} @ {self.organisation_id} (revoked)"


class FactsVersion(models.Model):
    """How often what a person may do has changed: a role granted or revoked, an HPR
    authorization, an organisation's record (accounts/facts.py moves it on, in the
    transaction of the change). Read with the user on every request (one join); the facts
    kept in the session hold only while it has not moved. A table of its own, so that no
    ordinary save of a user loaded before a change can write the old number back."""

    user = models.OneToOneField(
        User, on_delete=models.CASCADE, primary_key=True, related_name="facts_version"
    )
    version = models.PositiveBigIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.user_id}: {self.version}"


class DpopProofUse(models.Model):
    """A DPoP proof's `jti`, seen once (RFC 9449 § 11.1): a proof presented again, to this
    instance or any other, is refused. Kept while the proof could still be accepted (its
    `iat` window), then deleted; only the hash of the key and the jti is stored."""

    proof_hash = models.CharField(max_length=64, primary_key=True)
    expires_at = models.DateTimeField(db_index=True)

    def __str__(self) -> str:
        return f"DPoP proof {self.proof_hash[:8]}"


class ClientAssertionUse(models.Model):
    """An API client's assertion `jti`, seen once (accounts/client_assertions.py): an
    assertion presented again, to this instance or any other, is refused by the primary
    key, whatever the cache does. Kept while the assertion could still be accepted (its
    `exp` and the leeway), then deleted; only the hash of the client id and jti is stored."""

    assertion_hash = models.CharField(max_length=64, primary_key=True)
    expires_at = models.DateTimeField(db_index=True)

    def __str__(self) -> str:
        return f"client assertion {self.assertion_hash[:8]}"
