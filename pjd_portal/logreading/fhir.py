"""Access events as FHIR R4 `AuditEvent` resources, following IHE BALP.

Pure functions: an `AccessEvent` row (with its document and attest loaded, as
`selectors.patient_log_page` does) in, plain JSON-ready dicts out. No database access, no
settings, no FHIR library at run time (the tests validate the output twice: with
`fhir.resources`' R4B models and with FHIR.js, the npm package `fhir`, against the R4
StructureDefinitions; tests/fhir_validation.py).

Which BALP pattern (IHE ITI Basic Audit Log Patterns 1.1.x) each event follows:

| event                                   | BALP profile  | type / subtype                  | action |
|-----------------------------------------|---------------|---------------------------------|--------|
| document opened                         | PatientRead   | rest / read                     | R      |
| patient lookup, document list           | PatientQuery  | rest / search-type              | E      |
| basis stated, emergency access (attest) | PatientCreate | rest / create                   | C      |
| refusal of an open / a list / a basis   | as refused    | (the refused action's)          | R/E/C  |
| patient log read                        | PatientQuery  | rest / search-type              | E      |
| login, login refused / logout, expiry   | (DICOM)       | DCM 110114 / DCM 110122, 110123 | E      |
| organisation chosen                     | (DICOM)       | DCM 110114                      | E      |
| anything else                           | (DICOM)       | DCM 110100 Application Activity | E      |

A BALP profile is claimed in `meta.profile` only for a successful event: BALP's profiles
fix `outcome` to 0, and say a failure "may follow this pattern" without conforming. A refusal
keeps the type and subtype of what was refused (a refused open is still a RESTful read that
was attempted, as a FHIR server records a failed read), with `outcome` 4 and an
`outcomeDesc` that starts "refused".

Who reads decides what is shown (`audience`, from access/policy.py, one choice per caller):
`policy.CITIZEN_LOG` for the patient's own log (the citizen portal's API), which names the
clinician by name, HPR number, authorization and organisation but never by their own national
id or IP address, and nothing that is not known to be the patient's (another patient's
document on a refused open, an id asked for that named nothing, a national id the register
does not know); `policy.AUDITOR_LOG` for everything the event records.

Agents, as BALP has them: the user (v3-ParticipationType IRCP, or AUT for a create), the
client (the browser; DICOM 110153 Source Role ID for queries and creates, 110152
Destination Role ID for reads) and the server (the portal; the other of the two). The user
is a contained PractitionerRole, so one agent carries the HPR number (and for an auditor the
national id) of the person (Practitioner) and the org.nr of the organisation they acted for.
"""

from __future__ import annotations

import base64
import datetime
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from pjd_portal.access.policy import LogAudience
from pjd_portal.auditlog import events
from pjd_portal.auditlog.events import Outcome
from pjd_portal.auditlog.models import AccessEvent
from pjd_portal.logreading.logged_documents import logged_document

JSON = dict[str, Any]

# --- identifier systems (Norwegian OIDs, as in HL7 Norway's no-basis profiles) ----------
NATIONAL_ID_SYSTEM = "urn:oid:2.16.578.1.12.4.1.4.1"  # fødselsnummer, D-nummer (and H-nummer)
HPR_SYSTEM = "urn:oid:2.16.578.1.12.4.1.4.4"  # helsepersonellregisteret
ORGNR_SYSTEM = "urn:oid:2.16.578.1.12.4.1.4.101"  # Enhetsregisteret org.nr
HPR_AUTHORIZATION_SYSTEM = "urn:oid:2.16.578.1.12.4.1.1.9060"  # Volven 9060
URI_SYSTEM = "urn:ietf:rfc:3986"

# --- code systems ---------------------------------------------------------------------
DCM = "http://dicom.nema.org/resources/ontology/DCM"
AUDIT_EVENT_TYPE = "http://terminology.hl7.org/CodeSystem/audit-event-type"
RESTFUL_INTERACTION = "http://hl7.org/fhir/restful-interaction"
AUDIT_ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
PARTICIPATION_TYPE = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
ACT_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
SECURITY_SOURCE_TYPE = "http://terminology.hl7.org/CodeSystem/security-source-type"
BALP_ENTITY_TYPE = "https://profiles.ihe.net/ITI/BALP/CodeSystem/BasicAuditEntityType"
BALP_PROFILE = "https://profiles.ihe.net/ITI/BALP/StructureDefinition/IHE.BasicAudit."
# The portal's own code system for the Norwegian basis for access (grunnlag for tilgang):
# there is no published one; a URN keeps it from posing as someone else's.
BASIS_SYSTEM = "urn:pjd-portal:CodeSystem:grunnlag-for-tilgang"
# The trust framework's purpose_of_use_details (BEHANDLER, BLAALYS, ...), as the EPJ attested it.
CARE_RELATION_SYSTEM = "urn:pjd-portal:CodeSystem:purpose-of-use-details"
# The EPJ's own access decision behind an access (the attest's decision_ref), as the
# agent's `policy`: "the policy or plan that authorized the activity".
DECISION_REF_PREFIX = "urn:pjd-portal:epj-decision:"

