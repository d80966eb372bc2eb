"""Every type of access event, in one place.

Each entry is the one home of what the portal knows about a type of event: its name (the
value stored in `AccessEvent.event_type`), its label, how it maps to FHIR BALP
(logreading/fhir.py), whether it may carry a patient and a document, whether it is an access
to a patient (the patient's own log shows it and the risk signals read it) and which detail
keys it records. Adding a type is one entry here and its test (tests/test_event_registry.py);
the database column has no `choices`, so no migration.

An entry is also the constructor of its events: `DOCUMENT_OPEN(outcome=…, patient=…,
nhn_event_id=…)` checks every keyword against the entry, so a detail the type does not know,
or a patient on an event that cannot carry one, fails at once in tests instead of landing
quietly in the log.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol, TypeAlias

from django.conf import settings
from django.db import models
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

# A detail is plain JSON or what services.plain_details turns into it (a date: its text).
logger = logging.getLogger(__name__)

Detail: TypeAlias = (
    "str | int | bool | datetime.date | list[Detail] | tuple[Detail, ...] | dict[str, Detail] | None"
)


class Outcome(models.TextChoices):
    GRANTED = "granted", _("Granted")
    DENIED = "denied", _("Denied")
    NOT_FOUND = "not_found", _("Not found")
    INVALID = "invalid", _("Invalid input")
    # Granted and started, but the answer broke off before its last byte left (the client
    # went away, the connection or a source failed): a second event after the granted one.
    INTERRUPTED = "interrupted", _("Opened, but not delivered in full")


class Balp:
    """How a type maps to IHE BALP (the patterns themselves are in logreading/fhir.py)."""

    PATIENT_READ = "patient_read"
    PATIENT_QUERY = "patient_query"
    PATIENT_CREATE = "patient_create"
    LOGIN = "login"
    LOGOUT = "logout"
    AUTHENTICATION_CONTEXT = "authentication_context"
    APPLICATION_ACTIVITY = "application_activity"
    # A refusal follows the pattern of what it refused (fhir.pattern_for decides which).
    AS_REFUSED = "as_refused"


class PatientRef(Protocol):
    @property
    def pk(self) -> int: ...
    @property
    def national_id(self) -> str: ...


class DocumentRef(Protocol):
    @property
    def pk(self) -> int: ...
    @property
    def source_orgnr(self) -> str: ...


class AttestRef(Protocol):
    @property
    def pk(self) -> int: ...
    @property
    def basis(self) -> str: ...
    @property
    def purpose_of_use(self) -> str: ...
    @property
    def visit_details(self) -> Mapping[str, str]: ...


@dataclass(frozen=True, slots=True)
class Event:
    """One event as its caller describes it; services.record_event adds who and where."""

    kind: EventKind
    outcome: str
    reason_code: str = ""
    flagged_for_review: bool = False
    patient: PatientRef | None = None
    patient_national_id: str = ""
    document: DocumentRef | None = None
    source_orgnr: str = ""
    attest: AttestRef | None = None
    basis: str = ""
    purpose_of_use: str = ""
    reason_text: str = ""
    details: Mapping[str, Detail] = field(default_factory=dict)


def _misuse(problem: str) -> None:
    """A call that does not fit its entry: a TypeError where the code is developed and
    tested (AUDIT_STRICT_EVENTS, on with DEBUG), so it never ships. In production the event
    is written all the same and the fault logged: an access must never go unlogged, nor a
    page fail, because a detail was named wrong. The message names keys, never values."""

    if settings.AUDIT_STRICT_EVENTS:
        raise TypeError(problem)
    logger.error("access event does not fit the registry: %s", problem)


@dataclass(frozen=True, slots=True)
class EventKind:
    name: str
    label: Promise
    balp: str
    details: frozenset[str] = frozenset()
    carries_patient: bool = False
    carries_document: bool = False
    # An access to a patient or their documents (or its refusal): in the patient's own log,
    # and what the log review's risk signals read (logreading/risk.py).
    patient_access: bool = False
    # A granted access of this type is an earlier contact (the no-care-relation signal).
    contact: bool = False

    def __call__(
        self,
        *,
        outcome: str,
        reason_code: str = "",
        flagged_for_review: bool = False,
        patient: PatientRef | None = None,
        patient_national_id: str = "",
        document: DocumentRef | None = None,
        source_orgnr: str = "",
        attest: AttestRef | None = None,
        basis: str = "",
        purpose_of_use: str = "",
        reason_text: str = "",
        details: Mapping[str, Detail] | None = None,
        **fields: Detail,
    ) -> Event:
        """The event, checked against this entry. Details are keywords; `details` takes
        those a helper has gathered (a list's counts), checked the same way."""

        details = {**(details or {}), **fields}
        unknown = details.keys() - self.details
        if unknown:
            _misuse(f"{self.name} records no detail {sorted(unknown)}")
        if outcome not in Outcome.values:
            _misuse(f"{self.name}: unknown outcome {outcome!r}")
        if (patient is not None or patient_national_id) and not self.carries_patient:
            _misuse(f"{self.name} carries no patient")
        if (document is not None or source_orgnr) and not self.carries_document:
            _misuse(f"{self.name} carries no document")
        return Event(
            kind=self,
            outcome=outcome,
            reason_code=reason_code,
            flagged_for_review=flagged_for_review,
            patient=patient,
            patient_national_id=patient_national_id,
            document=document,
            source_orgnr=source_orgnr,
            attest=attest,
            basis=basis,
            purpose_of_use=purpose_of_use,
            reason_text=reason_text,
            details=details,
        )


# A remote document is named in the details (it has no local row); see logreading/logged_documents.py.
_REMOTE_DOCUMENT = frozenset(
    {
        "source_id",
        "remote_document_id",
        "title",
        "institution_name",
        "institution_orgnr",
        "confidentiality_code",
        "category",
        "nhn_event_id",
    }
)
# What a list's event records of what was shown and what was not (clinic/listing.py, clinic/remote.py).
_LIST_DETAILS = frozenset(
    {
        "list_request_id", "nhn_event_id", "page", "sort", "category", "shown", "document_ids",
        "remote_document_ids", "sources_not_answering", "sources_pending", "sources_incomplete",
        "hidden", "hidden_by_reason", "source_id", "source_answer", "listed", "blocked",
        "received", "total", "ceiling", "incomplete", "missing", "unverified", "wait",
        # What the list did not show (counts by reason class, never content), and the
        # sources that show this clinician no list (by id, with the reason).
        "filters", "not_shown", "not_shown_by_source", "sources_not_listing",
    }
)  # fmt: skip
_LOG_QUERY = frozenset({"view", "filters", "returned", "cursor", "log_read", "channel", "client_id", "jti"})

# What every event of a visit from the EPJ carries (the launch, the MHD API): the channel and
# client it came through, and the attest's own words, so that log review and the patient's
# log can show the EPJ's decision behind each access. build_event copies the attest's.
_VISIT = frozenset({"channel", "client_id", "decision_ref", "purpose_of_use_details"})

LOGIN = EventKind("login", _("Login"), Balp.LOGIN, frozenset({"claimed_orgnr"}))
LOGIN_REFUSED = EventKind("login_refused", _("Login refused"), Balp.LOGIN)
LOGOUT = EventKind("logout", _("Logout"), Balp.LOGOUT)
ORGANISATION_CHOSEN = EventKind("organisation_chosen", _("Organisation chosen"), Balp.AUTHENTICATION_CONTEXT)
SESSION_EXPIRED = EventKind(
    "session_expired",
    _("Session expired"),
    Balp.LOGOUT,
    frozenset({"background", "session_seconds", "idle_seconds"}),
)
PATIENT_LOOKUP = EventKind(
    "patient_lookup",
    _("Patient lookup"),
    Balp.PATIENT_QUERY,
    frozenset({"handle"}) | _VISIT,
    contact=True,
    carries_patient=True,
    patient_access=True,
)
BASIS_STATED = EventKind(
    "basis_stated",
    _("Basis for access stated"),
    Balp.PATIENT_CREATE,
    _VISIT,
    contact=True,
    carries_patient=True,
    patient_access=True,
)
EMERGENCY_ACCESS = EventKind(
    "emergency_access",
    _("Emergency access"),
    Balp.PATIENT_CREATE,
    # The AKUTT form's first step (what the situation is); the patient notice written with
    # it (pjd_portal/notices).
    frozenset({"situation", "notice_id"}) | _VISIT,
    contact=True,
    carries_patient=True,
    patient_access=True,
)
DOCUMENT_LIST = EventKind(
    "document_list",
    _("Document list"),
    Balp.PATIENT_QUERY,
    _LIST_DETAILS | _VISIT,
    carries_document=True,
    contact=True,
    carries_patient=True,
    patient_access=True,
)
DOCUMENT_OPEN = EventKind(
    "document_open",
    _("Document opened"),
    Balp.PATIENT_READ,
    # delivered_bytes: how much of it left before an open was interrupted.
    _REMOTE_DOCUMENT | {"document_id", "unavailable", "rendering", "delivered_bytes"} | _VISIT,
    carries_document=True,
    contact=True,
    carries_patient=True,
    patient_access=True,
)
DOCUMENT_VIEWED = EventKind(
    "document_viewed",
    _("Document shown in the viewer"),
    Balp.PATIENT_QUERY,
    _REMOTE_DOCUMENT | {"document_id"} | _VISIT,
    # The viewer shows one document's description and frames the open (its own event): the
    # description is an access to the patient as well, logged before it is shown.
    carries_document=True,
    carries_patient=True,
    patient_access=True,
)
ACCESS_DENIED = EventKind(
    "access_denied",
    _("Access denied"),
    Balp.AS_REFUSED,
    _REMOTE_DOCUMENT
    | {
        "view",
        "handle",
        "document_id",
        "channel",
        "event_id",
        "review_item",
        "grant",
        "hpr_number",
        "role",
        "person",
    }
    | _VISIT,
    carries_document=True,
    carries_patient=True,
    patient_access=True,
)
# A launch from the clinician's EPJ (the portal launch with the trust framework's attest, or a
# SMART on FHIR EHR launch) that did not reach a patient: why, never the patient's id.
EPJ_LAUNCH_REFUSED = EventKind(
    "epj_launch_refused",
    _("Launch from the EPJ refused"),
    Balp.APPLICATION_ACTIVITY,
    frozenset({"iss", "launch_id"}) | _VISIT,
)
# A call of the MHD API (ITI-67, ITI-68) refused before a patient was reached: a token or
# attest the portal could not accept, from a client it knows.
API_CALL_REFUSED = EventKind(
    "api_call_refused",
    _("API call refused"),
    Balp.APPLICATION_ACTIVITY,
    frozenset({"jti", "interaction"}) | _VISIT,
)
# A request refused for going over a rate limit (lib/rate_limits.py): a clinician's patient
# lookups, or an API client's calls. Nothing was looked up; which limit, and when the caller
# may try again. The first refusal in a window is logged (a flood must not fill the log);
# the log review's rate_limited signal reads it.
RATE_LIMITED = EventKind(
    "rate_limited",
    _("Refused: too many requests"),
    Balp.APPLICATION_ACTIVITY,
    frozenset({"limit", "period", "retry_after", "channel", "client_id"}),
)
PATIENT_LOG_READ = EventKind(
    "patient_log_read",
    _("Patient's access log read"),
    Balp.PATIENT_QUERY,
    _LOG_QUERY,
    carries_patient=True,
)
PRIVACY_CHOICES_VIEWED = EventKind(
    "privacy_choices_viewed",
    _("Privacy choices viewed"),
    Balp.PATIENT_QUERY,
    frozenset({"channel", "handle"}),
    carries_patient=True,
    # The page shows who the patient is and their documents' titles: the patient's own log
    # lists it and the risk signals read it, as they did when it was logged as a lookup.
    patient_access=True,
)
LOG_SEARCH = EventKind(
    "log_search", _("Access log searched"), Balp.APPLICATION_ACTIVITY, _LOG_QUERY, carries_patient=True
)
LOG_EVENT_VIEW = EventKind(
    "log_event_view",
    _("Access log event viewed"),
    Balp.APPLICATION_ACTIVITY,
    frozenset({"event_id", "review_item"}),
    carries_patient=True,
)
LOG_EXPORT = EventKind(
    "log_export",
    _("Access log exported"),
    Balp.APPLICATION_ACTIVITY,
    frozenset({"filters", "format", "max_rows"}),
    carries_patient=True,
)
# The auditor's overview of the log review (review/overview.py): counts only, no patient;
# the period it counted over and how many events that was.
LOG_OVERVIEW_VIEW = EventKind(
    "log_overview_view",
    _("Log review overview viewed"),
    Balp.APPLICATION_ACTIVITY,
    frozenset({"date_from", "date_to", "total"}),
)
# The privacy officer's changes to a patient's privacy choices (forvaltning/privacy_services.py).
_PRIVACY_DETAILS = frozenset(
    {
        "kind",
        "reference",
        "request_date",
        "channel",
        "choice_id",
        "blocked_hpr_number",
        "previous_code",
        "restored_code",
    }
)
PRIVACY_CHOICE_REGISTERED = EventKind(
    "privacy_choice_registered",
    _("Privacy choice registered"),
    Balp.APPLICATION_ACTIVITY,
    _PRIVACY_DETAILS,
    carries_patient=True,
)
PRIVACY_CHOICE_LIFTED = EventKind(
    "privacy_choice_lifted",
    _("Privacy choice lifted"),
    Balp.APPLICATION_ACTIVITY,
    _PRIVACY_DETAILS,
    carries_patient=True,
)
DOCUMENT_BLOCKED = EventKind(
    "document_blocked",
    _("Document blocked"),
    Balp.APPLICATION_ACTIVITY,
    _PRIVACY_DETAILS | {"block_id"},
    carries_patient=True,
    carries_document=True,
)
DOCUMENT_UNBLOCKED = EventKind(
    "document_unblocked",
    _("Document block lifted"),
    Balp.APPLICATION_ACTIVITY,
    _PRIVACY_DETAILS | {"block_id"},
    carries_patient=True,
    carries_document=True,
)
# An auditor's change of a review queue item's status (pjd_portal/review).
REVIEW_STATUS_CHANGED = EventKind(
    "review_status_changed",
    _("Review status changed"),
    Balp.APPLICATION_ACTIVITY,
    frozenset({"review_item", "event_id", "version", "from", "to", "current_version", "note"}),
)
# An access administrator's grant and revocation of a portal role (forvaltning/roles.py).
_ROLE_DETAILS = frozenset(
    {"grant", "grant_id", "role", "via", "person", "organisation_orgnr", "target_user_id", "target_public_id", "target_name", "target_hpr_number", "hpr_number", "view"}
)  # fmt: skip
ROLE_GRANTED = EventKind("role_granted", _("Role granted"), Balp.APPLICATION_ACTIVITY, _ROLE_DETAILS)
ROLE_REVOKED = EventKind("role_revoked", _("Role revoked"), Balp.APPLICATION_ACTIVITY, _ROLE_DETAILS)
# An account deactivated for long disuse (deactivate_unused_accounts).
ACCOUNT_DEACTIVATED = EventKind(
    "account_deactivated",
    _("Account deactivated"),
    Balp.APPLICATION_ACTIVITY,
    frozenset(
        {"command", "unused_days", "target_user_id", "target_public_id", "target_name", "target_hpr_number", "last_login", "date_joined"}
    ),
)  # fmt: skip

# Each attempt to tell the patient of an AKUTT or FORHØYET access (pjd_portal/notices/delivery.py),
# written by the worker as Actor.system: no access to the patient's records.
_NOTICE_DETAILS = frozenset({"notice_id", "kind", "attempt", "max_attempts", "error", "next_attempt_at"})
PATIENT_NOTICE_DELIVERED = EventKind(
    "patient_notice_delivered",
    _("Patient notice delivered"),
    Balp.APPLICATION_ACTIVITY,
    _NOTICE_DETAILS,
    carries_patient=True,
)
PATIENT_NOTICE_FAILED = EventKind(
    "patient_notice_failed",
    _("Patient notice not delivered"),
    Balp.APPLICATION_ACTIVITY,
    _NOTICE_DETAILS,
    carries_patient=True,
)

KINDS: dict[str, EventKind] = {kind.name: kind for kind in globals().values() if isinstance(kind, EventKind)}
PATIENT_ACCESS_TYPES = frozenset(name for name, kind in KINDS.items() if kind.patient_access)
CONTACT_TYPES = frozenset(name for name, kind in KINDS.items() if kind.contact)


def kind(name: str) -> EventKind:
    """The entry for a stored type name (KeyError for one the portal never wrote)."""

    return KINDS[name]


def label(name: str) -> str:
    """The type's label for people; an unknown name (a type since retired) as it is stored."""

    found = KINDS.get(name)
    return str(found.label) if found is not None else name


def choices() -> list[tuple[str, Promise]]:
    """(name, label) for forms that filter by type, in the order above; the labels stay
    lazy, translated when shown."""

    return [(k.name, k.label) for k in KINDS.values()]
