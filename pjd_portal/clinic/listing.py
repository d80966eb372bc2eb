"""The clinician's document list: the local store's documents and the remote sources'
answers in one list, filtered, sorted and paged together.

Without remote sources the database pages the list. With them, the list is built from the
answers that have arrived (`remote.cached_answer`); a source without one is PENDING and
its rows come through the list's per-source fragment, or, for a browser without
JavaScript, the page is asked again with `wait` and the sources are asked there and
then, together, within the time budget (`remote.answers_for_list`).
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.core.paginator import Page, Paginator
from django.utils import timezone

from pjd_portal.access import policy
from pjd_portal.access.services import PatientAccess
from pjd_portal.auditlog import events
from pjd_portal.auditlog.actor import Actor, PointOfCare
from pjd_portal.auditlog.events import Detail, Outcome
from pjd_portal.auditlog.services import AuditWriteFailed, record_event_committed
from pjd_portal.clinic import remote, selectors
from pjd_portal.clinic.remote import SourceAnswer, SourceListing, nested_counts
from pjd_portal.documents.models import DocumentCategory, DocumentReference
from pjd_portal.documents.sources.base import RemoteDocument


@dataclass
class ListRow:
    """One row of the merged list, from the local store or from a remote source."""

    service_date: datetime.date
    category: str
    category_label: str
    type_name: str
    title: str
    institution_name: str
    department: str
    author: str
    source_id: int
    document_id: str
    # What the MHD API's DocumentReference says beyond the page's columns (epj_api).
    type_code: str = ""
    institution_orgnr: str = ""
    confidentiality_code: str = ""
    content_type: str = ""
    size: int | None = None

    def get_category_display(self) -> str:
        return self.category_label


SORT_KEYS = {
    "date": "service_date",
    "category": "category",
    "type": "type_name",
    "title": "title",
    "institution": "institution_name",
    "department": "department",
    "author": "author",
}


def _matches(d: RemoteDocument, params: selectors.ListParams) -> bool:
    """The clinician's filter on a remote row (the local rows are filtered in the query)."""

    return (
        (not params.category or d.category == params.category)
        and (not params.categories or d.category in params.categories)
        and (not params.title or params.title.casefold() in d.title.casefold())
        and (params.date_from is None or d.service_date >= params.date_from)
        and (params.date_to is None or d.service_date <= params.date_to)
    )


def list_row(d: DocumentReference | RemoteDocument) -> ListRow:
    """One document of either store as a row of the list (and of the MHD API's answer)."""

    return ListRow(
        service_date=d.service_date,
        category=d.category,
        category_label=str(dict(DocumentCategory.choices).get(d.category, d.category)),
        type_name=d.type_name,
        title=d.title,
        institution_name=d.institution_name,
        department=d.department,
        author=d.author,
        source_id=d.source_id,
        document_id=str(d.document_id),
        type_code=d.type_code,
        institution_orgnr=d.institution_orgnr,
        confidentiality_code=d.confidentiality_code,
        content_type=d.content_type,
        size=d.size,
    )


def merged_rows(
    local: list[DocumentReference], remote_documents: list[RemoteDocument], params: selectors.ListParams
) -> list[ListRow]:
    """The local store's listable documents (already filtered by the query) and the remote
    sources' in one list, filtered and sorted as the clinician asked (the list's paging then
    applies to all of them)."""

    rows = [list_row(d) for d in local]
    rows += [list_row(d) for d in remote_documents if _matches(d, params)]
    sort = params.sort
    key = SORT_KEYS[sort.lstrip("-")]
    rows.sort(key=lambda r: (getattr(r, key), r.service_date, r.document_id), reverse=sort.startswith("-"))
    return rows


@dataclass(frozen=True)
class NotShownLine:
    """One line under the list: how many documents of one reason class are not shown
    (from the local store, or from one remote source's answer). Never which ones."""

    reason: str
    count: int
    message: str
    category: str = ""
    source_id: int | None = None

    @property
    def blocked(self) -> bool:
        return self.reason == policy.NOT_SHOWN_BLOCKED


