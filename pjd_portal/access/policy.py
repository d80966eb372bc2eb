"""THE access policy: the one place that decides who may see which patient and document.

Everything here is pure: it takes already-loaded facts (see `selectors.py`) and returns a
`Decision` with a reason code for the audit trail and a message for the user. Views call
these functions and act on the answer; they never decide by themselves.

The rules follow kjernejournalforskriften and NHN's PJD (see docs/domain.md):
- a user needs an active clinician role in the organisation they act for, an HPR number
  and a health-personnel authorization;
- UNNTAK only for a fastlege on own list patients, and for doctors and nurses at a
  legevakt or in specialist care; others state SAMTYKKE or AKUTT;
- AKUTT and FORHØYET need a written reason and are flagged for review;
- a blocked clinician sees nothing, even in an emergency; a reservation hides everything;
  a restriction needs a FORHØYET basis;
- NORS documents are hidden (the list only counts them); each category has a window;
- each source's own rules say which authorizations and organisation kinds may see its
  list and open its documents (Helse Nord: the list only for those who may open).
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from dataclasses import dataclass, field

from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _

from pjd_portal.access.models import Basis, PurposeOfUse
from pjd_portal.accounts.models import OrganisationKind, Role
from pjd_portal.documents import rendering
from pjd_portal.documents.facts import DocumentFacts
from pjd_portal.documents.models import ConfidentialityCode, DocumentCategory
from pjd_portal.notices.models import NoticeKind

# Authorizations (Volven 9060) that make someone health personnel who may use the portal.
HEALTH_PERSONNEL_AUTHORIZATIONS = frozenset({"LE", "SP", "JM", "PS", "FA1", "HE"})
DOCTORS_AND_NURSES = frozenset({"LE", "SP"})

REASON_REQUIRED = frozenset({Basis.AKUTT, Basis.FORHOYET_SAMTYKKE, Basis.FORHOYET_AKUTT})
ELEVATED = frozenset({Basis.FORHOYET_SAMTYKKE, Basis.FORHOYET_AKUTT})
FLAGGED_FOR_REVIEW = REASON_REQUIRED
# What the patient is told of each flagged basis (pjd_portal/notices): every flagged access
# is one notice, "pasienten får beskjed".
PATIENT_NOTICE_KIND = {
    Basis.AKUTT: NoticeKind.AKUTT,
    Basis.FORHOYET_SAMTYKKE: NoticeKind.FORHOYET,
    Basis.FORHOYET_AKUTT: NoticeKind.FORHOYET,
}
assert PATIENT_NOTICE_KIND.keys() == FLAGGED_FOR_REVIEW
MIN_REASON_LENGTH = 15
# Specialist care (hospital trusts, contract specialists) and the emergency chain.
UNNTAK_ORGANISATION_KINDS = frozenset(
    {OrganisationKind.LEGEVAKT, OrganisationKind.HELSEFORETAK, OrganisationKind.AVTALESPESIALIST}
)

# Kjernejournalforskriften windows by service date, in calendar years; None = no limit.
CATEGORY_WINDOW_YEARS: dict[str, int | None] = {
    DocumentCategory.EPIKRISE: None,
    DocumentCategory.PROVESVAR: 1,
    DocumentCategory.ORGANFUNKSJON: 5,
    DocumentCategory.BILDEDIAGNOSTIKK: 5,
    DocumentCategory.KORRESPONDANSE: 1,
}

HIDDEN_CONFIDENTIALITY = frozenset({ConfidentialityCode.NORS})


@dataclass(frozen=True)
class ClinicianFacts:
    user_id: int
    hpr_number: str
    authorizations: frozenset[str]
    organisation_id: int | None
    organisation_kind: str | None
    has_clinician_role: bool


@dataclass(frozen=True)
class PatientFacts:
    patient_id: int
    fastlege_hpr_number: str
    reserved: bool
    restricted: bool
    blocked_hpr_numbers: frozenset[str] = field(default_factory=frozenset)
    address_protected: bool = False


@dataclass(frozen=True)
class AttestFacts:
    basis: str
    user_id: int
    organisation_id: int
    patient_id: int
    expires_at: datetime.datetime


@dataclass(frozen=True)
class SourceRules:
    """A source's own rules (DocumentSource): who may see its list, who may open."""

    source_id: int
    list_authorizations: frozenset[str]
    list_organisation_kinds: frozenset[str]
    open_authorizations: frozenset[str]
    open_organisation_kinds: frozenset[str]
    list_only_if_may_open: bool = False


# What the portal can show safely (what documents.rendering renders); anything else is
# refused, not passed through. CDA is application/hl7-v3+xml.
SHOWABLE_CONTENT_TYPES = rendering.ALLOWED_CONTENT_TYPES
# A remote document reference that names no content type (FHIR does not require one): it is
# listed and may be opened, and then only a showable type is taken from the source
# (`SHOWABLE_CONTENT_TYPES` is what the source is asked for and all that is accepted).
UNKNOWN_CONTENT_TYPE = ""


def content_type_may_be_shown(content_type: str) -> bool:
    return content_type in SHOWABLE_CONTENT_TYPES or content_type == UNKNOWN_CONTENT_TYPE


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason_code: str
    message: str = ""

    def __bool__(self) -> bool:
        return self.allowed


ALLOW = Decision(True, "ok")


def _deny(code: str, message: str) -> Decision:
    return Decision(False, code, message)


# --- Login ------------------------------------------------------------------------------

# HelseID's security level for a login with a high-assurance method (BankID, Buypass).
REQUIRED_SECURITY_LEVEL = "4"
# Roles that let staff without an HPR number log in: the administration area only (the
# clinical pages still need a clinician role, an HPR number and an authorization).
ROLES_WITHOUT_HPR = frozenset({Role.AUDITOR, Role.ACCESS_ADMINISTRATOR, Role.PRIVACY_OFFICER})


