"""Log review (loggkontroll): who gets in, what an auditor sees (their organisation's staff's
events and events on their organisation's documents, nothing else: by search, by event id
and by export), the risk signals (each fires on a constructed case and stays silent on a
benign one; the query filter agrees with the pure function), keyset paging, a constant
query count, and no national id in any URL."""

from __future__ import annotations

import datetime
import re
import uuid

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from pjd_portal.access import policy
from pjd_portal.access.models import Basis
from pjd_portal.accounts.models import Role
from pjd_portal.auditlog import events as kinds
from pjd_portal.auditlog.events import Outcome
from pjd_portal.auditlog.models import AccessEvent
from pjd_portal.logreading import log_search, risk
from pjd_portal.logreading.models import EventSignals
from pjd_portal.logreading.stored_signals import compute_signals
from pjd_portal.patients.models import AddressProtection
from tests.builders import (
    LIST_PATIENT_ID,
    OTHER_PATIENT_ID,
    T0,
    add_document,
    comparable,
    grant_role,
    hospital_doctor,
    login,
    make_patient,
    matched,
    record,
    revoke_roles,
    staff,
)

SEARCH = "/forvaltning/loggkontroll/"
EXPORT = "/forvaltning/loggkontroll/eksport/"
OTHER_PERSONAS = ["anonymous", "fastlege", "other_clinician", "administrator"]
ROW = re.compile(r'<tr data-testid="log-row" data-event-id="([0-9a-f-]+)">')


# --- helpers ---------------------------------------------------------------------------


def event_url(event: AccessEvent | uuid.UUID) -> str:
    event_id = event.event_id if isinstance(event, AccessEvent) else event
    return f"/forvaltning/loggkontroll/hendelse/{event_id}/"


def signals_by_event(world, thresholds=None) -> dict[int, tuple[str, ...]]:
    """Every event in the hospital auditor's scope with its signals, through the search;
    checks on the way that filtering on each signal gives exactly the rows that carry it,
    and that the stored signals (`compute_signals`) are the ones computed on the fly."""

    thresholds = thresholds or risk.Thresholds.from_settings()
    auditor = staff(world.auditor, world.hospital)

    def through_search() -> dict[int, tuple[str, ...]]:
        page = log_search.search_page(auditor, log_search.LogFilters(), thresholds=thresholds, limit=200)
        found = {row.event.pk: row.signals for row in page.rows}
        for signal in risk.Signal:
            filtered = log_search.search_page(
                auditor, log_search.LogFilters(signal=signal), thresholds=thresholds, limit=200
            )
            assert {row.event.pk for row in filtered.rows} == {
                pk for pk, signals in found.items() if signal in signals
            }, signal
        return found

    assert not EventSignals.objects.exists()
    live = through_search()  # nothing stored yet: every signal computed with the page
    compute_signals(thresholds=thresholds)
    assert set(EventSignals.objects.values_list("event_pk", flat=True)) >= set(live)
    assert through_search() == live  # now read from the stored rows
    return live


# --- who gets in -------------------------------------------------------------------------


@pytest.mark.parametrize("persona", OTHER_PERSONAS)
def test_everyone_but_the_auditor_gets_the_404_of_a_missing_page(world, persona_client, persona):
    doc = add_document(world)
    event = record(
        world,
        T0,
        kinds.DOCUMENT_OPEN.name,
        user=world.fastlege,
        org=world.gp_office,
        document=doc,
        patient=world.patient,
    )
    client = persona_client(persona)
    missing = client.get("/forvaltning/finnes-ikke/")
    assert missing.status_code == 404
    attempts = [
        ("get", SEARCH),
        ("post", SEARCH),
        ("get", event_url(event)),
        ("post", EXPORT),
        ("get", EXPORT),
    ]
    for method, url in attempts:
        response = getattr(client, method)(url, {"national_id": LIST_PATIENT_ID})
        assert response.status_code == 404, (persona, method, url)
        assert comparable(response) == comparable(missing)
        assert LIST_PATIENT_ID not in response.content.decode()
    denied = AccessEvent.objects.filter(event_type=kinds.ACCESS_DENIED.name, reason_code="not_auditor")
    assert denied.count() == (0 if persona == "anonymous" else len(attempts))
    assert not AccessEvent.objects.filter(
        event_type__in=[kinds.LOG_SEARCH.name, kinds.LOG_EVENT_VIEW.name, kinds.LOG_EXPORT.name]
    ).exists()


def test_an_auditor_role_elsewhere_or_revoked_does_not_open_the_log_review(world):
    # The auditor acting for an organisation where they hold another role only.
    grant_role(world.auditor, world.gp_office, Role.ACCESS_ADMINISTRATOR)
    assert login(Client(), world.auditor, world.gp_office).get(SEARCH).status_code == 404
    revoke_roles(world.auditor, role=Role.AUDITOR)
    assert login(Client(), world.auditor, world.hospital).get(SEARCH).status_code == 404
    assert not policy.may_review_access_log(None)
    no_orgnr = policy.StaffFacts(user_id=1, organisation_id=1, roles=frozenset({Role.AUDITOR}))
    assert not policy.may_review_access_log(no_orgnr)
    assert not policy.auditor_may_see_event(no_orgnr, "", "")