@dataclass(frozen=True)
class SourceNotice:
    """A source that shows this clinician no list: by name, with the reason, no count."""

    source_id: int
    source_name: str
    reason: str
    message: str


def not_shown_lines(
    counts: dict[str, int], *, source_id: int | None = None, source_name: str = ""
) -> list[NotShownLine]:
    """The lines for one set of counts, in a fixed order: the windows by category, blocked,
    categories outside the regulation, formats that cannot be shown."""

    lines = []
    for category in policy.windowed_categories():
        count = counts.get(f"{policy.NOT_SHOWN_WINDOW}:{category}", 0)
        if count:
            message = policy.not_shown_message(
                policy.NOT_SHOWN_WINDOW, count, category=category, source_name=source_name
            )
            lines.append(NotShownLine(policy.NOT_SHOWN_WINDOW, count, message, category, source_id))
    for reason in (policy.NOT_SHOWN_BLOCKED, policy.NOT_SHOWN_CATEGORY, policy.NOT_SHOWN_FORMAT):
        count = counts.get(reason, 0)
        if count:
            message = policy.not_shown_message(reason, count, source_name=source_name)
            lines.append(NotShownLine(reason, count, message, source_id=source_id))
    return lines


@dataclass
class ListPage:
    page: Page[Any]
    params: selectors.ListParams
    # The local store's documents not shown, by `policy.not_shown_q` key.
    not_shown: dict[str, int]
    # The remote sources whose lists this clinician may see, by name, with their answers.
    sources: list[SourceListing]
    remote_source_ids: frozenset[int]
    openable_source_ids: frozenset[int]
    # The sources that show this clinician no list (local and remote), by name.
    source_notices: list[SourceNotice] = field(default_factory=list)

    @property
    def pending(self) -> list[SourceListing]:
        return [s for s in self.sources if s.pending]

    @property
    def hidden_count(self) -> int:
        """The blocked (NORS) documents, local and from the sources' answers."""

        return self.not_shown.get(policy.NOT_SHOWN_BLOCKED, 0) + sum(s.blocked for s in self.sources)

    @property
    def not_shown_lines(self) -> list[NotShownLine]:
        """What the list says under itself of what it does not show: the local store's
        counts, then each answered source's, by name."""

        lines = not_shown_lines(self.not_shown)
        for source in self.sources:
            lines += not_shown_lines(
                source.not_shown, source_id=source.source_id, source_name=source.source_name
            )
        return lines

    def event_details(
        self, shown: Sequence[ListRow] | None = None, page: int | None = None
    ) -> dict[str, Detail]:
        """What the list event records: the page as shown, each source's state, and what
        was not shown (counts by reason class, per source where they come from one).
        `shown` and `page`: what was answered when it is not the page as listed (the MHD
        API's `_id`, one row of the whole list; a page past the end, none)."""

        rows: list[Any] = list(self.page.object_list if shown is None else shown)
        totals = dict(self.not_shown)
        for source in self.sources:
            for key, count in source.not_shown.items():
                totals[key] = totals.get(key, 0) + count
        return {
            "page": self.page.number if page is None else page,
            "sort": self.params.sort,
            "category": self.params.category,
            "filters": {
                # Whether a title was searched, not what: a national id typed into the
                # field must not land in the log.
                "title": bool(self.params.title),
                "from": self.params.date_from,
                "to": self.params.date_to,
            },
            "shown": len(rows),
            "document_ids": [str(d.document_id) for d in rows],
            "remote_document_ids": [
                f"{d.source_id}/{d.document_id}" for d in rows if d.source_id in self.remote_source_ids
            ],
            "sources_not_answering": [s.source_id for s in self.sources if s.failed],
            "sources_pending": [s.source_id for s in self.pending],
            "sources_incomplete": [s.source_id for s in self.sources if s.incomplete or s.ceiling],
            "not_shown": nested_counts(totals),
            "not_shown_by_source": {
                str(s.source_id): nested_counts(s.not_shown)
                for s in self.sources
                if any(s.not_shown.values())
            },
            "sources_not_listing": {str(n.source_id): n.reason for n in self.source_notices},
        }