OUTCOME_SUCCESS = "0"
OUTCOME_MINOR_FAILURE = "4"  # refusals, not found, invalid input (HTTP 4xx-like)

ACT_REASON_DISPLAY = {
    "TREAT": "treatment",
    "ETREAT": "Emergency Treatment",
    "COC": "coordination of care",
    "BTG": "break the glass",
}

# (profile name, type coding, subtype codings, action, client role, server role, user type)
_DEST = (DCM, "110152", "Destination Role ID")
_SOURCE = (DCM, "110153", "Source Role ID")
_REST = (AUDIT_EVENT_TYPE, "rest", "Restful Operation")


@dataclass(frozen=True)
class Pattern:
    profile: str | None
    type: tuple[str, str, str]
    subtypes: tuple[tuple[str, str, str], ...]
    action: str
    client: tuple[str, str, str]
    server: tuple[str, str, str]
    user_type: tuple[str, str, str] | None


PATIENT_READ = Pattern(
    "PatientRead",
    _REST,
    ((RESTFUL_INTERACTION, "read", "read"),),
    "R",
    _DEST,
    _SOURCE,
    (PARTICIPATION_TYPE, "IRCP", "information recipient"),
)
PATIENT_QUERY = Pattern(
    "PatientQuery",
    _REST,
    ((RESTFUL_INTERACTION, "search-type", "search type"),),
    "E",
    _SOURCE,
    _DEST,
    (PARTICIPATION_TYPE, "IRCP", "information recipient"),
)
PATIENT_CREATE = Pattern(
    "PatientCreate",
    _REST,
    ((RESTFUL_INTERACTION, "create", "create"),),
    "C",
    _SOURCE,
    _DEST,
    (PARTICIPATION_TYPE, "AUT", "author"),
)
_USER_AUTHENTICATION = (DCM, "110114", "User Authentication")
LOGIN = Pattern(None, _USER_AUTHENTICATION, ((DCM, "110122", "Login"),), "E", _SOURCE, _DEST, None)
LOGOUT = Pattern(None, _USER_AUTHENTICATION, ((DCM, "110123", "Logout"),), "E", _SOURCE, _DEST, None)
AUTHENTICATION_CONTEXT = Pattern(None, _USER_AUTHENTICATION, (), "E", _SOURCE, _DEST, None)
APPLICATION_ACTIVITY = Pattern(None, (DCM, "110100", "Application Activity"), (), "E", _SOURCE, _DEST, None)

# The registry (auditlog/events.py) names each type's BALP mapping; these are the patterns.
_BY_BALP: dict[str, Pattern] = {
    events.Balp.PATIENT_READ: PATIENT_READ,
    events.Balp.PATIENT_QUERY: PATIENT_QUERY,
    events.Balp.PATIENT_CREATE: PATIENT_CREATE,
    events.Balp.LOGIN: LOGIN,
    events.Balp.LOGOUT: LOGOUT,
    events.Balp.AUTHENTICATION_CONTEXT: AUTHENTICATION_CONTEXT,
    events.Balp.APPLICATION_ACTIVITY: APPLICATION_ACTIVITY,
}


@dataclass(frozen=True)
class ServerIdentity:
    """The portal as the server agent and the audit source."""

    name: str = "PJD portal"
    host: str = "pjd-portal"


DEFAULT_SERVER = ServerIdentity()


def pattern_for(event: AccessEvent) -> Pattern:
    """The BALP (or DICOM) pattern an event follows; a refusal follows what it refused."""

    kind = events.KINDS.get(event.event_type)
    if is_refusal(event):
        details = event.details or {}
        if event.document_id is not None or "document_id" in details or "remote_document_id" in details:
            return PATIENT_READ
        if event.attest_id is None and event.basis:
            return PATIENT_CREATE  # a basis the policy did not accept
        return PATIENT_QUERY  # the list (or the patient) was refused
    return _BY_BALP.get(kind.balp, APPLICATION_ACTIVITY) if kind is not None else APPLICATION_ACTIVITY