def test_the_auditor_sees_the_search_form(world, as_auditor):
    response = as_auditor.get(SEARCH)
    assert response.status_code == 200
    body = response.content.decode()
    assert 'data-testid="log-search-form"' in body and 'method="post"' in body
    assert "Loggkontroll" in body and "Risikosignal" in body
    assert 'data-testid="log-review-link"' in body
    assert not AccessEvent.objects.filter(event_type=kinds.LOG_SEARCH.name).exists()  # no search yet
    home = as_auditor.get("/").content.decode()
    assert f'href="{SEARCH}"' in home
    assert (
        f'href="{SEARCH}"'
        not in login(Client(), world.administrator, world.gp_office).get("/").content.decode()
    )


def test_methods_other_than_those_of_each_page_are_refused(world, as_auditor):
    assert as_auditor.put(SEARCH).status_code == 405
    assert as_auditor.get(EXPORT).status_code == 405
    doc = add_document(world)
    event = record(
        world,
        T0,
        kinds.DOCUMENT_OPEN.name,
        user=world.fastlege,
        org=world.gp_office,
        document=doc,
        patient=world.patient,
    )
    assert as_auditor.post(event_url(event)).status_code == 405


# --- the auditor's scope -----------------------------------------------------------------


@pytest.fixture
def scoped_events(world):
    """Events of both organisations: the hospital (A) and the legevakt (B), both sources."""

    doctor = hospital_doctor(world)
    hospital_doc = add_document(world, title="Epikrise fra sykehuset")
    from pjd_portal.documents.models import DocumentSource

    legevakt_source = DocumentSource.objects.create(organisation=world.legevakt, name=world.legevakt.name)
    legevakt_doc = add_document(world, title="Legevaktnotat")
    legevakt_doc.source = legevakt_source
    legevakt_doc.save()
    return {
        # made by the hospital's staff
        "a_staff": record(world, T0, user=doctor, org=world.hospital, patient=world.patient),
        # the GP office opening the hospital's document
        "a_document": record(
            world,
            T0,
            kinds.DOCUMENT_OPEN.name,
            user=world.fastlege,
            org=world.gp_office,
            patient=world.patient,
            document=hospital_doc,
        ),
        # the legevakt's staff, on their own document and without one
        "b_staff": record(
            world, T0, user=world.other_clinician, org=world.legevakt, patient=world.other_patient
        ),
        "b_document": record(
            world,
            T0,
            kinds.DOCUMENT_OPEN.name,
            user=world.other_clinician,
            org=world.legevakt,
            patient=world.patient,
            document=legevakt_doc,
        ),
        # the GP office on the legevakt's document: neither the hospital's staff nor document
        "b_gp": record(
            world,
            T0,
            kinds.DOCUMENT_OPEN.name,
            user=world.fastlege,
            org=world.gp_office,
            patient=world.patient,
            document=legevakt_doc,
        ),
    }


def _search_ids(client, data=None) -> list[str]:
    response = client.post(SEARCH, data or {})
    assert response.status_code == 200, response.content[:1000]
    return ROW.findall(response.content.decode())


def test_an_auditor_sees_their_staffs_events_and_events_on_their_documents_only(
    world, as_auditor, scoped_events, legevakt_auditor
):
    ids = set(_search_ids(as_auditor, {"event_type": "", "national_id": ""}))
    mine = {str(scoped_events[k].event_id) for k in ("a_staff", "a_document")}
    theirs = {str(scoped_events[k].event_id) for k in ("b_staff", "b_document", "b_gp")}
    assert mine <= ids and not theirs & ids
    # Searching for the patient does not widen the scope.
    ids = set(_search_ids(as_auditor, {"national_id": LIST_PATIENT_ID}))
    assert ids == {str(scoped_events["a_staff"].event_id), str(scoped_events["a_document"].event_id)}
    # The legevakt's auditor sees the mirror image.
    other = login(Client(), legevakt_auditor, world.legevakt)
    ids = set(_search_ids(other, {"event_type": kinds.DOCUMENT_OPEN.name}))
    assert ids == {str(scoped_events[k].event_id) for k in ("b_document", "b_gp")}
    ids = set(_search_ids(other, {"event_type": kinds.PATIENT_LOOKUP.name}))
    assert ids == {str(scoped_events["b_staff"].event_id)}


def test_a_guessed_or_foreign_event_id_is_the_404_of_a_missing_page_and_logged(
    world, as_auditor, scoped_events
):
    missing = as_auditor.get("/forvaltning/finnes-ikke/")
    for event_id in (scoped_events["b_staff"].event_id, scoped_events["b_document"].event_id, uuid.uuid4()):
        response = as_auditor.get(event_url(event_id))
        assert response.status_code == 404
        assert comparable(response) == comparable(missing)
        assert "Lars Legevakt" not in response.content.decode()
    denied = AccessEvent.objects.filter(
        event_type=kinds.ACCESS_DENIED.name, reason_code="event_outside_scope"
    )
    assert denied.count() == 3
    assert all(
        d.actor_name == "Rune Revisor" and d.organisation_orgnr == world.hospital.orgnr for d in denied
    )
    assert not AccessEvent.objects.filter(event_type=kinds.LOG_EVENT_VIEW.name).exists()