def source_notices(clinician: policy.ClinicianFacts, rules: list[policy.SourceRules]) -> list[SourceNotice]:
    """The sources that show this clinician no list, by name (one query, only when any)."""

    refused = policy.sources_not_listing(clinician, rules)
    names = selectors.source_names(frozenset(refused))
    notices = [
        SourceNotice(
            source_id,
            names.get(source_id, ""),
            reason,
            policy.source_list_refusal_message(reason, names.get(source_id, ""), clinician.organisation_kind),
        )
        for source_id, reason in refused.items()
        if source_id in names
    ]
    return sorted(notices, key=lambda n: n.source_name)


def answers_recorder(
    access: PatientAccess, view_id: str, *, actor: Actor, where: PointOfCare | None
) -> Callable[[list[SourceAnswer]], None]:
    """What to do with the answers of the sources a request asks: one list event each,
    committed, and only then is the answer kept for the list (an answer whose contact is
    not in the log is never shown). The portal's list and the MHD API share it."""

    flagged = policy.flagged_for_review(access.attest.basis if access.attest else "")

    def record(answers: list[SourceAnswer]) -> None:
        today = timezone.localdate()
        try:
            for answer in answers:
                record_event_committed(
                    events.DOCUMENT_LIST(
                        outcome=Outcome.GRANTED if answer.result is not None else Outcome.NOT_FOUND,
                        reason_code=f"source_{answer.failure}"[:50] if answer.failure else "",
                        patient=access.patient,
                        attest=access.attest,
                        source_orgnr=answer.source_orgnr,
                        flagged_for_review=flagged,
                        details=remote.listing_of(answer, today, access.patient.pk).event_details(),
                        list_request_id=view_id,
                        nhn_event_id=answer.nhn_event_id,
                    ),
                    actor=actor,
                    where=where,
                )
        except AuditWriteFailed:
            for answer in answers:
                remote.release(access, answer.source_id)
            raise
        for answer in answers:
            remote.keep(access, answer)

    return record


def list_page(
    access: PatientAccess,
    params: selectors.ListParams,
    *,
    today: datetime.date,
    wait: bool,
    record: Callable[[list[SourceAnswer]], None],
) -> ListPage:
    """The page of the list the clinician asked for, from the sources' kept answers; a
    source without one is PENDING (its fragment brings it). `wait`: ask those sources now
    (the page for a browser without JavaScript); what is asked goes to `record` (its
    events, then kept)."""

    rules = access.source_rules
    listable = policy.listable_source_ids(access.clinician, rules)
    openable = policy.openable_source_ids(access.clinician, rules)
    remote_sources = remote.remote_sources()
    # Remote sources are asked at the source; the local store holds only the others.
    local_ids = listable - frozenset(remote_sources)
    patient_id = access.patient.pk
    notices = source_notices(access.clinician, rules)
    page: Page[Any]
    if not remote_sources:
        page, not_shown = selectors.document_page_with_counts(patient_id, today, local_ids, params)
        return ListPage(page, params, not_shown, [], frozenset(), openable, notices)
    not_shown = selectors.not_shown_counts(patient_id, today, local_ids)

    listed = remote.listed_sources(remote_sources, listable)
    # Without a working cache no fragment's answer could reach the list: ask here.
    if wait or (listed and not remote.cache_works()):
        answers = remote.answers_for_list(access, listed, record=record)
    else:
        answers = {s.pk: a for s in listed if (a := remote.cached_answer(access, s.pk)) is not None}
    sources = [remote.source_listing(answers.get(s.pk), s, today, patient_id) for s in listed]
    rows = merged_rows(
        list(selectors.listable_documents(patient_id, today, local_ids, params)),
        [d for s in sources for d in s.documents],
        params,
    )
    page = Paginator(rows, params.page_size).get_page(params.page)
    return ListPage(page, params, not_shown, sources, frozenset(remote_sources), openable, notices)