@dataclass(frozen=True)
class LoginFacts:
    """What an ID token says of the person, and the roles they already hold."""

    pid: str
    security_level: str
    hpr_number: str
    active_roles: frozenset[str]  # in any organisation


# What the refusal page says, by the reason a login was refused: the policy's own reasons
# and HelseID's answers (cancelled, unreachable, an error). Anything else is an answer that
# could not be verified.
_LOGIN_REFUSAL_MESSAGES = {
    "no_hpr_number": _(
        "The portal is for health personnel. Your identity has no number in the health personnel register (HPR)."
    ),
    "security_level_too_low": _(
        "The portal requires login at the high security level (level 4, e.g. BankID). Log in again with such a method."
    ),
    "cancelled": _("The login was cancelled."),
    "provider_unreachable": _("HelseID cannot be reached right now. Please try again in a minute."),
    "provider_error": _("HelseID reported an error during login."),
}
_LOGIN_NOT_VERIFIED = _(
    "The login answer from HelseID could not be verified. Nothing was stored. Please try again."
)


def login_refusal_message(reason_code: str) -> str:
    """The sentence the login refusal page shows for a refusal with this reason code."""

    return str(_LOGIN_REFUSAL_MESSAGES.get(reason_code, _LOGIN_NOT_VERIFIED))


def _deny_login(code: str) -> Decision:
    return _deny(code, login_refusal_message(code))


def may_log_in(login: LoginFacts) -> Decision:
    """May this person log in at all? A pid, security level 4, and an HPR number, unless
    they already hold an administration role; everyone else is not health personnel.

    `active_roles` is every role the person holds; whether they matter (only without an
    HPR number) is this rule's business, not the caller's."""

    if not login.pid:
        return _deny_login("missing_pid")
    if login.security_level != REQUIRED_SECURITY_LEVEL:
        return _deny_login("security_level_too_low")
    if not login.hpr_number and not (login.active_roles & ROLES_WITHOUT_HPR):
        return _deny_login("no_hpr_number")
    return ALLOW


def may_use_clinical_portal(clinician: ClinicianFacts) -> Decision:
    """May this user look up patients at all (in the organisation they act for)?"""

    if not clinician.has_clinician_role or clinician.organisation_id is None:
        return _deny("no_clinician_role", str(_("You do not have a clinician role in this organisation.")))
    if not clinician.hpr_number:
        return _deny("no_hpr_number", str(_("You are not registered as health personnel (HPR).")))
    if not clinician.authorizations & HEALTH_PERSONNEL_AUTHORIZATIONS:
        return _deny("no_authorization", str(_("You have no health personnel authorization in HPR.")))
    return ALLOW


def may_state_basis(clinician: ClinicianFacts, patient: PatientFacts, basis: str, reason: str) -> Decision:
    """May this clinician state this basis for this patient?"""

    portal = may_use_clinical_portal(clinician)
    if not portal:
        return portal
    if basis not in Basis.values:
        return _deny("invalid_basis", str(_("Choose a basis for access.")))
    # No basis, emergency or elevated, opens what a block or a reservation closes; say so
    # now rather than record an access that cannot happen.
    status = _patient_status(clinician, patient)
    if not status:
        return status
    if basis in REASON_REQUIRED and len(reason.strip()) < MIN_REASON_LENGTH:
        return _deny(
            "reason_required",
            str(
                _("Write a reason of at least one sentence (at least %(n)d characters).")
                % {"n": MIN_REASON_LENGTH}
            ),
        )
    if patient.restricted and basis not in ELEVATED:
        # An ordinary basis opens nothing the patient has restricted: storing it would log
        # an access (and tell the patient of an emergency) that showed nothing.
        return _deny("elevated_basis_required", str(RESTRICTED_EXPLANATION))
    if basis in ELEVATED and not patient.restricted:
        # FORHØYET opens what a patient has restricted, "only when needed": never as a
        # stronger ordinary basis.
        return _deny(
            "elevated_not_needed",
            str(_("An elevated basis is only for patients who have restricted document sharing.")),
        )
    if basis == Basis.UNNTAK:
        return _unntak_applies(clinician, patient)
    return ALLOW


def _unntak_applies(clinician: ClinicianFacts, patient: PatientFacts) -> Decision:
    """UNNTAK: a fastlege for own list patients; doctors and nurses in the emergency chain
    and in specialist care."""

    kind = clinician.organisation_kind
    if kind == OrganisationKind.FASTLEGEKONTOR:
        if patient.fastlege_hpr_number and patient.fastlege_hpr_number == clinician.hpr_number:
            return ALLOW
        return _deny(
            "unntak_not_list_patient",
            str(
                _(
                    "The exception from consent applies only to your own list patients. Choose consent or emergency."
                )
            ),
        )
    if kind in UNNTAK_ORGANISATION_KINDS and clinician.authorizations & DOCTORS_AND_NURSES:
        return ALLOW
    return _deny(
        "unntak_not_applicable",
        str(_("The exception from consent does not apply to you here. Choose consent or emergency.")),
    )


# One line each on the basis form: when the basis applies.
BASIS_EXPLANATIONS = {
    Basis.UNNTAK: _(
        "You are the patient's fastlege, or you give care in the emergency chain or specialist care: "
        "no consent is needed (kjernejournalforskriften)."
    ),
    Basis.SAMTYKKE: _("The patient has consented to your reading the documents, for this course of care."),
    Basis.AKUTT: _(
        "Emergency: the patient cannot consent and help cannot wait (helsepersonelloven § 7). "
        "Needs a reason, is flagged for review, and the patient is told."
    ),
    Basis.FORHOYET_SAMTYKKE: _(
        "The patient has consented to your reading the documents they have restricted. "
        "Flagged for review; the patient is told."
    ),
    Basis.FORHOYET_AKUTT: _(
        "Emergency: the restricted documents are needed now and the patient cannot consent. "
        "Flagged for review; the patient is told."
    ),
}