def test_the_event_page_shows_an_event_in_scope_and_is_logged(world, as_auditor, scoped_events):
    event = scoped_events["a_document"]
    response = as_auditor.get(event_url(event))
    assert response.status_code == 200
    body = response.content.decode()
    assert "Kari Fastlege" in body and "Epikrise fra sykehuset" in body and str(event.event_id) in body
    assert "Ingrid Testesen" in body
    [view] = AccessEvent.objects.filter(event_type=kinds.LOG_EVENT_VIEW.name)
    assert view.actor_name == "Rune Revisor" and view.patient == world.patient
    assert view.details["event_id"] == str(event.event_id)


def test_the_export_holds_only_the_auditors_scope_and_is_logged(world, as_auditor, scoped_events):
    response = as_auditor.post(EXPORT, {})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert response["Content-Disposition"].startswith('attachment; filename="loggkontroll-')
    assert response.streaming
    text = b"".join(response.streaming_content).decode("utf-8")
    assert text.startswith("\ufeff")
    lines = text.lstrip("\ufeff").splitlines()
    assert lines[0].startswith("Tidspunkt (norsk tid);Hendelse-ID;Hendelse")
    for key in ("a_staff", "a_document"):
        assert str(scoped_events[key].event_id) in text
    for key in ("b_staff", "b_document", "b_gp"):
        assert str(scoped_events[key].event_id) not in text
    [export] = AccessEvent.objects.filter(event_type=kinds.LOG_EXPORT.name)
    assert export.actor_name == "Rune Revisor" and export.details["format"] == "csv"
    # The export itself is an event of the hospital's staff, written before the stream.
    assert str(export.event_id) in text


def test_the_export_of_a_patient_search_and_of_a_formula(world, as_auditor):
    doctor = hospital_doctor(world)
    record(
        world,
        T0,
        user=doctor,
        org=world.hospital,
        patient=world.patient,
        reason_text='=HYPERLINK("http://x")',
    )
    record(world, T0, user=doctor, org=world.hospital, patient=world.other_patient)
    response = as_auditor.post(
        EXPORT, {"national_id": LIST_PATIENT_ID, "event_type": kinds.PATIENT_LOOKUP.name}
    )
    text = b"".join(response.streaming_content).decode("utf-8")
    lines = text.lstrip("\ufeff").splitlines()
    assert len(lines) == 2
    assert LIST_PATIENT_ID in lines[1] and OTHER_PATIENT_ID not in text
    assert "'=HYPERLINK" in lines[1]
    [export] = AccessEvent.objects.filter(event_type=kinds.LOG_EXPORT.name)
    assert export.patient == world.patient and export.details["filters"]["event_type"] == "patient_lookup"
    # A bad national id: no export, a clear message, and the attempt is logged.
    response = as_auditor.post(EXPORT, {"national_id": "1234"})
    assert response.status_code == 400 and "11 siffer" in response.content.decode()
    assert AccessEvent.objects.filter(event_type=kinds.LOG_EXPORT.name, outcome=Outcome.INVALID).count() == 1


def test_the_policy_function_and_the_query_filter_agree(world, scoped_events, legevakt_auditor):
    for user, org in (
        (world.auditor, world.hospital),
        (legevakt_auditor, world.legevakt),
        (world.fastlege, world.gp_office),
    ):
        facts = staff(user, org)
        by_query = set(
            AccessEvent.objects.filter(policy.log_review_events_q(facts)).values_list("pk", flat=True)
        )
        by_function = {
            e.pk
            for e in AccessEvent.objects.all()
            if policy.auditor_may_see_event(facts, e.organisation_orgnr, e.source_orgnr)
        }
        assert by_query == by_function
        assert bool(by_query) == (user != world.fastlege)


# --- searching -----------------------------------------------------------------------


def test_a_search_is_logged_with_its_filters_and_the_patient(world, as_auditor):
    doctor = hospital_doctor(world)
    record(world, T0, user=doctor, org=world.hospital, patient=world.patient)
    ids = _search_ids(
        as_auditor, {"national_id": LIST_PATIENT_ID, "clinician": "910000033", "signal": "no_care_relation"}
    )
    assert len(ids) == 1
    [search] = AccessEvent.objects.filter(event_type=kinds.LOG_SEARCH.name)
    assert search.actor_name == "Rune Revisor" and search.organisation_orgnr == world.hospital.orgnr
    assert search.patient == world.patient and search.patient_national_id == LIST_PATIENT_ID
    assert search.details["filters"]["clinician"] == "910000033"
    assert search.details["filters"]["signal"] == "no_care_relation"
    assert search.details["returned"] == 1
    assert LIST_PATIENT_ID not in str(search.details)


