"""ITI-67's answer once the call is in (epj_api/admission.py): the clinician list's own page
(clinic/listing.py `list_page`, every remote source asked and waited for), its list event
committed before anything is answered, and the searchset Bundle built of it, so that the
API and the portal's list cannot disagree on what is shown or counted."""

from __future__ import annotations

from typing import Any

from django.utils import timezone

from pjd_portal.access import policy
from pjd_portal.auditlog import events
from pjd_portal.auditlog.events import Detail, Outcome
from pjd_portal.auditlog.services import record_event_committed
from pjd_portal.clinic import listing
from pjd_portal.clinic.listing import ListRow
from pjd_portal.epj_api import fhir, search
from pjd_portal.epj_api.admission import Visit


def _resource_id(row: ListRow, remote_ids: frozenset[int]) -> str:
    """A local document's UUID; a remote one's source and its id there (`3.abc`)."""

    return f"{row.source_id}.{row.document_id}" if row.source_id in remote_ids else row.document_id


def search_answer(visit: Visit, asked: search.Search, *, base: str, view_id: str) -> dict[str, Any]:
    """The Bundle for this search of the visit's patient (AuditWriteFailed: nothing answered)."""

    access = visit.access
    national_id = access.patient.national_id
    flagged = policy.flagged_for_review(access.attest.basis if access.attest else "")
    extra: dict[str, Detail] = {"nhn_event_id": visit.call.nhn_event_id} if visit.call.nhn_event_id else {}
    self_url = f"{base}/DocumentReference"
    if asked.empty:
        record_event_committed(
            events.DOCUMENT_LIST(
                outcome=Outcome.GRANTED,
                patient=access.patient,
                attest=access.attest,
                flagged_for_review=flagged,
                details={"shown": 0, "filters": asked.log_filters(), "list_request_id": view_id, **extra},
            ),
            actor=visit.caller.actor,
            where=visit.caller.where,
        )
        return fhir.search_bundle(
            [], base=base, total=0, self_url=self_url, next_url=None, included=[], issues=[]
        )
    listed = listing.list_page(
        access,
        asked.list_params(),
        today=timezone.localdate(),
        wait=True,  # an API answer has no fragments to come: every source is asked now
        record=listing.answers_recorder(access, view_id, actor=visit.caller.actor, where=visit.caller.where),
    )
    rows: list[ListRow] = [
        r if isinstance(r, ListRow) else listing.list_row(r) for r in listed.page.object_list
    ]
    remote_ids = listed.remote_source_ids
    if asked.document_id:
        # The one document, looked up in the whole list: the event names it alone.
        rows = [r for r in rows if _resource_id(r, remote_ids) == asked.document_id]
        total = len(rows)
    else:
        total = listed.page.paginator.count
        if listed.page.number != asked.page:
            rows = []  # past the last page (the list got shorter): nothing, not the last page again
    details: dict[str, Detail] = {
        # What was answered, not the page as listed (the two differ for `_id` and past the end).
        **listed.event_details(shown=rows, page=asked.page),
        "filters": asked.log_filters(),
        "list_request_id": view_id,
        **extra,
    }
    record_event_committed(
        events.DOCUMENT_LIST(
            outcome=Outcome.GRANTED,
            patient=access.patient,
            attest=access.attest,
            flagged_for_review=flagged,
            details=details,
        ),
        actor=visit.caller.actor,
        where=visit.caller.where,
    )
    matches = []
    for row in rows:
        resource_id = _resource_id(row, remote_ids)
        matches.append(
            fhir.document_reference(
                row,
                resource_id=resource_id,
                national_id=national_id,
                national_id_kind=access.patient.national_id_kind,
                attachment_url=f"{base}/Binary/{resource_id}",
                include_patient=asked.include_patient,
            )
        )
    next_url = None
    if not asked.document_id and rows and listed.page.has_next():
        token = search.cursor(
            asked, page=asked.page + 1, client_id=visit.call.token.client_id, national_id=national_id
        )
        next_url = f"{base}/DocumentReference?_cursor={token}"
    if asked.page > 1 or asked.binding:
        this = search.cursor(
            asked, page=asked.page, client_id=visit.call.token.client_id, national_id=national_id
        )
        self_url = f"{base}/DocumentReference?_cursor={this}"
    names = {s.source_id: s.source_name for s in listed.sources}
    issues = fhir.list_issues(listed.not_shown_lines, listed.sources, listed.source_notices, names)
    bundle = fhir.search_bundle(
        matches,
        base=base,
        total=total,
        self_url=self_url,
        next_url=next_url,
        included=[fhir.patient(national_id, access.patient.national_id_kind)]
        if asked.include_patient and matches
        else [],
        issues=issues,
    )
    return bundle