@dataclass(frozen=True)
class BasisOption:
    basis: str
    label: str
    explanation: str
    default: bool = False


def bases_offered(clinician: ClinicianFacts, patient: PatientFacts) -> list[BasisOption]:
    """The bases this clinician may state for this patient, as the form offers them, with
    the default where one applies: UNNTAK wherever it applies (an own list patient, the
    emergency chain, specialist care). A restricted patient is offered the FORHØYET bases
    only: an ordinary basis would open nothing."""

    if not status_before_basis(clinician, patient):
        return []
    if patient.restricted:
        return [
            BasisOption(b, str(Basis(b).label), str(BASIS_EXPLANATIONS[b]))
            for b in (Basis.FORHOYET_SAMTYKKE, Basis.FORHOYET_AKUTT)
        ]
    unntak = bool(_unntak_applies(clinician, patient))
    offered = [Basis.UNNTAK] if unntak else []
    offered += [Basis.SAMTYKKE, Basis.AKUTT]
    return [
        BasisOption(b, str(Basis(b).label), str(BASIS_EXPLANATIONS[b]), default=unntak and b == Basis.UNNTAK)
        for b in offered
    ]


def status_before_basis(clinician: ClinicianFacts, patient: PatientFacts) -> Decision:
    """The status pre-check, before any basis is asked: may this clinician state a basis
    for this patient at all? A block of this clinician or a reservation refuses, and the
    clinician is told so before choosing a basis or writing a reason."""

    portal = may_use_clinical_portal(clinician)
    if not portal:
        return portal
    return _patient_status(clinician, patient)


RESTRICTED_EXPLANATION = _(
    "The patient has restricted document sharing (sperring). Documents are shown only with an elevated "
    "basis (forhøyet samtykke or forhøyet akutt), when they are needed for the care you give now. "
    "The access is flagged for review and the patient is told."
)


def needs_elevated_basis(patient: PatientFacts) -> bool:
    """A restricted patient: only a FORHØYET basis opens the documents."""

    return patient.restricted


def flagged_for_review(basis: str) -> bool:
    """Events under an emergency or elevated basis are marked for the log review."""

    return basis in FLAGGED_FOR_REVIEW


def purpose_of_use(clinician: ClinicianFacts, basis: str) -> str:
    """The HL7 purpose of use sent with the attest."""

    if basis in ELEVATED or basis == Basis.AKUTT:
        return PurposeOfUse.BTG
    if clinician.organisation_kind == OrganisationKind.LEGEVAKT:
        return PurposeOfUse.ETREAT
    return PurposeOfUse.TREAT


# --- Attests from the EPJ (docs/epj.md) ---------------------------------------------------

# The purposes of use the portal turns into a basis; COC and anything else are refused.
EPJ_PURPOSES = frozenset({PurposeOfUse.TREAT, PurposeOfUse.ETREAT, PurposeOfUse.BTG})
# ETREAT states no reason of its own: the emergency basis records this one, naming where
# it came from, so that the log review reads why there was no reason written.
ETREAT_REASON = _("Emergency care in the emergency chain (ETREAT), attested by the EPJ's own decision.")


def may_use_purpose_of_use(purpose: str) -> Decision:
    if purpose in EPJ_PURPOSES:
        return ALLOW
    return _deny(
        "purpose_not_supported",
        str(
            _("The EPJ's purpose of use (%(purpose)s) does not give access to documents here.")
            % {"purpose": purpose}
        ),
    )


def client_may_attest_for(client_orgnr: str, attest_legal_entity: str, *, required: bool) -> Decision:
    """An EPJ attests only for the legal entity HelseID says the client acts for: a client
    of one organisation must not attest access for another organisation's staff."""

    if client_orgnr == attest_legal_entity or (not client_orgnr and not required):
        return ALLOW
    return _deny(
        "attest_not_the_clients_organisation",
        str(_("The EPJ's attest names another legal entity than the one its HelseID client acts for.")),
    )


def attest_names_one_patient(count: int) -> Decision:
    """An attest is bound to one patient: none, or several, opens nothing."""

    if count == 1:
        return ALLOW
    return _deny(
        "attest_patient_count",
        str(
            _(
                "The EPJ sent an attest for %(n)d patients. The portal opens one patient at a time: open the patient again from the EPJ."
            )
            % {"n": count}
        ),
    )


def basis_for_purpose_of_use(
    clinician: ClinicianFacts, patient: PatientFacts, purpose: str, reason: str
) -> tuple[str, str]:
    """The basis (and the reason to record) an EPJ's purpose of use stands for: TREAT is
    UNNTAK where the exception applies to this clinician and patient, else SAMTYKKE (the
    EPJ attests the care relation); ETREAT and BTG are AKUTT, BTG with the attest's own
    reason. Whether that basis may be stated is `may_state_basis`'s answer, as for the
    portal's form: a restricted patient's documents need FORHØYET, which no attest states."""

    if purpose == PurposeOfUse.TREAT:
        return (Basis.UNNTAK if _unntak_applies(clinician, patient) else Basis.SAMTYKKE), reason
    if purpose == PurposeOfUse.ETREAT:
        return Basis.AKUTT, reason or str(ETREAT_REASON)
    return Basis.AKUTT, reason