def test_search_by_clinician_time_range_event_type_and_outcome(world, as_auditor):
    doctor = hospital_doctor(world)
    nurse = hospital_doctor(world, name="Siri Sykepleier", hpr="910000044")
    late = T0.replace(hour=22, minute=30)  # 00:30 on 2 July in Oslo
    e1 = record(world, T0, user=doctor, org=world.hospital, patient=world.patient)
    e2 = record(world, late, user=nurse, org=world.hospital, patient=world.patient)
    e3 = record(
        world,
        T0,
        kinds.ACCESS_DENIED.name,
        Outcome.DENIED,
        user=nurse,
        org=world.hospital,
        patient=world.patient,
        reason_code="patient_reserved",
    )
    assert set(_search_ids(as_auditor, {"clinician": "910000033"})) == {str(e1.event_id)}
    assert set(_search_ids(as_auditor, {"clinician": "sykepl"})) == {str(e2.event_id), str(e3.event_id)}
    assert set(_search_ids(as_auditor, {"date_from": "2026-07-02", "clinician": "Siri"})) == {
        str(e2.event_id)
    }
    assert set(_search_ids(as_auditor, {"date_to": "2026-07-01", "clinician": "Siri"})) == {str(e3.event_id)}
    assert set(_search_ids(as_auditor, {"outcome": "denied"})) == {str(e3.event_id)}
    assert set(_search_ids(as_auditor, {"event_type": "patient_lookup"})) == {
        str(e1.event_id),
        str(e2.event_id),
    }


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"national_id": "1234"}, "11 siffer"),
        (
            {"date_from": "2026-07-02", "date_to": "2026-07-01"},
            "Til-datoen må være samme dag som eller etter fra-datoen",
        ),
        ({"date_from": "i går"}, "Skriv inn en dato"),
        ({"cursor": "tampered"}, "Siden kunne ikke vises"),
        ({"date_to": "9999-12-31"}, "mellom 2000 og 2100"),
        ({"date_from": "0001-01-01"}, "mellom 2000 og 2100"),
    ],
)
def test_bad_input_gets_a_clear_norwegian_message(world, as_auditor, data, message):
    response = as_auditor.post(SEARCH, data)
    assert response.status_code == 400
    body = response.content.decode()
    assert message in body, body[:3000]
    assert 'data-testid="log-search-results"' not in body