def instant(value: datetime.datetime) -> str:
    """A FHIR instant in UTC ("Z"), to the microsecond."""

    utc = value.astimezone(datetime.UTC)
    return utc.isoformat(timespec="microseconds").replace("+00:00", "Z")


def _coding(system: str, code: str, display: str = "") -> JSON:
    coding: JSON = {"system": system, "code": code}
    if display:
        coding["display"] = display
    return coding


def _concept(system: str, code: str, display: str = "") -> JSON:
    return {"coding": [_coding(system, code, display)]}


def _identifier(system: str, value: str) -> JSON:
    return {"system": system, "value": value}


def _actor_identifiers(event: AccessEvent, audience: LogAudience) -> list[JSON]:
    identifiers = []
    if event.actor_hpr_number:
        identifiers.append(_identifier(HPR_SYSTEM, event.actor_hpr_number))
    if event.actor_pid and audience.actor_national_id:
        identifiers.append(_identifier(NATIONAL_ID_SYSTEM, event.actor_pid))
    return identifiers


def _contained_actor(event: AccessEvent, audience: LogAudience) -> tuple[list[JSON], JSON | None]:
    """The person (and the organisation they acted for) as contained resources, and the
    reference the user agent's `who` makes to them."""

    identifiers = _actor_identifiers(event, audience)
    if not identifiers and not event.actor_name:
        return [], None
    practitioner: JSON = {"resourceType": "Practitioner", "id": "actor"}
    if identifiers:
        practitioner["identifier"] = identifiers
    if event.actor_name:
        practitioner["name"] = [{"text": event.actor_name}]
    contained = [practitioner]
    target = "#actor"
    if event.organisation_orgnr:
        organisation: JSON = {
            "resourceType": "Organization",
            "id": "organisation",
            "identifier": [_identifier(ORGNR_SYSTEM, event.organisation_orgnr)],
        }
        if event.organisation_name:
            organisation["name"] = event.organisation_name
        legal_entity: list[JSON] = []
        if event.has_separate_legal_entity:
            # The point of care is a sub-unit: its legal entity is the one responsible.
            organisation["partOf"] = {"reference": "#legal-entity"}
            legal_entity.append(
                {
                    "resourceType": "Organization",
                    "id": "legal-entity",
                    "identifier": [_identifier(ORGNR_SYSTEM, event.legal_entity_orgnr)],
                    **({"name": event.legal_entity_name} if event.legal_entity_name else {}),
                }
            )
        role: JSON = {
            "resourceType": "PractitionerRole",
            "id": "actor-role",
            "practitioner": {"reference": "#actor"},
            "organization": {"reference": "#organisation"},
        }
        codes = _authorization_codes(event)
        if codes:
            role["code"] = codes
        contained += [organisation, *legal_entity, role]
        target = "#actor-role"
    who: JSON = {"reference": target}
    if identifiers:
        who["identifier"] = identifiers[0]  # the HPR number when there is one
    if event.actor_name:
        who["display"] = event.actor_name
    return contained, who


def _authorization_codes(event: AccessEvent) -> list[JSON]:
    codes = [c for c in event.actor_authorizations.split(",") if c]
    return [_concept(HPR_AUTHORIZATION_SYSTEM, code) for code in codes]


def _purpose_of_use(event: AccessEvent) -> list[JSON]:
    purposes: list[JSON] = []
    if event.purpose_of_use:
        purposes.append(
            _concept(ACT_REASON, event.purpose_of_use, ACT_REASON_DISPLAY.get(event.purpose_of_use, ""))
        )
    if event.basis:
        basis: JSON = _concept(BASIS_SYSTEM, event.basis)
        if event.reason_text:
            basis["text"] = event.reason_text
        purposes.append(basis)
    care_relation = event.from_epj.get("purpose_of_use_details")
    if care_relation:
        purposes.append(_concept(CARE_RELATION_SYSTEM, care_relation))
    return purposes


