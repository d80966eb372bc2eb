"""Which document an event is about, as the patient's log and the log review show it.

One answer for both of the patient's logs (the FHIR AuditEvent and the privacy officer's
printable page): a local document from its row; a remote (MHD) document from what the
event recorded of the source's description when it was opened. Whether the title and the
institution may be shown is the policy's (`citizen_may_see_document_details`); a remote
event that did not record the document's confidentiality shows neither.

`theirs` says whether the document is known to be the event's patient's: a local row of that
patient, or a remote document its source described for that patient. An id that was only
asked for (refused before anything was found, or naming nothing) may be anyone's, and so may
a row of another patient on an older event: neither is named to the patient
(`policy.CITIZEN_LOG`), and neither has its title or institution shown.

The log review (`reviewed_document`) shows an auditor every document of their scope in
full, whatever its confidentiality: finding out who read what is their task.
"""

from __future__ import annotations

from dataclasses import dataclass

from pjd_portal.access import policy
from pjd_portal.auditlog import events
from pjd_portal.auditlog.events import Outcome
from pjd_portal.auditlog.models import AccessEvent
from pjd_portal.documents.models import DocumentCategory

LOCAL_SYSTEM = "urn:ietf:rfc:3986"


@dataclass(frozen=True)
class LoggedDocument:
    identifier_system: str
    identifier_value: str
    source_orgnr: str
    title: str  # "" when withheld
    institution_name: str
    institution_orgnr: str
    withheld: bool  # it exists, but its details are not for the patient's log
    theirs: bool  # known to be the event's patient's (see the module's docstring)


def remote_system(source_orgnr: str) -> str:
    """A remote document's id is its source's own: the system names the source."""
    return f"urn:pjd:mhd-source:{source_orgnr}" if source_orgnr else "urn:pjd:mhd-source"


def remote_details(document: object) -> dict[str, str]:
    """What a remote open records of the source's description, for the patient's log."""
    return {
        "title": str(getattr(document, "title", ""))[:200],
        "institution_name": str(getattr(document, "institution_name", ""))[:200],
        "institution_orgnr": str(getattr(document, "institution_orgnr", ""))[:9],
        "confidentiality_code": str(getattr(document, "confidentiality_code", ""))[:10],
        "category": str(getattr(document, "category", ""))[:10],
    }


def _described_for_the_patient(event: AccessEvent) -> bool:
    """A remote document the event names was found at its source for the event's patient:
    opens and views are written only for a document the source returned for that patient
    (clinic/opening.py), and a refusal is `denied` only when there was one to decide on
    (`Opening.found`); a `not_found` refusal names an id that was only asked for."""

    if event.patient_id is None:
        return False
    return event.event_type != events.ACCESS_DENIED.name or event.outcome == Outcome.DENIED


def logged_document(event: AccessEvent) -> LoggedDocument | None:
    details = event.details or {}
    document = event.document if event.document_id is not None else None
    if document is not None:
        theirs = event.patient_id is not None and document.patient_id == event.patient_id
        shown = theirs and policy.citizen_may_see_document_details(document.confidentiality_code)
        return LoggedDocument(
            identifier_system=LOCAL_SYSTEM,
            identifier_value=f"urn:uuid:{document.document_id}",
            source_orgnr=event.source_orgnr,
            title=document.title if shown else "",
            institution_name=document.institution_name if shown else "",
            institution_orgnr=document.institution_orgnr if shown else "",
            withheld=theirs and not shown,
            theirs=theirs,
        )
    if details.get("document_id"):  # asked for, not linked (unknown, or another patient's)
        return LoggedDocument(
            LOCAL_SYSTEM, f"urn:uuid:{details['document_id']}", event.source_orgnr, "", "", "", False, False
        )
    if details.get("remote_document_id"):
        theirs = _described_for_the_patient(event)
        code = str(details.get("confidentiality_code", ""))
        shown = theirs and bool(code) and policy.citizen_may_see_document_details(code)
        return LoggedDocument(
            identifier_system=remote_system(event.source_orgnr),
            identifier_value=str(details["remote_document_id"]),
            source_orgnr=event.source_orgnr,
            title=str(details.get("title", "")) if shown else "",
            institution_name=str(details.get("institution_name", "")) if shown else "",
            institution_orgnr=str(details.get("institution_orgnr", "")) if shown else "",
            withheld=theirs and not shown and bool(details.get("title")),
            theirs=theirs,
        )
    return None


@dataclass(frozen=True)
class ReviewedDocument:
    """The document of an event as an auditor sees it in the log review."""

    title: str
    category: str  # the class's label ("" when the event did not record it)
    institution_name: str
    remote: bool  # read from another source (MHD): described as the event recorded it


def _category_label(code: str) -> str:
    return str(DocumentCategory(code).label) if code in DocumentCategory.values else code


def reviewed_document(event: AccessEvent) -> ReviewedDocument | None:
    """The event's document for the log review: a local one from its row (loaded with the
    event), a remote one from the event's details; None when the event names none."""

    details = event.details or {}
    document = event.document if event.document_id is not None else None
    if document is not None:
        return ReviewedDocument(
            document.title, _category_label(document.category), document.institution_name, remote=False
        )
    if details.get("remote_document_id"):
        return ReviewedDocument(
            title=str(details.get("title", "")) or str(details["remote_document_id"]),
            category=_category_label(str(details.get("category", ""))),
            institution_name=str(details.get("institution_name", "")),
            remote=True,
        )
    return None
