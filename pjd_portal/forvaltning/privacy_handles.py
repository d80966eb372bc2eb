"""The privacy officer's handles: after the lookup by national id (a POST), the pages refer
to the patient by an opaque handle kept in this user's session, bound to the user and the
organisation acted for, expiring after HANDLE_MINUTES. Anyone else's handle, or an expired
one, gets the 404 of a missing page, logged."""

from __future__ import annotations

import uuid
from uuid import UUID

from django.http import Http404, HttpRequest
from django.utils import timezone

from pjd_portal.accounts.audit_context import actor_of, point_of_care_of
from pjd_portal.accounts.context import authenticated_user, current_organisation
from pjd_portal.auditlog import events
from pjd_portal.auditlog.events import Outcome
from pjd_portal.auditlog.services import record_event
from pjd_portal.patients.models import Patient

CHANNEL = "privacy_officer"
# The handles of the privacy officer's lookups, in their session: handle -> patient, user,
# organisation and expiry (Unix time).
SESSION_HANDLES_KEY = "pjd_privacy_handles"
HANDLE_MINUTES = 60


def _now_ts() -> int:
    return int(timezone.now().timestamp())


def new_handle(request: HttpRequest, patient: Patient) -> str:
    organisation = current_organisation(request)
    assert organisation is not None  # the policy checked it
    now = _now_ts()
    handles = {
        h: entry
        for h, entry in request.session.get(SESSION_HANDLES_KEY, {}).items()
        if entry["expires"] > now
    }
    handle = str(uuid.uuid4())
    handles[handle] = {
        "patient": patient.pk,
        "user": authenticated_user(request).pk,
        "organisation": organisation.pk,
        "expires": now + HANDLE_MINUTES * 60,
    }
    request.session[SESSION_HANDLES_KEY] = handles
    return handle


def patient_for(request: HttpRequest, handle: UUID) -> Patient:
    """The patient behind this user's live handle; the 404 of a missing page otherwise
    (unknown, expired, another user's or another organisation's), logged."""

    entry = request.session.get(SESSION_HANDLES_KEY, {}).get(str(handle))
    organisation = current_organisation(request)
    patient = None
    if (
        entry is not None
        and entry["expires"] > _now_ts()
        and entry["user"] == request.user.pk
        and organisation is not None
        and entry["organisation"] == organisation.pk
    ):
        patient = Patient.objects.filter(pk=entry["patient"]).first()
    if patient is None:
        record_event(
            events.ACCESS_DENIED(
                outcome=Outcome.NOT_FOUND, reason_code="unknown_handle", handle=str(handle), channel=CHANNEL
            ),
            actor=actor_of(request),
            where=point_of_care_of(request),
        )
        raise Http404()
    return patient