def _user_agent(event: AccessEvent, pattern: Pattern, who: JSON) -> JSON:
    agent: JSON = {}
    if pattern.user_type is not None:
        agent["type"] = _concept(*pattern.user_type)
    roles = _authorization_codes(event)
    if roles:
        agent["role"] = roles
    agent["who"] = who
    if event.actor_name:
        agent["name"] = event.actor_name
    agent["requestor"] = True
    purposes = _purpose_of_use(event)
    if purposes:
        agent["purposeOfUse"] = purposes
    epj = event.from_epj
    if epj.get("decision_ref"):
        client = quote(epj.get("client_id", ""), safe="")
        agent["policy"] = [f"{DECISION_REF_PREFIX}{client}:{quote(epj['decision_ref'], safe='')}"]
    return agent


def _client_agent(event: AccessEvent, pattern: Pattern, audience: LogAudience, *, has_user: bool) -> JSON:
    client_id = str((event.details or {}).get("client_id", ""))
    agent: JSON = {
        "type": _concept(*pattern.client),
        "who": {"display": client_id or "web browser"},
        # Without a user, the client is who asked (an API client such as the citizen portal).
        "requestor": not has_user,
    }
    if event.client_ip and audience.client_address:
        agent["network"] = {"address": event.client_ip, "type": "2"}  # IP address
    return agent


def _server_agent(pattern: Pattern, server: ServerIdentity) -> JSON:
    return {
        "type": _concept(*pattern.server),
        "who": {"display": server.name},
        "requestor": False,
        "network": {"address": server.host, "type": "1"},  # machine name
    }


def _patient_national_id(event: AccessEvent, audience: LogAudience) -> str:
    """The event's patient's national id, as this reader may see it: for the patient, only
    a patient of the register's (a lookup of an unknown number names no one they are)."""

    if event.patient_id is None and not audience.unconfirmed_identifiers:
        return ""
    return event.patient_national_id


def _patient_entity(national_id: str) -> JSON:
    return {
        "what": {"type": "Patient", "identifier": _identifier(NATIONAL_ID_SYSTEM, national_id)},
        "type": _coding(AUDIT_ENTITY_TYPE, "1", "Person"),
        "role": _coding(OBJECT_ROLE, "1", "Patient"),
    }


def _data_object(what: JSON, **extra: Any) -> JSON:
    return {
        "what": what,
        "type": _coding(AUDIT_ENTITY_TYPE, "2", "System Object"),
        "role": _coding(OBJECT_ROLE, "4", "Domain Resource"),
        **extra,
    }


def _document_entity(event: AccessEvent, audience: LogAudience) -> JSON | None:
    document = logged_document(event)
    if document is None or not (document.theirs or audience.unconfirmed_identifiers):
        return None
    what: JSON = {
        "type": "DocumentReference",
        "identifier": _identifier(document.identifier_system, document.identifier_value),
    }
    extra: JSON = {}
    detail = []
    if document.title:
        what["display"] = document.title
        extra["name"] = document.title
        extra["description"] = document.institution_name
        detail.append({"type": "institution-orgnr", "valueString": document.institution_orgnr})
    if document.source_orgnr:  # the organisation that holds (and shared) the document
        detail.append({"type": "source-orgnr", "valueString": document.source_orgnr})
    if detail:
        extra["detail"] = detail
    return _data_object(what, **extra)


def _attest_entity(event: AccessEvent, audience: LogAudience) -> JSON | None:
    attest = event.attest if event.attest_id is not None else None
    if attest is None:
        return None
    theirs = event.patient_id is not None and attest.patient_id == event.patient_id
    if not (theirs or audience.unconfirmed_identifiers):
        return None
    return _data_object(
        {"identifier": _identifier(URI_SYSTEM, f"urn:uuid:{attest.attest_id}")},
        name="access attest",
    )


def _query_string(event: AccessEvent, national_id: str) -> str:
    patient = f"{NATIONAL_ID_SYSTEM}|{national_id}" if national_id else ""
    details = event.details or {}
    if event.event_type == events.PATIENT_LOOKUP.name:
        return "Patient?" + urlencode({"identifier": patient})
    if event.event_type == events.PATIENT_LOG_READ.name:
        return "AuditEvent?" + urlencode({"patient.identifier": patient})
    params = {"patient.identifier": patient}
    for key in ("category", "sort", "page"):
        if details.get(key) not in (None, ""):
            params[key] = str(details[key])
    return "DocumentReference?" + urlencode(params)


def _query_entity(event: AccessEvent, national_id: str) -> JSON:
    query = _query_string(event, national_id)
    return {
        "type": _coding(AUDIT_ENTITY_TYPE, "2", "System Object"),
        "role": _coding(OBJECT_ROLE, "24", "Query"),
        "description": query,
        "query": base64.b64encode(query.encode()).decode("ascii"),
    }