def may_act_on_attest(
    *,
    person_pid: str,
    person_hpr_number: str,
    organisation_orgnr: str,
    legal_entity_orgnr: str,
    attest_pid: str,
    attest_hpr_number: str,
    attest_point_of_care: str,
    attest_legal_entity: str,
) -> Decision:
    """The person logged in is the attest's practitioner, acting for its organisation: an
    attest made for one clinician opens nothing for another at the same keyboard."""

    same_person = person_pid == attest_pid and (
        not attest_hpr_number or attest_hpr_number == person_hpr_number
    )
    if not same_person:
        return _deny(
            "launch_person_mismatch",
            str(
                _("The EPJ opened the portal for another person than the one logged in. Nothing was opened.")
            ),
        )
    if organisation_orgnr != attest_point_of_care or legal_entity_orgnr != attest_legal_entity:
        return _deny(
            "launch_organisation_mismatch",
            str(
                _(
                    "The EPJ acts for another organisation than the one you are logged in for. Nothing was opened."
                )
            ),
        )
    return ALLOW


def attest_is_valid(
    clinician: ClinicianFacts, patient: PatientFacts, attest: AttestFacts | None, now: datetime.datetime
) -> bool:
    return (
        attest is not None
        and attest.user_id == clinician.user_id
        and attest.organisation_id == clinician.organisation_id
        and attest.patient_id == patient.patient_id
        and attest.expires_at > now
    )


def _patient_status(clinician: ClinicianFacts, patient: PatientFacts) -> Decision:
    """The choices no basis can overcome: a block of this clinician, then a reservation."""

    if clinician.hpr_number in patient.blocked_hpr_numbers:
        return _deny(
            "clinician_blocked",
            str(
                _("The patient has blocked your access. No documents can be shown, also not in an emergency.")
            ),
        )
    if patient.reserved:
        return _deny(
            "patient_reserved",
            str(_("The patient has reserved against document sharing. No documents are shown.")),
        )
    return ALLOW


def may_see_patient_documents(
    clinician: ClinicianFacts,
    patient: PatientFacts,
    attest: AttestFacts | None,
    now: datetime.datetime,
) -> Decision:
    """The status pre-check: may the document list be shown at all?

    Order matters: a blocked clinician sees nothing even in an emergency; a reservation
    beats every basis; a restriction needs a FORHØYET basis.
    """

    portal = may_use_clinical_portal(clinician)
    if not portal:
        return portal
    status = _patient_status(clinician, patient)
    if not status:
        return status
    if not attest_is_valid(clinician, patient, attest, now):
        return _deny("no_valid_attest", str(_("State the basis for access first.")))
    assert attest is not None
    if patient.restricted and attest.basis not in ELEVATED:
        return _deny(
            "patient_restricted",
            str(
                _(
                    "The patient has restricted document sharing. Documents are shown only with an elevated basis (forhøyet samtykke or forhøyet akutt)."
                )
            ),
        )
    return ALLOW


def may_see_patient_identity(clinician: ClinicianFacts, patient: PatientFacts) -> bool:
    """May the banner show who the patient is (name, age)?

    Not to a clinician the patient has blocked (a block is often aimed at one person, and
    the name is what they must not confirm), and not for a reserved patient, for whom
    nothing is shown.
    """

    return bool(_patient_status(clinician, patient))


def may_see_patient_address(clinician: ClinicianFacts, patient: PatientFacts) -> bool:
    """Never an address, or any other location, for a patient with a protected address."""

    return may_see_patient_identity(clinician, patient) and not patient.address_protected


def window_start(category: str, today: datetime.date) -> datetime.date | None:
    """The oldest service date shown: the same day n calendar years back (28 February
    for 29 February). A category outside the regulation has no window at all."""

    years = CATEGORY_WINDOW_YEARS.get(category, 0)
    if years is None:
        return None
    try:
        return today.replace(year=today.year - years)
    except ValueError:  # 29 February
        return today.replace(year=today.year - years, day=28)


def source_allows_open(clinician: ClinicianFacts, source: SourceRules) -> bool:
    return bool(clinician.authorizations & source.open_authorizations) and (
        clinician.organisation_kind in source.open_organisation_kinds
    )


def source_allows_list(clinician: ClinicianFacts, source: SourceRules) -> bool:
    allowed = bool(clinician.authorizations & source.list_authorizations) and (
        clinician.organisation_kind in source.list_organisation_kinds
    )
    if source.list_only_if_may_open:
        allowed = allowed and source_allows_open(clinician, source)
    return allowed


def listable_source_ids(clinician: ClinicianFacts, sources: list[SourceRules]) -> frozenset[int]:
    """The sources whose documents may appear in this clinician's list."""

    return frozenset(s.source_id for s in sources if source_allows_list(clinician, s))


def openable_source_ids(clinician: ClinicianFacts, sources: list[SourceRules]) -> frozenset[int]:
    """The sources whose documents this clinician may open (the list links only these)."""

    return frozenset(
        s.source_id for s in sources if source_allows_list(clinician, s) and source_allows_open(clinician, s)
    )


# The answers for a document that is not there: unknown here, or its source did not answer.
UNKNOWN_DOCUMENT = Decision(False, "unknown_document")


def source_did_not_answer(reason_code: str) -> Decision:
    """A remote document that cannot be decided on: its source failed (a sources reason code)."""

    return Decision(False, f"source_{reason_code}"[:50])


def offers_elevated_access(decision: Decision) -> bool:
    """Does this refusal offer the FORHØYET step (a restricted patient)?"""

    return decision.reason_code == "patient_restricted"


def asks_for_basis(decision: Decision) -> bool:
    """Is this refusal answered by the basis page (no valid attest yet), not by a page
    that says why?"""

    return decision.reason_code == "no_valid_attest"


def refusal_is_about_the_reason(decision: Decision) -> bool:
    """Is a refused basis refused for its missing or too short reason (the form then marks
    the reason field, not the choice of basis)?"""

    return decision.reason_code == "reason_required"


