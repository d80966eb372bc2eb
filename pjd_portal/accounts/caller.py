"""The caller: who is asking, for which organisation, with which roles, and what the access
log writes about them, read from the request once at the view layer.

Everything below the views (the access services, the handles, the privacy officer's and
the role administrator's services, the review queue) takes a `Caller` and never sees the
HTTP request: a management command or a test builds one without forging a request.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.http import HttpRequest

from pjd_portal.accounts.audit_context import actor_of, point_of_care_for, point_of_care_of
from pjd_portal.accounts.context import (
    active_roles,
    authenticated_user,
    authorizations_for,
    current_organisation,
    request_authorizations,
    roles_in,
)
from pjd_portal.accounts.models import Organisation, User
from pjd_portal.accounts.sessions import login_key_of
from pjd_portal.auditlog.actor import Actor, PointOfCare


@dataclass(frozen=True)
class Caller:
    user: User
    organisation: Organisation | None
    roles: frozenset[str]
    authorizations: frozenset[str]
    actor: Actor
    where: PointOfCare | None
    # This login's own key (accounts/sessions.py): the handles and attests made in it are
    # bound to it. Blank for a caller without a session (the MHD API).
    login_key: str = ""


def caller_of(request: HttpRequest) -> Caller:
    """The logged-in caller of this request. Each part is read once per request (cached on
    the request by accounts.context and accounts.audit_context), so building it again after
    a step that changed the session (a login, a change of organisation) is cheap and right."""

    user = authenticated_user(request)
    return Caller(
        user=user,
        organisation=current_organisation(request),
        roles=active_roles(request),
        authorizations=request_authorizations(request, user),
        actor=actor_of(request),
        where=point_of_care_of(request),
        login_key=login_key_of(request),
    )


def caller_acting_for(request: HttpRequest, *, pid: str, hpr_number: str, orgnr: str) -> Caller | None:
    """The person an EPJ's attest names, acting for the organisation it names, for a call
    with no session (the MHD API): the portal's own user with this national id and HPR
    number, with the roles they hold there. None when the portal knows no such active
    person or organisation: the attest cannot give anyone a role the portal has not."""

    user = User.objects.filter(pid=pid, is_active=True).first() if pid else None
    organisation = (
        Organisation.objects.filter(orgnr=orgnr).select_related("parent").first() if orgnr else None
    )
    if user is None or organisation is None or (hpr_number and user.hpr_number != hpr_number):
        return None
    return Caller(
        user=user,
        organisation=organisation,
        roles=roles_in(user, organisation),
        authorizations=authorizations_for(user.hpr_number),
        actor=actor_of(request, user),
        where=point_of_care_for(organisation),
    )