def _transaction_entity(event: AccessEvent) -> JSON:
    return {
        "what": {"identifier": {"value": event.request_id}},
        "type": _coding(BALP_ENTITY_TYPE, "XrequestId", "X-Request-Id"),
    }


def _entities(event: AccessEvent, pattern: Pattern, audience: LogAudience) -> list[JSON]:
    entities: list[JSON] = []
    national_id = _patient_national_id(event, audience)
    if pattern is PATIENT_READ:
        data = _document_entity(event, audience)
        if data is not None:
            entities.append(data)
    elif pattern is PATIENT_QUERY:
        entities.append(_query_entity(event, national_id))
    # The attest the access was made under: what was stated (PatientCreate), and what
    # every list and open after it relied on.
    attest = _attest_entity(event, audience)
    if attest is not None:
        entities.append(attest)
    if national_id:
        entities.append(_patient_entity(national_id))
    if event.request_id:
        entities.append(_transaction_entity(event))
    return entities


def is_refusal(event: AccessEvent) -> bool:
    """An access the portal refused (the registry's `as_refused` types), as against one
    granted that then failed (a document whose content could not be had)."""

    kind = events.KINDS.get(event.event_type)
    return kind is not None and kind.balp == events.Balp.AS_REFUSED


def _outcome_description(event: AccessEvent) -> str:
    if event.outcome == Outcome.GRANTED and not event.reason_code:
        return ""
    said = f"{event.outcome}: {event.reason_code}" if event.reason_code else str(event.outcome)
    return f"refused ({said})" if is_refusal(event) else said


def audit_event(
    event: AccessEvent, *, audience: LogAudience, server: ServerIdentity = DEFAULT_SERVER
) -> JSON:
    """One access event as a FHIR R4 AuditEvent (a plain dict, ready for json.dumps), as
    `audience` may see it (`policy.CITIZEN_LOG` or `policy.AUDITOR_LOG`)."""

    pattern = pattern_for(event)
    success = event.outcome == Outcome.GRANTED
    resource: JSON = {"resourceType": "AuditEvent", "id": str(event.event_id)}
    if pattern.profile is not None and success:
        resource["meta"] = {"profile": [BALP_PROFILE + pattern.profile]}
    contained, who = _contained_actor(event, audience)
    if contained:
        resource["contained"] = contained
    resource["type"] = _coding(*pattern.type)
    if pattern.subtypes:
        resource["subtype"] = [_coding(*s) for s in pattern.subtypes]
    resource["action"] = pattern.action
    resource["recorded"] = instant(event.occurred_at)
    resource["outcome"] = OUTCOME_SUCCESS if success else OUTCOME_MINOR_FAILURE
    description = _outcome_description(event)
    if description:
        resource["outcomeDesc"] = description
    agents = []
    if who is not None:
        agents.append(_user_agent(event, pattern, who))
    agents.append(_client_agent(event, pattern, audience, has_user=who is not None))
    agents.append(_server_agent(pattern, server))
    resource["agent"] = agents
    resource["source"] = {
        "site": server.host,
        "observer": {"display": server.name},
        "type": [_coding(SECURITY_SOURCE_TYPE, "4", "Application Server")],
    }
    entities = _entities(event, pattern, audience)
    if entities:
        resource["entity"] = entities
    return resource


def search_bundle(
    resources: list[JSON],
    *,
    self_url: str,
    next_url: str | None = None,
    now: datetime.datetime,
    bundle_id: str | None = None,
) -> JSON:
    """A `searchset` Bundle of AuditEvents. No `total`: counting would cost a scan of the
    patient's whole log, and an absent count says nothing about whether a person exists."""

    links = [{"relation": "self", "url": self_url}]
    if next_url:
        links.append({"relation": "next", "url": next_url})
    bundle: JSON = {
        "resourceType": "Bundle",
        "id": bundle_id or str(uuid.uuid4()),
        "type": "searchset",
        "timestamp": instant(now),
        "link": links,
    }
    if resources:  # FHIR JSON has no empty arrays
        bundle["entry"] = [
            {"fullUrl": f"urn:uuid:{r['id']}", "resource": r, "search": {"mode": "match"}} for r in resources
        ]
    return bundle


def operation_outcome(code: str, diagnostics: str, *, severity: str = "error") -> JSON:
    """A FHIR OperationOutcome with one issue (`code` from the FHIR issue-type codes)."""

    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": severity, "code": code, "diagnostics": diagnostics}],
    }