def may_list_source(clinician: ClinicianFacts, source: SourceRules | None, *, known: bool) -> Decision:
    """May this clinician see one remote source's part of the list? `known`: it is a
    source the portal asks (configured as remote). The rule of `listable_source_ids`."""

    if not known:
        return _deny("unknown_source", "")
    if source is None or not source_allows_list(clinician, source):
        return _deny("source_rule_list", "")
    return ALLOW


def may_open_document(
    clinician: ClinicianFacts,
    patient: PatientFacts,
    attest: AttestFacts | None,
    document: DocumentFacts,
    *,
    source: SourceRules | None,
    now: datetime.datetime,
) -> Decision:
    listed = may_see_patient_documents(clinician, patient, attest, now)
    if not listed:
        return listed
    if document.patient_id != patient.patient_id:
        return _deny("document_other_patient", "")
    if source is None or source.source_id != document.source_id:
        return _deny("unknown_source", "")
    # Opening is never broader than the list: a source that hides its list from this
    # clinician hides its documents too.
    if not (source_allows_list(clinician, source) and source_allows_open(clinician, source)):
        return _deny("source_rule_open", "")
    if document.category not in CATEGORY_WINDOW_YEARS:
        return _deny("category_not_allowed", "")
    if document.confidentiality_code in HIDDEN_CONFIDENTIALITY:
        return _deny("document_blocked", "")
    if not content_type_may_be_shown(document.content_type):
        return _deny("unsupported_content_type", "")
    start = window_start(document.category, timezone.localtime(now).date())
    if start is not None and document.service_date < start:
        return _deny("outside_window", "")
    return ALLOW


def _in_window(facts: DocumentFacts, today: datetime.date) -> bool:
    if facts.category not in CATEGORY_WINDOW_YEARS:
        return False
    start = window_start(facts.category, today)
    return start is None or facts.service_date >= start


def document_listable(facts: DocumentFacts, today: datetime.date) -> bool:
    """A remote document in the list: the same rules as `listable_documents_q` for the
    local store (the source's own list rule is applied when choosing the sources)."""

    return (
        _in_window(facts, today)
        and facts.confidentiality_code not in HIDDEN_CONFIDENTIALITY
        and content_type_may_be_shown(facts.content_type)
    )


def document_counted_as_blocked(facts: DocumentFacts, today: datetime.date) -> bool:
    """A remote blocked (NORS) document inside the windows: counted, never described."""

    return _in_window(facts, today) and facts.confidentiality_code in HIDDEN_CONFIDENTIALITY


def _in_window_q(today: datetime.date) -> Q:
    by_category = Q()
    for category in CATEGORY_WINDOW_YEARS:
        start = window_start(category, today)
        cond = Q(category=category)
        if start is not None:
            cond &= Q(service_date__gte=start)
        by_category |= cond
    return by_category


def listable_documents_q(today: datetime.date, source_ids: frozenset[int]) -> Q:
    """The list rules for a document, as a query filter: window, not blocked, a showable
    format, and a source that lets this clinician see its list (`listable_source_ids`).

    Used for the list so that paging and counting happen in the database. The decision
    table test checks this and `may_open_document` agree.
    """

    return (
        _in_window_q(today)
        & ~Q(confidentiality_code__in=list(HIDDEN_CONFIDENTIALITY))
        & Q(content_type__in=list(SHOWABLE_CONTENT_TYPES))
        & Q(source_id__in=list(source_ids))
    )


def hidden_documents_q(today: datetime.date, source_ids: frozenset[int]) -> Q:
    """Blocked (NORS) documents inside the windows, from sources whose list this
    clinician may see: counted, never described."""

    return (
        _in_window_q(today)
        & Q(confidentiality_code__in=list(HIDDEN_CONFIDENTIALITY))
        & Q(source_id__in=list(source_ids))
    )


# --- What the list does not show, and why ("Si hva som ikke vises") -------------------
#
# Counts by reason class, never content. A document that is not in the list falls in exactly
# one class, in this order: its category is outside the regulation; it is older than its
# category's window; it is blocked (NORS); its format cannot be shown. The order keeps the
# blocked count what it was (`hidden_documents_q`: NORS inside the windows), and an old
# blocked document says no more than that it is old. `not_shown_reason` decides for one
# document (the remote sources' answers), `not_shown_q` is the same rule as query filters
# for the local store (counted in one aggregate); a test keeps them agreeing.

NOT_SHOWN_CATEGORY = "category_not_covered"
NOT_SHOWN_WINDOW = "outside_window"
NOT_SHOWN_BLOCKED = "blocked"
NOT_SHOWN_FORMAT = "format"
NOT_SHOWN_CLASSES = (NOT_SHOWN_WINDOW, NOT_SHOWN_BLOCKED, NOT_SHOWN_CATEGORY, NOT_SHOWN_FORMAT)


def not_shown_reason(facts: DocumentFacts, today: datetime.date) -> str:
    """Why this document is not in the list ("" when it is): one of NOT_SHOWN_CLASSES.
    "" exactly when `document_listable`; NOT_SHOWN_BLOCKED exactly when
    `document_counted_as_blocked`."""

    if facts.category not in CATEGORY_WINDOW_YEARS:
        return NOT_SHOWN_CATEGORY
    if not _in_window(facts, today):
        return NOT_SHOWN_WINDOW
    if facts.confidentiality_code in HIDDEN_CONFIDENTIALITY:
        return NOT_SHOWN_BLOCKED
    if not content_type_may_be_shown(facts.content_type):
        return NOT_SHOWN_FORMAT
    return ""


def windowed_categories() -> list[str]:
    """The categories with a window (the ones a document can be too old for)."""

    return [c for c, years in CATEGORY_WINDOW_YEARS.items() if years is not None]


