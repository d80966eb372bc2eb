"""The logged-in person's organisation context, kept in the session."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from guardian.core import ObjectPermissionChecker

from pjd_portal.accounts import facts
from pjd_portal.accounts.models import HprAuthorization, Organisation, User
from pjd_portal.accounts.roles import organisations_with_roles, roles_from_permissions

SESSION_ORG_KEY = "pjd_org_id"
# Set at login when the person may act for several organisations and must choose.
SESSION_ORG_CHOICES_KEY = "pjd_org_choices"
SESSION_ORG_CLAIMED_KEY = "pjd_org_claimed"


def organisation_choices(user: User, claimed: Organisation | None) -> list[Organisation]:
    """The organisations a person may act for: where they hold an active role, and the
    one HelseID says they logged in for (orgnr_child/orgnr_parent), role or not."""

    orgs = {org.pk: org for org in organisations_with_roles(user)}
    if claimed is not None:
        orgs.setdefault(claimed.pk, claimed)
    return sorted(orgs.values(), key=lambda o: o.name)


def _user_key(request: HttpRequest) -> int | None:
    return request.user.pk if request.user.is_authenticated else None


Facts = tuple[Organisation | None, frozenset[str], frozenset[str]]


def _facts(request: HttpRequest) -> Facts:
    """The organisation acted for, the roles there and the HPR authorizations: from the
    session while they still hold (accounts/facts.py), else read (three queries) and kept.
    Cached on the request, keyed by the person: after a logout or a login within the
    request they are read again."""

    key = _user_key(request)
    cached: tuple[int | None, Facts] | None = getattr(request, "_pjd_facts", None)
    if cached is not None and cached[0] == key:
        return cached[1]
    found: Facts = (None, frozenset(), frozenset())
    if key is not None:
        user = authenticated_user(request)
        session = request.session
        org_id = session.get(SESSION_ORG_KEY)
        # A request built without a session's organisation (a management command's, a
        # test's) may carry the organisation it acts for: its facts are read, not kept.
        preset: tuple[int | None, Organisation | None] | None = getattr(request, "_pjd_organisation", None)
        kept = facts.kept(session, user, org_id) if preset is None else None
        if preset is not None and preset[0] == key:
            org = preset[1]
            kept = (
                org,
                roles_in(user, org) if org is not None else frozenset(),
                authorizations_for(user.hpr_number),
            )
        elif kept is None:
            org = None
            if org_id is not None:
                org = Organisation.objects.filter(pk=org_id).select_related("parent").first()
            roles = roles_in(user, org) if org is not None else frozenset()
            kept = (org, roles, authorizations_for(user.hpr_number))
            facts.keep(session, user, org_id, *kept)
        org, roles, authorizations = kept
        # An inactive account holds no role, whatever was kept (the row is read every request).
        found = (org, roles if user.is_active else frozenset(), authorizations)
    request._pjd_facts = (key, found)  # type: ignore[attr-defined]
    return found


def resolved_organisation(request: HttpRequest) -> Organisation | None:
    """The organisation, if this request has already read it; never reads it (the request
    log's question: a log line must not add queries to a request)."""

    cached: tuple[int | None, Facts] | None = getattr(request, "_pjd_facts", None)
    return cached[1][0] if cached is not None else None


def current_organisation(request: HttpRequest) -> Organisation | None:
    """The organisation the user acts for in this session."""

    return _facts(request)[0]


def active_roles(request: HttpRequest) -> frozenset[str]:
    """The user's active roles in the current organisation."""

    return _facts(request)[1]


def roles_in(user: Any, org: Organisation) -> frozenset[str]:
    """The roles in force: the user's django-guardian object permissions on the
    organisation (see accounts/roles.py), in one query. An inactive account holds no role."""

    if not user.is_active:
        return frozenset()
    return roles_from_permissions(ObjectPermissionChecker(user).get_user_perms(org))


def authenticated_user(request: HttpRequest) -> User:
    """The logged-in user; callers sit behind login_required."""

    user = request.user
    assert isinstance(user, User), "view must require login"
    return user


def authorizations_for(hpr_number: str) -> frozenset[str]:
    if not hpr_number:
        return frozenset()
    return frozenset(HprAuthorization.objects.filter(hpr_number=hpr_number).values_list("code", flat=True))


def request_authorizations(request: HttpRequest, user: User) -> frozenset[str]:
    """The person's HPR authorizations (the policy's facts and the access log's actor both
    need them)."""

    if _user_key(request) == user.pk:
        return _facts(request)[2]
    return authorizations_for(user.hpr_number)


def portal_context(request: HttpRequest) -> dict[str, Any]:
    """Template context: who is logged in and for which organisation."""

    if not getattr(request, "user", None) or not request.user.is_authenticated:
        return {}
    return {
        "current_organisation": current_organisation(request),
        "may_change_organisation": len(request.session.get(SESSION_ORG_CHOICES_KEY) or []) > 1,
    }
