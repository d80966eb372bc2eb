"""Choosing the organisation a person acts for in this session: on the chooser page, or
from an EPJ's attest (the organisation the EPJ acts for, when the person may act for it)."""

from __future__ import annotations

from django.http import HttpRequest

from pjd_portal.accounts.audit_context import actor_of, point_of_care_for
from pjd_portal.accounts.context import (
    SESSION_ORG_CHOICES_KEY,
    SESSION_ORG_CLAIMED_KEY,
    SESSION_ORG_KEY,
    authenticated_user,
    organisation_choices,
)
from pjd_portal.accounts.models import Organisation
from pjd_portal.auditlog import events
from pjd_portal.auditlog.events import Outcome
from pjd_portal.auditlog.services import record_event


def choices_of(request: HttpRequest) -> list[Organisation]:
    """From the roles held now, not from a list kept in the session: a role revoked since
    login must not remain a choice."""

    claimed_id = request.session.get(SESSION_ORG_CLAIMED_KEY)
    claimed = Organisation.objects.filter(pk=claimed_id).first() if claimed_id else None
    return organisation_choices(authenticated_user(request), claimed)


def act_for(request: HttpRequest, organisation: Organisation) -> None:
    """Act for this organisation from now on (one of `choices_of`), logged."""

    # Patient handles are bound to the organisation they were made in, so those made for
    # another organisation stop working here (access/selectors.py).
    request.session[SESSION_ORG_KEY] = organisation.pk
    # What this request read of the person's facts was for no organisation.
    for cached in ("_pjd_facts", "_pjd_actor"):
        if hasattr(request, cached):
            delattr(request, cached)
    record_event(
        events.ORGANISATION_CHOSEN(outcome=Outcome.GRANTED),
        actor=actor_of(request),
        where=point_of_care_for(organisation),
    )


def act_for_attested_organisation(request: HttpRequest, orgnr: str) -> None:
    """A person who may act for several organisations and has chosen none yet, launched
    from an EPJ acting for one of them: the EPJ's is the choice (the chooser would stand
    between the EPJ and the list). Anything else is left as it is, for the attest's own
    check to refuse."""

    if request.session.get(SESSION_ORG_KEY) is not None or not request.session.get(SESSION_ORG_CHOICES_KEY):
        return
    chosen = next((o for o in choices_of(request) if o.orgnr == orgnr), None)
    if chosen is not None:
        act_for(request, chosen)