def not_shown_q(today: datetime.date) -> dict[str, Q]:
    """`not_shown_reason` for the local store as query filters, one per class and, for the
    window, one per category ("outside_window:<category>"); disjoint, and together with
    `listable_documents_q` (a listable source given) they cover every document."""

    covered = Q(category__in=list(CATEGORY_WINDOW_YEARS))
    blocked = Q(confidentiality_code__in=list(HIDDEN_CONFIDENTIALITY))
    in_window = _in_window_q(today)
    classes = {NOT_SHOWN_CATEGORY: ~covered}
    for category in windowed_categories():
        start = window_start(category, today)
        assert start is not None
        classes[f"{NOT_SHOWN_WINDOW}:{category}"] = Q(category=category, service_date__lt=start)
    classes[NOT_SHOWN_BLOCKED] = in_window & blocked
    classes[NOT_SHOWN_FORMAT] = in_window & ~blocked & ~Q(content_type__in=list(SHOWABLE_CONTENT_TYPES))
    return classes


# The window line names the category as a clinician would; a category without its own
# noun is named by its label.
_WINDOW_NOUNS: dict[str, Callable[[int], str]] = {
    DocumentCategory.PROVESVAR: lambda n: ngettext(
        "%(counter)d test result older than %(window)s is not shown (kjernejournalforskriften).",
        "%(counter)d test results older than %(window)s are not shown (kjernejournalforskriften).",
        n,
    ),
    DocumentCategory.ORGANFUNKSJON: lambda n: ngettext(
        "%(counter)d organ function document older than %(window)s is not shown (kjernejournalforskriften).",
        "%(counter)d organ function documents older than %(window)s are not shown (kjernejournalforskriften).",
        n,
    ),
    DocumentCategory.BILDEDIAGNOSTIKK: lambda n: ngettext(
        "%(counter)d imaging document older than %(window)s is not shown (kjernejournalforskriften).",
        "%(counter)d imaging documents older than %(window)s are not shown (kjernejournalforskriften).",
        n,
    ),
    DocumentCategory.KORRESPONDANSE: lambda n: ngettext(
        "%(counter)d referral older than %(window)s is not shown (kjernejournalforskriften).",
        "%(counter)d referrals older than %(window)s are not shown (kjernejournalforskriften).",
        n,
    ),
}


def not_shown_message(reason: str, count: int, *, category: str = "", source_name: str = "") -> str:
    """The line under the list for `count` documents of one reason class (and, for the
    window, one category); `source_name` when the count comes from a remote source."""

    if reason == NOT_SHOWN_WINDOW:
        years = CATEGORY_WINDOW_YEARS.get(category) or 0
        window = ngettext("%(years)d year", "%(years)d years", years) % {"years": years}
        noun = _WINDOW_NOUNS.get(category)
        if noun is not None:
            text = noun(count) % {"counter": count, "window": window}
        else:
            label = str(dict(DocumentCategory.choices).get(category, category))
            text = ngettext(
                "%(counter)d document (%(category)s) older than %(window)s is not shown (kjernejournalforskriften).",
                "%(counter)d documents (%(category)s) older than %(window)s are not shown (kjernejournalforskriften).",
                count,
            ) % {"counter": count, "category": label, "window": window}
    elif reason == NOT_SHOWN_BLOCKED:
        text = ngettext(
            "%(counter)s document is blocked (sperret) and not shown.",
            "%(counter)s documents are blocked (sperret) and not shown.",
            count,
        ) % {"counter": count}
    elif reason == NOT_SHOWN_CATEGORY:
        text = ngettext(
            "%(counter)d document in a category outside kjernejournalforskriften is not shown.",
            "%(counter)d documents in categories outside kjernejournalforskriften are not shown.",
            count,
        ) % {"counter": count}
    else:
        text = ngettext(
            "%(counter)d document in a format the portal cannot show is not shown.",
            "%(counter)d documents in formats the portal cannot show are not shown.",
            count,
        ) % {"counter": count}
    if source_name:
        return gettext("From %(name)s: %(line)s") % {"name": source_name, "line": text}
    return text


# Why a source shows this clinician no list at all: said by the source's name, never with
# a count (counting what the clinician may not see would tell what the source holds). The
# answer depends on the clinician and the source's rules only, not on the patient.
SOURCE_LISTS_ONLY_TO_OPENERS = "list_only_if_may_open"
SOURCE_LIST_AUTHORIZATION = "list_authorization"
SOURCE_LIST_ORGANISATION_KIND = "list_organisation_kind"


def source_list_refusal(clinician: ClinicianFacts, source: SourceRules) -> str:
    """Why this source does not show this clinician its list ("" when it does)."""

    if source_allows_list(clinician, source):
        return ""
    if not clinician.authorizations & source.list_authorizations:
        return SOURCE_LIST_AUTHORIZATION
    if clinician.organisation_kind not in source.list_organisation_kinds:
        return SOURCE_LIST_ORGANISATION_KIND
    return SOURCE_LISTS_ONLY_TO_OPENERS


def sources_not_listing(clinician: ClinicianFacts, sources: list[SourceRules]) -> dict[int, str]:
    """Every source that shows this clinician no list, with `source_list_refusal`'s reason."""

    return {s.source_id: reason for s in sources if (reason := source_list_refusal(clinician, s))}


def source_list_refusal_message(reason: str, source_name: str, organisation_kind: str | None) -> str:
    if reason == SOURCE_LISTS_ONLY_TO_OPENERS:
        return gettext(
            "%(name)s shows its document list only to health personnel who may open the documents."
        ) % {"name": source_name}
    if reason == SOURCE_LIST_AUTHORIZATION:
        return gettext(
            "%(name)s does not show its document list to health personnel with your authorization."
        ) % {"name": source_name}
    kind = str(dict(OrganisationKind.choices).get(organisation_kind or "", organisation_kind or ""))
    return gettext("%(name)s does not show its document list to your kind of organisation (%(kind)s).") % {
        "name": source_name,
        "kind": kind,
    }