def test_keyset_paging_returns_every_event_once_in_order(world, as_auditor, settings):
    settings.LOG_REVIEW_PAGE_SIZE = 3
    doctor = hospital_doctor(world)
    events = [
        record(
            world,
            T0 + datetime.timedelta(minutes=i // 2),
            user=doctor,
            org=world.hospital,
            patient=world.patient,
        )
        for i in range(8)
    ]
    expected = [str(e.event_id) for e in sorted(events, key=lambda e: (e.occurred_at, e.pk), reverse=True)]
    data = {"national_id": LIST_PATIENT_ID, "event_type": kinds.PATIENT_LOOKUP.name}
    seen, pages = [], 0
    while True:
        with CaptureQueriesContext(connection) as queries:
            response = as_auditor.post(SEARCH, data)
        assert response.status_code == 200
        assert not any("OFFSET" in q["sql"].upper() for q in queries)
        body = response.content.decode()
        pages += 1
        seen += ROW.findall(body)
        match = re.search(
            r'<form method="post" action="([^"]+)" data-testid="log-search-next">(.*?)</form>', body, re.S
        )
        if match is None:
            break
        assert match.group(1) == SEARCH
        cursor = matched(r'name="cursor" value="([^"]+)"', match.group(2))
        assert f'name="national_id" value="{LIST_PATIENT_ID}"' in match.group(2)
        data = {**data, "cursor": cursor}
        # An event written between two pages moves nothing.
        record(world, T0 + datetime.timedelta(days=1), user=doctor, org=world.hospital, patient=world.patient)
    assert pages == 3
    assert seen == expected


def test_no_national_id_in_any_url(world, as_auditor, settings):
    settings.LOG_REVIEW_PAGE_SIZE = 2
    doctor = hospital_doctor(world)
    for i in range(3):
        record(
            world, T0 + datetime.timedelta(minutes=i), user=doctor, org=world.hospital, patient=world.patient
        )
    responses = [
        as_auditor.post(SEARCH, data)
        for data in (
            {"national_id": LIST_PATIENT_ID},
            {"national_id": "1234"},
            {"national_id": OTHER_PATIENT_ID},
        )
    ]
    [first] = ROW.findall(responses[0].content.decode())[:1]
    responses.append(as_auditor.get(event_url(uuid.UUID(first))))
    for response in responses:
        assert "Location" not in response
        body = response.content.decode()
        urls = re.findall(r'(?:action|href|src|hx-get|hx-post)="([^"]*)"', body)
        assert urls
        assert all(LIST_PATIENT_ID not in url and OTHER_PATIENT_ID not in url for url in urls)
        for form in re.findall(r"<form[^>]*>", body):
            assert 'method="post"' in form, form
    assert LIST_PATIENT_ID in responses[0].content.decode()  # shown in the page, never in a URL


def test_the_page_costs_the_same_queries_for_5_and_50_events(world, as_auditor):
    doctor = hospital_doctor(world)
    for patient, n in ((world.patient, 5), (world.other_patient, 50)):
        for i in range(n):
            doc = add_document(world, patient, title=f"Dokument {i}")
            record(
                world,
                T0 + datetime.timedelta(seconds=i),
                kinds.DOCUMENT_OPEN.name,
                user=doctor,
                org=world.hospital,
                patient=patient,
                document=doc,
                basis=Basis.AKUTT,
            )
    as_auditor.post(SEARCH, {"national_id": "1234"})  # warm up the session
    counts = {}
    for national_id, n in ((LIST_PATIENT_ID, 5), (OTHER_PATIENT_ID, 50)):
        for signal in ("", "emergency"):
            with CaptureQueriesContext(connection) as queries:
                response = as_auditor.post(
                    SEARCH, {"national_id": national_id, "event_type": "document_open", "signal": signal}
                )
            assert response.status_code == 200
            body = response.content.decode()
            assert body.count('data-testid="log-row"') == n
            assert body.count('data-signal="emergency"') == n
            counts[(n, signal)] = len(queries)
    assert counts[(5, "")] == counts[(50, "")] and counts[(5, "emergency")] == counts[(50, "emergency")], (
        counts
    )


# --- risk signals ----------------------------------------------------------------------


def test_emergency_or_elevated_access(world):
    doctor = hospital_doctor(world)
    fired = [
        record(
            world,
            T0,
            kinds.BASIS_STATED.name,
            user=doctor,
            org=world.hospital,
            patient=world.patient,
            basis=b,
        )
        for b in (Basis.AKUTT, Basis.FORHOYET_SAMTYKKE, Basis.FORHOYET_AKUTT)
    ]
    fired.append(
        record(world, T0, kinds.EMERGENCY_ACCESS.name, user=doctor, org=world.hospital, patient=world.patient)
    )
    silent = [
        record(
            world,
            T0,
            kinds.BASIS_STATED.name,
            user=doctor,
            org=world.hospital,
            patient=world.patient,
            basis=b,
        )
        for b in (Basis.SAMTYKKE, Basis.UNNTAK)
    ]
    signals = signals_by_event(world)
    assert all("emergency" in signals[e.pk] for e in fired)
    assert not any("emergency" in signals[e.pk] for e in silent)


def test_no_care_relation(world):
    doctor = hospital_doctor(world)
    known = make_patient("Kjentmann")
    stale = make_patient("Gammelkjent")
    record(
        world,
        T0 - datetime.timedelta(days=60),
        kinds.DOCUMENT_OPEN.name,
        user=doctor,
        org=world.hospital,
        patient=known,
    )
    record(
        world,
        T0 - datetime.timedelta(days=400),
        kinds.DOCUMENT_OPEN.name,
        user=doctor,
        org=world.hospital,
        patient=stale,
    )
    # A refusal is no contact, nor is another organisation's access.
    record(
        world,
        T0 - datetime.timedelta(days=30),
        kinds.ACCESS_DENIED.name,
        Outcome.DENIED,
        user=doctor,
        org=world.hospital,
        patient=world.other_patient,
    )
    record(
        world,
        T0 - datetime.timedelta(days=30),
        kinds.DOCUMENT_OPEN.name,
        user=world.other_clinician,
        org=world.legevakt,
        patient=world.other_patient,
    )
    stranger = record(world, T0, user=doctor, org=world.hospital, patient=world.other_patient)
    same_visit = record(
        world,
        T0 + datetime.timedelta(minutes=5),
        kinds.DOCUMENT_LIST.name,
        user=doctor,
        org=world.hospital,
        patient=world.other_patient,
    )
    too_old = record(world, T0, user=doctor, org=world.hospital, patient=stale)
    with_contact = record(world, T0, user=doctor, org=world.hospital, patient=known)
    # The fastlege and their list patient, on the hospital's document (so in scope).
    doc = add_document(world)
    list_patient = record(
        world,
        T0,
        kinds.DOCUMENT_OPEN.name,
        user=world.fastlege,
        org=world.gp_office,
        patient=world.patient,
        document=doc,
    )
    login_event = record(world, T0, kinds.LOGIN.name, user=doctor, org=world.hospital)
    signals = signals_by_event(world)
    for event in (stranger, same_visit, too_old):
        assert "no_care_relation" in signals[event.pk], event.event_type
    for event in (with_contact, list_patient, login_event):
        assert "no_care_relation" not in signals[event.pk], event.event_type


def test_the_clinician_looks_up_themselves(world):
    doctor = hospital_doctor(world)
    themselves = make_patient("Sykehusdal", national_id=doctor.pid, given_name="Hanne")
    own = record(world, T0, user=doctor, org=world.hospital, patient=themselves)
    other = record(world, T0, user=doctor, org=world.hospital, patient=world.patient)
    # A lookup of an unknown national id carries no patient row, only the number.
    unknown = record(
        world, T0, user=doctor, org=world.hospital, patient_national_id=doctor.pid, outcome=Outcome.NOT_FOUND
    )
    signals = signals_by_event(world)
    assert "self_lookup" in signals[own.pk] and "self_lookup" in signals[unknown.pk]
    assert "self_lookup" not in signals[other.pk]
    assert "colleague" not in signals[own.pk]  # the same person, not a colleague


def test_same_surname_as_the_patient(world):
    doctor = hospital_doctor(world, name="Hanne Marie Testesen")
    compound = hospital_doctor(world, name="Ola Berg Hansen", hpr="910000055")
    near = hospital_doctor(world, name="Anne Isberg", hpr="910000066")
    berg_hansen = make_patient("Berg Hansen")
    berg = make_patient("Berg")
    family = record(world, T0, user=doctor, org=world.hospital, patient=world.patient)
    double = record(world, T0, user=compound, org=world.hospital, patient=berg_hansen)
    stranger = record(world, T0, user=doctor, org=world.hospital, patient=world.other_patient)
    not_a_word = record(world, T0, user=near, org=world.hospital, patient=berg)
    signals = signals_by_event(world)
    assert "same_surname" in signals[family.pk] and "same_surname" in signals[double.pk]
    assert "same_surname" not in signals[stranger.pk] and "same_surname" not in signals[not_a_word.pk]


def test_the_patient_is_a_colleague(world):
    doctor = hospital_doctor(world)
    # The auditor works at the hospital; the fastlege works elsewhere.
    colleague = make_patient("Revisor", national_id=world.auditor.pid, given_name="Rune")
    outsider = make_patient("Fastlege", national_id=world.fastlege.pid, given_name="Kari")
    fired = record(world, T0, user=doctor, org=world.hospital, patient=colleague)
    silent = record(world, T0, user=doctor, org=world.hospital, patient=outsider)
    signals = signals_by_event(world)
    assert "colleague" in signals[fired.pk]
    assert "colleague" not in signals[silent.pk]


def test_many_distinct_patients_in_a_short_time(world, settings):
    settings.LOG_REVIEW_MANY_PATIENTS = 3
    settings.LOG_REVIEW_MANY_PATIENTS_MINUTES = 10
    browser = hospital_doctor(world)
    steady = hospital_doctor(world, name="Stine Stødig", hpr="910000077")
    patients = [make_patient(f"Pasient{i}") for i in range(3)]
    burst = [
        record(world, T0 + datetime.timedelta(minutes=2 * i), user=browser, org=world.hospital, patient=p)
        for i, p in enumerate(patients)
    ]
    # Many events on one patient, and three patients spread over an hour: no burst.
    same_patient = [
        record(
            world,
            T0 + datetime.timedelta(minutes=i),
            kinds.DOCUMENT_OPEN.name,
            user=steady,
            org=world.hospital,
            patient=world.patient,
        )
        for i in range(5)
    ]
    spread = [
        record(
            world, T0 + datetime.timedelta(minutes=20 + 20 * i), user=steady, org=world.hospital, patient=p
        )
        for i, p in enumerate(patients)
    ]
    signals = signals_by_event(world)
    assert [("many_patients" in signals[e.pk]) for e in burst] == [False, False, True]
    assert not any("many_patients" in signals[e.pk] for e in same_patient + spread)


def test_outside_normal_hours(world, settings):
    settings.LOG_REVIEW_WORKDAY_START_HOUR = 7
    settings.LOG_REVIEW_WORKDAY_END_HOUR = 17
    doctor = hospital_doctor(world)

    def at(day, hour, minute=0):  # Oslo time, July (UTC+2)
        return datetime.datetime(2026, 7, day, hour, minute, tzinfo=risk.OSLO)

    fired = [
        record(world, when, user=doctor, org=world.hospital, patient=world.patient)
        for when in (at(4, 12), at(5, 12), at(1, 6, 59), at(1, 17), at(1, 23))
    ]
    silent = [
        record(world, when, user=doctor, org=world.hospital, patient=world.patient)
        for when in (at(1, 7), at(1, 12), at(3, 16, 59))
    ]
    winter = record(
        world,
        datetime.datetime(2026, 1, 7, 6, 30, tzinfo=datetime.UTC),
        user=doctor,
        org=world.hospital,
        patient=world.patient,
    )  # 07:30 in Oslo
    signals = signals_by_event(world)
    assert all("outside_hours" in signals[e.pk] for e in fired)
    assert not any("outside_hours" in signals[e.pk] for e in [*silent, winter])


def test_protected_address_patient(world):
    doctor = hospital_doctor(world)
    hidden = make_patient("Skjermet", address_protection=AddressProtection.STRENGT_FORTROLIG)
    confidential = make_patient("Fortrolig", address_protection=AddressProtection.FORTROLIG)
    fired = [record(world, T0, user=doctor, org=world.hospital, patient=p) for p in (hidden, confidential)]
    silent = record(world, T0, user=doctor, org=world.hospital, patient=world.patient)
    signals = signals_by_event(world)
    assert all("protected_address" in signals[e.pk] for e in fired)
    assert "protected_address" not in signals[silent.pk]


def test_attempts_by_a_blocked_clinician(world):
    doctor = hospital_doctor(world)
    blocked = record(
        world,
        T0,
        kinds.ACCESS_DENIED.name,
        Outcome.DENIED,
        user=doctor,
        org=world.hospital,
        patient=world.patient,
        reason_code="clinician_blocked",
    )
    reserved = record(
        world,
        T0,
        kinds.ACCESS_DENIED.name,
        Outcome.DENIED,
        user=doctor,
        org=world.hospital,
        patient=world.patient,
        reason_code="patient_reserved",
    )
    signals = signals_by_event(world)
    assert "blocked_clinician" in signals[blocked.pk]
    assert "blocked_clinician" not in signals[reserved.pk]


def test_a_clinician_stopped_by_the_lookup_rate_limit(world):
    doctor = hospital_doctor(world)
    stopped = record(
        world,
        T0,
        kinds.RATE_LIMITED.name,
        Outcome.DENIED,
        user=doctor,
        org=world.hospital,
        reason_code="lookup_rate_limited",
        limit=30,
        period="m",
    )
    looked_up = record(world, T0, user=doctor, org=world.hospital, patient=world.patient)
    signals = signals_by_event(world)
    assert signals[stopped.pk] == ("rate_limited",)
    assert "rate_limited" not in signals[looked_up.pk]


def test_a_benign_access_raises_no_signal_at_all(world):
    doc = add_document(world)
    benign = record(
        world,
        T0,
        kinds.DOCUMENT_OPEN.name,
        user=world.fastlege,
        org=world.gp_office,
        patient=world.patient,
        document=doc,
        basis=Basis.UNNTAK,
    )
    assert signals_by_event(world)[benign.pk] == ()


def test_every_signal_has_a_label_and_a_norwegian_explanation(world, as_auditor):
    thresholds = risk.Thresholds(many_patients=20, many_patients_minutes=10)
    from django.utils import translation

    with translation.override("nb"):
        for signal in risk.Signal:
            text = risk.explanation(signal, thresholds)
            assert text and "%(" not in text
        assert "20" in risk.explanation("many_patients", thresholds)
        assert "07:00–17:00" in risk.explanation("outside_hours", thresholds)
        assert risk.explanation("self_lookup", thresholds).startswith("Klinikeren")


def test_signals_show_on_the_row_and_the_event_page(world, as_auditor):
    doctor = hospital_doctor(world)
    event = record(
        world,
        T0,
        kinds.BASIS_STATED.name,
        user=doctor,
        org=world.hospital,
        patient=world.patient,
        basis=Basis.AKUTT,
        reason_text="Bevisstløs etter fall",
    )
    body = as_auditor.post(SEARCH, {"signal": "emergency"}).content.decode()
    assert ROW.findall(body) == [str(event.event_id)]
    assert 'data-signal="emergency"' in body and "Akutt eller forhøyet tilgang" in body
    page = as_auditor.get(event_url(event)).content.decode()
    assert 'data-testid="log-event-signals"' in page
    assert "Bevisstløs etter fall" in page and "Akutt eller forhøyet tilgang" in page
    assert "Ingen omsorgsrelasjon" in page  # the hospital had no earlier contact


def test_pure_signals_need_no_database():
    facts = risk.EventFacts(
        event_type=kinds.PATIENT_LOOKUP.name,
        basis="",
        reason_code="",
        occurred_at=T0,
        actor_pid="1",
        actor_hpr_number="910000011",
        actor_name="Kari Fastlege",
        has_patient=True,
        patient_national_id="2",
        patient_family_name="Testesen",
        patient_fastlege_hpr_number="910000011",
    )
    assert risk.signals_for(facts, risk.Thresholds()) == ()
    login_at_night = risk.EventFacts(
        event_type=kinds.LOGIN.name,
        basis="",
        reason_code="",
        occurred_at=T0.replace(hour=1),
        actor_pid="1",
        actor_hpr_number="",
        actor_name="Kari Fastlege",
        has_patient=False,
        patient_national_id="",
    )
    assert risk.signals_for(login_at_night, risk.Thresholds()) == ()  # not an access to a patient


def test_the_search_filters_by_the_acting_organisation(world, as_auditor, scoped_events):
    """The organisation filter: the acting organisation's org.nr, within the auditor's
    scope only (the legevakt's own events stay out of reach)."""

    def found(orgnr):
        body = as_auditor.post(SEARCH, {"organisation": orgnr}).content.decode()
        return set(ROW.findall(body))

    assert found(world.hospital.orgnr) == {str(scoped_events["a_staff"].event_id)}
    assert found(world.gp_office.orgnr) == {str(scoped_events["a_document"].event_id)}
    assert found(world.legevakt.orgnr) == set()  # B's own events: not the hospital auditor's
    refused = as_auditor.post(SEARCH, {"organisation": "12345"})
    assert refused.status_code == 400
    assert "Skriv et organisasjonsnummer med 9 sifre." in refused.content.decode()
    logged = AccessEvent.objects.filter(event_type=kinds.LOG_SEARCH.name).order_by("pk").first()
    assert logged is not None
    assert logged.details["filters"]["organisation"] == world.hospital.orgnr


@pytest.mark.parametrize("date", ["9999-12-31", "0001-01-01"])
def test_an_export_with_a_far_off_date_is_refused_not_a_500(world, as_auditor, date):
    response = as_auditor.post(SEARCH + "eksport/", {"date_to": date})
    assert response.status_code == 400


def test_context_signals_are_not_shown_for_another_organisations_staff(world, settings):
    """The hospital auditor sees a legevakt doctor's open of a hospital document, but not
    what that doctor did elsewhere (many patients) or who the legevakt's staff are."""
    settings.LOG_REVIEW_MANY_PATIENTS = 2
    doc = add_document(world)
    record(world, T0, user=world.other_clinician, org=world.legevakt, patient=world.other_patient)
    shared = record(
        world,
        T0 + datetime.timedelta(minutes=1),
        kinds.DOCUMENT_OPEN.name,
        user=world.other_clinician,
        org=world.legevakt,
        patient=world.patient,
        document=doc,
    )
    found = signals_by_event(world)
    assert shared.pk in found
    assert not set(found[shared.pk]) & risk.CONTEXT_SIGNALS


def test_a_tampered_page_link_shows_nothing_and_is_logged(world, as_auditor):
    response = as_auditor.post(SEARCH, {"cursor": "tampered"})
    assert response.status_code == 400
    [event] = AccessEvent.objects.filter(event_type=kinds.LOG_SEARCH.name)
    assert (event.outcome, event.reason_code) == (Outcome.INVALID, "invalid_cursor")


# --- which document, and why ---------------------------------------------------------------


def _akutt_attest(world, doctor, reason):
    from pjd_portal.access.models import AccessAttest, PatientLookup

    now = datetime.datetime.now(datetime.UTC)
    lookup = PatientLookup.objects.create(
        user=doctor, organisation=world.hospital, patient=world.patient, created_at=now, expires_at=now
    )
    return AccessAttest.objects.create(
        lookup=lookup,
        user=doctor,
        organisation=world.hospital,
        patient=world.patient,
        basis=Basis.AKUTT,
        purpose_of_use="ETREAT",
        reason=reason,
        created_at=now,
        expires_at=now + datetime.timedelta(hours=4),
    )


def test_the_result_table_names_the_document_and_the_event_page_the_basis_reason(world, as_auditor):
    doctor = hospital_doctor(world)
    doc = add_document(world, title="Epikrise etter hjerteinfarkt", category="A00-1")
    reason = "Innlagt bevisstløs, trenger medisinliste."
    attest = _akutt_attest(world, doctor, reason)
    # The reason is stored with the emergency access; the open under it carries the attest.
    record(
        world, T0, kinds.EMERGENCY_ACCESS.name, user=doctor, org=world.hospital, patient=world.patient,
        attest=attest, reason_text=reason,
    )  # fmt: skip
    opened = record(
        world, T0 + datetime.timedelta(minutes=1), kinds.DOCUMENT_OPEN.name, user=doctor,
        org=world.hospital, patient=world.patient, document=doc, attest=attest,
    )  # fmt: skip
    remote = record(
        world, T0 + datetime.timedelta(minutes=2), kinds.DOCUMENT_OPEN.name, user=doctor,
        org=world.hospital, patient=world.patient, attest=attest, source_orgnr="983974899",
        source_id=7, remote_document_id="DocumentReference/abc-123", title="Røntgen thorax",
        institution_name="Universitetssykehuset Nord-Norge", category="E00-1", confidentiality_code="N",
    )  # fmt: skip
    assert opened.reason_text == ""

    body = as_auditor.post(SEARCH, {"event_type": kinds.DOCUMENT_OPEN.name}).content.decode()
    rows = dict(re.findall(r'data-event-id="([0-9a-f-]+)">(.*?)</tr>', body, re.S))
    local_row, remote_row = rows[str(opened.event_id)], rows[str(remote.event_id)]
    assert "Epikrise etter hjerteinfarkt" in local_row and "Epikriser og sammenfatninger" in local_row
    assert doc.institution_name in local_row
    assert "Røntgen thorax" in remote_row and "Bildediagnostikk" in remote_row
    assert "Universitetssykehuset Nord-Norge" in remote_row and "fra en annen kilde" in remote_row

    page = as_auditor.get(event_url(opened)).content.decode()
    found = re.search(r'data-testid="basis-reason">(.*?)</dd>', page, re.S)
    assert found is not None and found.group(1) == reason
    assert "Epikrise etter hjerteinfarkt" in page and "Akutt" in page
    # An event with no basis shows none.
    plain = record(world, T0, user=doctor, org=world.hospital, patient=world.patient)
    found = re.search(
        r'data-testid="basis-reason">(.*?)</dd>', as_auditor.get(event_url(plain)).content.decode()
    )
    assert found is not None and found.group(1) == "–"
