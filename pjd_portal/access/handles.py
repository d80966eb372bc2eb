"""The one handle mechanism: after a lookup by national id (a POST), pages refer to the
patient by an opaque handle, a `PatientLookup` row bound to the user, the organisation acted
for, a purpose (the clinician's pages or the privacy officer's) and an expiry.

Unknown, expired, other users', other organisations' and the other purpose's handles all
get the same answer: an `access_denied` event (`unknown_handle`), committed, and a 404.
"""

from __future__ import annotations

import datetime
import logging
from typing import NoReturn
from uuid import UUID

from django.db import DatabaseError
from django.http import Http404
from django.utils import timezone

from pjd_portal.access import selectors
from pjd_portal.access.models import AccessAttest, LookupPurpose, PatientLookup
from pjd_portal.accounts.caller import Caller
from pjd_portal.auditlog import events
from pjd_portal.auditlog.events import Outcome
from pjd_portal.auditlog.services import record_event_committed
from pjd_portal.patients.models import Patient

logger = logging.getLogger(__name__)


class PatientNotFound(Http404):
    """Raised for a handle that is unknown, expired or someone else's: one answer for all."""


def issue_handle(caller: Caller, patient: Patient, *, purpose: LookupPurpose, minutes: int) -> PatientLookup:
    """A new handle for this user and organisation. Hand it out only once the lookup's
    event is committed (`withdraw_handle` if it cannot be)."""

    organisation = caller.organisation
    assert organisation is not None  # the caller's policy checked it
    now = timezone.now()
    return PatientLookup.objects.create(
        user=caller.user,
        organisation=organisation,
        patient=patient,
        purpose=purpose,
        created_at=now,
        expires_at=now + datetime.timedelta(minutes=minutes),
        login_key=caller.login_key,
    )


def withdraw_handle(lookup: PatientLookup) -> None:
    """Take back a handle whose lookup event could not be written (best effort: a handle
    nobody was given opens nothing either way)."""

    try:
        PatientLookup.objects.filter(pk=lookup.pk).delete()
    except DatabaseError:
        logger.warning("handle not withdrawn after a failed lookup event")


def live_handle(
    caller: Caller, handle: UUID, *, purpose: LookupPurpose, now: datetime.datetime
) -> PatientLookup | None:
    """The lookup behind a handle, if it is this user's, in this organisation, for this
    purpose, and live; read with the facts the policy decides on (`selectors.handle_facts`),
    in one query."""

    organisation = caller.organisation
    if organisation is None:
        return None
    return selectors.live_lookup(
        user_id=caller.user.pk,
        organisation_id=organisation.pk,
        login_key=caller.login_key,
        handle=handle,
        purpose=purpose,
        now=now,
    )


def end_login(*, user_id: int, login_key: str) -> int:
    """End the handles and attests of one login at its logout: their expiry is now. The
    binding to the login alone keeps them from opening anything in another login; ending
    them says so in the rows too, and also for a session taken over without a new login.
    Returns how many rows were ended."""

    if not login_key:
        return 0  # a session from before logins had keys: nothing is bound to it
    now = timezone.now()
    ended = AccessAttest.objects.filter(user_id=user_id, login_key=login_key, expires_at__gt=now).update(
        expires_at=now
    )
    ended += PatientLookup.objects.filter(user_id=user_id, login_key=login_key, expires_at__gt=now).update(
        expires_at=now
    )
    return ended


def refuse_handle(caller: Caller, handle: UUID, *, channel: str = "") -> NoReturn:
    """Log the refused handle (committed, so guessing is visible) and answer 404."""

    record_event_committed(
        events.ACCESS_DENIED(
            outcome=Outcome.NOT_FOUND,
            reason_code="unknown_handle",
            handle=str(handle),
            # The clinician's refusals have never named a channel; the privacy officer's do.
            details={"channel": channel} if channel else None,
        ),
        actor=caller.actor,
        where=caller.where,
    )
    raise PatientNotFound()


def resolve_handle(
    caller: Caller, handle: UUID, *, purpose: LookupPurpose, channel: str = ""
) -> PatientLookup:
    """The live lookup behind this user's handle, or the logged 404."""

    lookup = live_handle(caller, handle, purpose=purpose, now=timezone.now())
    if lookup is None:
        refuse_handle(caller, handle, channel=channel)
    return lookup