# --- The patient's access log ("innsyn i logg") --------------------------------------


@dataclass(frozen=True)
class StaffFacts:
    """A logged-in person in the administration area: the roles they hold, active, in
    the organisation they act for."""

    user_id: int
    organisation_id: int | None
    roles: frozenset[str]
    organisation_orgnr: str = ""
    # The person's national id (HelseID pid): whether an access was to them as a patient
    # (separation of duties in the review queue). Never shown, never logged from here.
    pid: str = ""


def may_read_patient_access_log(staff: StaffFacts | None) -> Decision:
    """May this person read any patient's access log, to hand it to the patient?

    Only a privacy officer, acting for the organisation where the role is held. Everyone
    else, anonymous included, is refused; the view answers them as for a missing page.
    """

    return _acting_privacy_officer(staff)


def _acting_privacy_officer(staff: StaffFacts | None) -> Decision:
    if staff is None:
        return _deny("not_logged_in", "")
    if staff.organisation_id is None or Role.PRIVACY_OFFICER not in staff.roles:
        return _deny("not_privacy_officer", "")
    return ALLOW


def may_read_patient_access_log_as_client(client_id: str, allowed_client_ids: frozenset[str]) -> Decision:
    """May this authenticated API client (the citizen portal) read patients' access logs?

    The client has proved who it is (a signed assertion); this says whether that client is
    one the portal serves the log to."""

    if not client_id or client_id not in allowed_client_ids:
        return _deny("client_not_allowed", "")
    return ALLOW


def may_manage_privacy_choices(staff: StaffFacts | None) -> Decision:
    """May this person register and lift patients' privacy choices (reservation,
    restriction, blocked clinicians, blocked documents)?

    The same rule as reading a patient's access log: only a privacy officer, acting for the
    organisation where the role is active. The views answer everyone else as for a missing
    page. Two questions, one rule, so that they can part without touching the callers."""

    return _acting_privacy_officer(staff)


# --- Log review (loggkontroll) -------------------------------------------------------


def may_review_access_log(staff: StaffFacts | None) -> Decision:
    """May this person use the log review (loggkontroll) at all?

    Only an auditor, acting for the organisation where the role is active. Everyone else,
    anonymous included, is refused; the views answer them as for a missing page."""

    if staff is None:
        return _deny("not_logged_in", "")
    if staff.organisation_id is None or not staff.organisation_orgnr or Role.AUDITOR not in staff.roles:
        return _deny("not_auditor", "")
    return ALLOW


def auditor_may_see_event(staff: StaffFacts, event_organisation_orgnr: str, event_source_orgnr: str) -> bool:
    """May this auditor see this access event? The events made by their organisation's
    staff, and the events on documents their organisation shares; nothing else.

    `log_review_events_q` is the same rule as a query filter; a test keeps them agreeing."""

    if not may_review_access_log(staff):
        return False
    orgnr = staff.organisation_orgnr
    return orgnr in (event_organisation_orgnr, event_source_orgnr)


def log_review_events_q(staff: StaffFacts) -> Q:
    """`auditor_may_see_event` as a filter on AccessEvent, for search, detail and export
    alike. Matches nothing for anyone who may not use the log review."""

    if not may_review_access_log(staff):
        return Q(pk__in=[])
    orgnr = staff.organisation_orgnr
    return Q(organisation_orgnr=orgnr) | Q(source_orgnr=orgnr)


# Separation of duties: no one reviews an access they made, nor one to themselves as a
# patient. An auditor who also works as a clinician sees such items marked, and another
# auditor decides them; a review of one's own access would clear it of suspicion unseen.
_REVIEW_CONFLICT_MESSAGES = {
    "review_own_access": _("This is your own access. Another auditor in your organisation must review it."),
    "review_own_patient_record": _(
        "This access was to your own health records. Another auditor in your organisation must review it."
    ),
}


def review_conflict(
    staff: StaffFacts, *, actor_user_id: int | None, actor_pid: str, patient_national_id: str
) -> str:
    """Why this auditor may not act on a review of this event ("" when they may): the
    event's actor is them (by account or by pid), or its patient is them (by pid)."""

    if actor_user_id is not None and actor_user_id == staff.user_id:
        return "review_own_access"
    if staff.pid and actor_pid == staff.pid:
        return "review_own_access"
    if staff.pid and patient_national_id == staff.pid:
        return "review_own_patient_record"
    return ""


def may_act_on_review_item(
    staff: StaffFacts | None, *, actor_user_id: int | None, actor_pid: str, patient_national_id: str
) -> Decision:
    """May this auditor review, justify, comment on or close the review of this event?
    An auditor of the log review, and not about their own access nor their own records."""

    allowed = may_review_access_log(staff)
    if not allowed:
        return allowed
    assert staff is not None
    code = review_conflict(
        staff, actor_user_id=actor_user_id, actor_pid=actor_pid, patient_national_id=patient_national_id
    )
    return _deny(code, str(_REVIEW_CONFLICT_MESSAGES[code])) if code else ALLOW


# Confidentiality codes (Volven 9603) that keep a document from the citizen: NORN_* the
# citizen is denied access, NORU access is delayed. The patient's log still shows that the
# document was accessed, by whom and when, but not its title or where it comes from.
CITIZEN_WITHHELD_CONFIDENTIALITY = frozenset({ConfidentialityCode.NORN_DUE, ConfidentialityCode.NORU})


def citizen_may_see_document_details(confidentiality_code: str) -> bool:
    """May the patient's own access log name this document (title, institution)?"""

    return not (
        confidentiality_code in CITIZEN_WITHHELD_CONFIDENTIALITY or confidentiality_code.startswith("NORN")
    )


@dataclass(frozen=True)
class LogAudience:
    """Who reads an access event as FHIR (logreading/fhir.py `audit_event`), and so what of
    it they are shown. Each reader is a choice the caller makes by name: CITIZEN or AUDITOR."""

    name: str
    actor_national_id: bool  # the clinician's own national id (fødselsnummer)
    client_address: bool  # the IP address the clinician's request came from
    # Identifiers on the event not known to be its patient's: a document or attest asked
    # for and refused or not found, a national id the register does not know.
    unconfirmed_identifiers: bool


# The patient's own log (innsyn i logg, through the citizen portal). It shows who accessed
# them by name, HPR number, authorization and the organisation acted for: enough to know who
# it was and where, and to complain. Not the clinician's own national id nor the IP address
# of their machine: the clinician's personal data, which the patient needs for neither, kept
# for the auditors who follow a case up. And nothing of another patient, ever: an event in
# this patient's log can name a document of someone else (a denied open of another patient's
# document, an id asked for that named nothing), so only what is known to be this patient's
# is named.
CITIZEN_LOG = LogAudience(
    "citizen", actor_national_id=False, client_address=False, unconfirmed_identifiers=False
)
# An organisation's auditors (log review): everything the event records.
AUDITOR_LOG = LogAudience(
    "auditor", actor_national_id=True, client_address=True, unconfirmed_identifiers=True
)


# --- Access roles, for an organisation's access administrators ------------------------

# The roles an access administrator grants and revokes in their own organisation. The
# national privacy officer role is not among them: it is granted nationally (seed_demo, or
# `accounts.roles.grant` from a shell), never from the portal's pages.
GRANTABLE_ROLES = frozenset({Role.CLINICIAN, Role.AUDITOR, Role.ACCESS_ADMINISTRATOR})


def may_administer_access(staff: StaffFacts | None) -> Decision:
    """May this person see and change who holds which role in the organisation they act
    for? Only an access administrator, where the role is in force. Everyone else, anonymous
    included, is refused; the views answer them as for a missing page."""

    if staff is None:
        return _deny("not_logged_in", "")
    if staff.organisation_id is None or Role.ACCESS_ADMINISTRATOR not in staff.roles:
        return _deny("not_access_administrator", "")
    return ALLOW


def is_own_staff(staff: StaffFacts, target_organisation_ids: frozenset[int]) -> bool:
    """Is a person whose roles, in force or revoked, are in `target_organisation_ids` on
    the staff of the organisation the administrator acts for? The organisation has had
    them as staff when they hold or have held a role there."""

    return staff.organisation_id is not None and staff.organisation_id in target_organisation_ids


def own_staff_among(staff: StaffFacts | None, candidates: dict[int, frozenset[int]]) -> list[int]:
    """Of the candidates (user id -> their organisations, as for `is_own_staff`), the
    ones on the administrator's own staff: the grant form's HPR number is answered only
    from these, and the same way whether the number is unknown or another's staff."""

    if staff is None:
        return []
    return sorted(user_id for user_id, orgs in candidates.items() if is_own_staff(staff, orgs))


def may_grant_role(
    staff: StaffFacts | None,
    role: str,
    *,
    target_organisation_ids: frozenset[int],
    target_user_id: int | None = None,
) -> Decision:
    """May this administrator grant `role` to a person whose current or past grants are
    in `target_organisation_ids`? Only one of the roles above, and only to the
    organisation's own staff: someone who holds or has held a grant in the organisation
    the administrator acts for."""

    allowed = may_administer_access(staff)
    if not allowed:
        return allowed
    assert staff is not None
    if role not in GRANTABLE_ROLES:
        return _deny("role_not_grantable", str(_("Choose one of the roles.")))
    if not is_own_staff(staff, target_organisation_ids):
        return _deny("not_own_staff", "")
    if target_user_id is not None and target_user_id == staff.user_id:
        # No one widens their own rights (an administrator making themselves auditor
        # would review their own actions): another administrator must grant it.
        return _deny(
            "no_self_grant", str(_("You cannot grant a role to yourself. Ask another access administrator."))
        )
    return ALLOW


def still_administers(actor_user_id: int, active_administrator_ids: frozenset[int]) -> Decision:
    """Read under the lock of the organisation's administrator grants: is the acting
    administrator still one (another may have revoked them a moment ago)?"""

    if actor_user_id not in active_administrator_ids:
        return _deny("no_longer_administrator", str(_("You are no longer an access administrator here.")))
    return ALLOW


def may_revoke_role(
    staff: StaffFacts | None,
    *,
    grant_organisation_id: int,
    grant_user_id: int,
    grant_role: str,
    other_administrators: int,
) -> Decision:
    """May this administrator revoke this grant in force? Only in their own organisation,
    only the roles they may grant, and not their own access administrator role when no one
    else holds that role there (the organisation would have no administrator left)."""

    allowed = may_administer_access(staff)
    if not allowed:
        return allowed
    assert staff is not None
    if grant_organisation_id != staff.organisation_id:
        return _deny("not_own_organisation", "")
    if grant_role not in GRANTABLE_ROLES:
        return _deny("role_not_grantable", "")
    if grant_role == Role.ACCESS_ADMINISTRATOR and other_administrators < 1:
        # Whoever revokes it, an organisation is never left without an active
        # administrator (`other_administrators` counts active accounts only).
        return _deny(
            "last_access_administrator",
            str(
                _(
                    "This is the organisation's only active access administrator, so the role cannot be revoked. Grant the role to someone else first."
                )
            ),
        )
    return ALLOW
