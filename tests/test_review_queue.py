"""The log review's queue: who gets in (only an auditor, the rest a 404), what an auditor
sees and may change (their organisation's scope, nothing else: by list, by guessed id, by
forged POST), the nightly command (idempotent, the sample at the configured rate with a
fixed key), status changes with history and audit, a duplicate or stale submit (also at
the same moment on PostgreSQL), keyset paging at a constant query count, and no national
id in any URL."""

from __future__ import annotations

import datetime
import io
import re
import uuid

import pytest
import time_machine
from django.core.management import call_command
from django.db import IntegrityError, connection, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from pjd_portal.access import policy
from pjd_portal.access.models import Basis
from pjd_portal.accounts.models import Role
from pjd_portal.auditlog import events as kinds
from pjd_portal.auditlog.events import Outcome
from pjd_portal.auditlog.models import AccessEvent
from pjd_portal.documents.models import DocumentSource
from pjd_portal.logreading import risk
from pjd_portal.review.models import ReviewChange, ReviewItem, ReviewStatus
from pjd_portal.review.queue import build_queue, draw, is_sampled
from tests.builders import (
    LIST_PATIENT_ID,
    OTHER_PATIENT_ID,
    T0,
    add_auditor,
    add_document,
    comparable,
    grant_role,
    hospital_doctor,
    login,
    make_patient,
    make_user,
    post_at_once,
    record,
    staff,
    synthetic_id,
)

QUEUE = "/forvaltning/loggkontroll/ko/"
OTHER_PERSONAS = ["anonymous", "fastlege", "other_clinician", "administrator"]
ROW = re.compile(r'<tr data-testid="review-row" data-item-id="([0-9a-f-]+)"')


def item_url(item: ReviewItem | uuid.UUID) -> str:
    item_id = item.item_id if isinstance(item, ReviewItem) else item
    return f"{QUEUE}{item_id}/"


def status_url(item: ReviewItem | uuid.UUID) -> str:
    return item_url(item) + "status/"


def queue_all(rate: float = 1.0) -> None:
    """Queue every event written in the tests (around T0)."""

    build_queue(T0 - datetime.timedelta(days=30), T0 + datetime.timedelta(days=30), rate=rate, key=b"t")


def item_for(event: AccessEvent, reviewer_orgnr: str | None = None) -> ReviewItem:
    """The item of `event` for one reviewing organisation (default: the acting one)."""
    return ReviewItem.objects.get(
        event_id=event.event_id, reviewer_orgnr=reviewer_orgnr or event.organisation_orgnr
    )


@pytest.fixture
def emergency(world):
    """An emergency document open by a hospital doctor on the hospital's document: the
    hospital auditor's, flagged."""

    doctor = hospital_doctor(world)
    doc = add_document(world)
    event = record(
        world,
        T0,
        kinds.DOCUMENT_OPEN.name,
        user=doctor,
        org=world.hospital,
        patient=world.patient,
        document=doc,
        basis=Basis.AKUTT,
        reason_text="Innlagt bevisstløs, trenger medisinliste.",
    )
    queue_all(rate=0.0)
    return item_for(event)


def change(client, item, status, comment="", version=None):
    return client.post(
        status_url(item),
        {"status": status, "comment": comment, "version": item.version if version is None else version},
    )


# --- who gets in -------------------------------------------------------------------------


@pytest.mark.parametrize("persona", OTHER_PERSONAS)
def test_everyone_but_the_auditor_gets_the_404_of_a_missing_page(world, persona_client, persona, emergency):
    client = persona_client(persona)
    missing = client.get("/forvaltning/finnes-ikke/")
    attempts = [
        ("get", QUEUE),
        ("get", item_url(emergency)),
        ("post", status_url(emergency)),
        ("get", status_url(emergency)),
    ]
    for method, url in attempts:
        response = getattr(client, method)(url, {"status": "violation", "comment": "x", "version": 1})
        assert response.status_code == 404, (persona, method, url)
        assert comparable(response) == comparable(missing)
    emergency.refresh_from_db()
    assert emergency.status == ReviewStatus.NEW and not ReviewChange.objects.exists()
    denied = AccessEvent.objects.filter(event_type=kinds.ACCESS_DENIED.name, reason_code="not_auditor")
    assert denied.count() == (0 if persona == "anonymous" else len(attempts))
    assert not AccessEvent.objects.filter(event_type=kinds.REVIEW_STATUS_CHANGED.name).exists()


def test_the_auditor_finds_the_queue_in_the_navigation_and_opens_an_item(world, as_auditor, emergency):
    response = as_auditor.get(QUEUE)
    assert response.status_code == 200
    body = response.content.decode()
    assert 'data-testid="review-queue-link"' in body and "Kontrollkø" in body
    assert ROW.findall(body) == [str(emergency.item_id)]
    assert 'data-signal="emergency"' in body
    logged = AccessEvent.objects.get(event_type=kinds.LOG_SEARCH.name)
    assert logged.details["view"] == "review_queue" and logged.details["returned"] == 1

    page = as_auditor.get(item_url(emergency))
    assert page.status_code == 200
    body = page.content.decode()
    explanation = risk.explanation("emergency", risk.Thresholds.from_settings())
    assert explanation in body  # the signal with its plain-language explanation
    assert "Innlagt bevisstløs" in body and LIST_PATIENT_ID in body
    assert 'method="post"' in body and "csrfmiddlewaretoken" in body
    for label in ("Ny", "Under vurdering", "Begrunnet", "Oppfølging", "Brudd"):
        assert label in body
    viewed = AccessEvent.objects.get(event_type=kinds.LOG_EVENT_VIEW.name)
    assert viewed.details["review_item"] == str(emergency.item_id)
    assert viewed.patient_national_id == LIST_PATIENT_ID
    # Only POST changes anything, and only GET shows.
    assert as_auditor.get(status_url(emergency)).status_code == 405
    assert as_auditor.post(item_url(emergency)).status_code == 405
    assert as_auditor.post(QUEUE).status_code == 405
    home = as_auditor.get("/").content.decode()
    assert f'href="{QUEUE}"' not in login(Client(), world.fastlege, world.gp_office).get("/").content.decode()
    assert home  # the auditor's front page renders


def test_the_status_form_needs_a_csrf_token(world, emergency):
    client = login(Client(enforce_csrf_checks=True), world.auditor, world.hospital)
    response = change(client, emergency, ReviewStatus.UNDER_REVIEW)
    assert response.status_code == 403
    assert not ReviewChange.objects.exists()


# --- the auditor's scope -----------------------------------------------------------------


@pytest.fixture
def two_organisations(world):
    """Items of the hospital (A) and of the legevakt (B), and one on a document the
    hospital shares opened by the legevakt (both)."""

    doctor = hospital_doctor(world)
    hospital_doc = add_document(world, title="Epikrise fra sykehuset")
    legevakt_source = DocumentSource.objects.create(organisation=world.legevakt, name=world.legevakt.name)
    legevakt_doc = add_document(world, title="Legevaktnotat")
    legevakt_doc.source = legevakt_source
    legevakt_doc.save()
    events = {
        "a": record(world, T0, user=doctor, org=world.hospital, patient=world.patient),
        "b": record(world, T0, user=world.other_clinician, org=world.legevakt, patient=world.other_patient),
        "b_document": record(
            world,
            T0,
            kinds.DOCUMENT_OPEN.name,
            user=world.other_clinician,
            org=world.legevakt,
            patient=world.patient,
            document=legevakt_doc,
        ),
        "shared": record(
            world,
            T0,
            kinds.DOCUMENT_OPEN.name,
            user=world.other_clinician,
            org=world.legevakt,
            patient=world.patient,
            document=hospital_doc,
        ),
    }
    queue_all()
    items = {name: item_for(event) for name, event in events.items()}
    # The shared document's owner reviews the same event on an item of its own.
    items["shared_at_source"] = item_for(events["shared"], world.hospital.orgnr)
    return items


def test_an_auditor_sees_only_their_organisations_items(
    world, as_auditor, two_organisations, legevakt_auditor
):
    items = two_organisations
    seen_a = set(ROW.findall(as_auditor.get(QUEUE).content.decode()))
    assert seen_a == {str(items["a"].item_id), str(items["shared_at_source"].item_id)}
    other = login(Client(), legevakt_auditor, world.legevakt)
    seen_b = set(ROW.findall(other.get(QUEUE).content.decode()))
    assert seen_b == {str(items[name].item_id) for name in ("b", "b_document", "shared")}
    # The query is the policy's rule, item by item.
    for auditor, org in ((world.auditor, world.hospital), (legevakt_auditor, world.legevakt)):
        facts = staff(auditor, org)
        for item in ReviewItem.objects.all():
            visible = str(item.item_id) in (seen_a if org == world.hospital else seen_b)
            assert visible == (
                policy.auditor_may_see_event(facts, item.organisation_orgnr, item.source_orgnr)
                and item.reviewer_orgnr == org.orgnr
            )


def test_a_guessed_or_foreign_item_is_a_logged_404_and_a_forged_post_changes_nothing(
    world, as_auditor, two_organisations
):
    foreign = two_organisations["b"]
    missing = as_auditor.get(item_url(uuid.uuid4()))
    assert missing.status_code == 404
    response = as_auditor.get(item_url(foreign))
    assert response.status_code == 404
    assert comparable(response) == comparable(missing)
    assert OTHER_PATIENT_ID not in response.content.decode()
    forged = change(as_auditor, foreign, ReviewStatus.JUSTIFIED, "Ser greit ut.")
    assert forged.status_code == 404
    assert comparable(forged) == comparable(missing)
    foreign.refresh_from_db()
    assert foreign.status == ReviewStatus.NEW and foreign.version == 1 and foreign.reviewer is None
    assert not ReviewChange.objects.exists()
    denied = AccessEvent.objects.filter(
        event_type=kinds.ACCESS_DENIED.name, reason_code="review_item_outside_scope"
    )
    assert sorted(e.details["review_item"] for e in denied) == sorted(
        [str(foreign.item_id)] * 2 + [missing.wsgi_request.path.split("/")[-2]]
    )
    assert not AccessEvent.objects.filter(event_type=kinds.REVIEW_STATUS_CHANGED.name).exists()


# --- the nightly command ------------------------------------------------------------------


def test_the_command_queues_flagged_events_and_is_idempotent(world, settings):
    doctor = hospital_doctor(world)
    flagged = record(world, T0, user=doctor, org=world.hospital, patient=world.patient, basis=Basis.AKUTT)
    benign = record(world, T0, user=world.fastlege, org=world.gp_office, patient=world.patient)
    login_event = record(world, T0, kinds.LOGIN.name, user=doctor, org=world.hospital)
    older = record(
        world, T0 - datetime.timedelta(days=3), user=doctor, org=world.hospital, patient=world.patient
    )
    settings.REVIEW_QUEUE_SAMPLE_RATE = 0.0
    out = io.StringIO()
    with time_machine.travel(T0 + datetime.timedelta(hours=1), tick=False):
        call_command("build_review_queue", stdout=out)  # the last 24 hours
    assert "4 events examined" not in out.getvalue()
    assert "3 events examined, 1 flagged and 0 sampled queued, 0 already in the queue" in out.getvalue()
    item = item_for(flagged)
    assert item.signals[0] == "emergency" and not item.sampled and item.status == ReviewStatus.NEW
    assert not ReviewItem.objects.filter(event_id__in=[benign.event_id, login_event.event_id]).exists()

    out = io.StringIO()
    with time_machine.travel(T0 + datetime.timedelta(hours=2), tick=False):
        call_command(
            "build_review_queue",
            "--since",
            (T0 - datetime.timedelta(days=5)).date().isoformat(),
            stdout=out,
        )
    assert "4 events examined, 1 flagged and 0 sampled queued, 1 already in the queue" in out.getvalue()
    assert item_for(older).signals  # no earlier contact: no care relation
    with time_machine.travel(T0 + datetime.timedelta(hours=3), tick=False):
        call_command("build_review_queue", "--since", "2026-06-20", stdout=io.StringIO())
    assert ReviewItem.objects.count() == 2
    # The database keeps one item per event and reviewing organisation, whoever writes it.
    with pytest.raises(IntegrityError), transaction.atomic():
        ReviewItem.objects.create(
            event_pk=flagged.pk,
            event_id=flagged.event_id,
            event_occurred_at=flagged.occurred_at,
            reviewer_orgnr=world.hospital.orgnr,
            queued_at=T0,
        )


def test_the_command_samples_at_the_configured_rate(world, settings):
    settings.REVIEW_QUEUE_SAMPLE_RATE = 0.25
    events = [
        record(
            world,
            T0 + datetime.timedelta(seconds=i),
            user=world.fastlege,
            org=world.gp_office,
            patient=world.patient,
        )
        for i in range(200)
    ]
    out = io.StringIO()
    with time_machine.travel(T0 + datetime.timedelta(hours=1), tick=False):
        call_command("build_review_queue", "--sample-key", "seed-1", stdout=out)
    expected = {e.event_id for e in events if is_sampled(e.event_id, 0.25, b"seed-1")}
    queued = set(ReviewItem.objects.values_list("event_id", flat=True))
    assert queued == expected
    # 25 % of 200 (sd 6.1), within five standard deviations: the event ids are random, and a
    # bound of three failed about once in three hundred runs.
    assert 20 <= len(queued) <= 80
    assert f"200 events examined, 0 flagged and {len(queued)} sampled queued" in out.getvalue()
    assert all(item.sampled and not item.signals for item in ReviewItem.objects.all())
    # The same draw again: nothing new; another key draws another sample.
    with time_machine.travel(T0 + datetime.timedelta(hours=2), tick=False):
        call_command("build_review_queue", "--sample-key", "seed-1", stdout=io.StringIO())
    assert ReviewItem.objects.count() == len(queued)
    other = {e.event_id for e in events if is_sampled(e.event_id, 0.25, b"seed-2")}
    assert other != expected
    assert not any(is_sampled(e.event_id, 0.0, b"seed-1") for e in events)
    assert all(is_sampled(e.event_id, 1.0, b"seed-1") for e in events)


# --- status changes ------------------------------------------------------------------------


def test_a_status_change_is_kept_as_history_and_audited(world, as_auditor, emergency):
    response = change(as_auditor, emergency, ReviewStatus.UNDER_REVIEW)
    assert response.status_code == 302 and response["Location"] == item_url(emergency)
    emergency.refresh_from_db()
    assert (emergency.status, emergency.version, emergency.reviewer) == (
        ReviewStatus.UNDER_REVIEW,
        2,
        world.auditor,
    )
    response = change(as_auditor, emergency, ReviewStatus.JUSTIFIED, "Pasienten var innlagt akutt; i orden.")
    assert response.status_code == 302
    emergency.refresh_from_db()
    assert emergency.status == ReviewStatus.JUSTIFIED and emergency.comment.startswith("Pasienten")
    changes = list(
        ReviewChange.objects.order_by("version").values_list(
            "version", "from_status", "to_status", "changed_by"
        )
    )
    assert changes == [
        (2, ReviewStatus.NEW, ReviewStatus.UNDER_REVIEW, world.auditor.pk),
        (3, ReviewStatus.UNDER_REVIEW, ReviewStatus.JUSTIFIED, world.auditor.pk),
    ]
    audited = AccessEvent.objects.filter(event_type=kinds.REVIEW_STATUS_CHANGED.name).order_by("pk")
    assert [(e.outcome, e.details["from"], e.details["to"]) for e in audited] == [
        (Outcome.GRANTED, "new", "under_review"),
        (Outcome.GRANTED, "under_review", "justified"),
    ]
    assert all(
        e.actor_user_id == world.auditor.pk and e.organisation_orgnr == world.hospital.orgnr for e in audited
    )
    assert {e.details["review_item"] for e in audited} == {str(emergency.item_id)}
    body = as_auditor.get(item_url(emergency)).content.decode()
    assert "Statusen er lagret." in body
    assert body.count('data-testid="review-history-row"') == 2 and "Rune Revisor" in body
    assert "Begrunnet" in body and "Pasienten var innlagt akutt" in body
    # The list filters on the new status.
    assert ROW.findall(as_auditor.get(QUEUE, {"status": "justified"}).content.decode()) == [
        str(emergency.item_id)
    ]
    assert ROW.findall(as_auditor.get(QUEUE, {"status": "new"}).content.decode()) == []


def test_closing_statuses_need_a_comment_and_bad_input_is_refused(world, as_auditor, emergency):
    for status in (ReviewStatus.JUSTIFIED, ReviewStatus.FOLLOW_UP, ReviewStatus.VIOLATION):
        response = change(as_auditor, emergency, status, "   ")
        assert response.status_code == 400
        assert "Skriv en kommentar" in response.content.decode()
    assert change(as_auditor, emergency, "approved").status_code == 400
    assert change(as_auditor, emergency, ReviewStatus.NEW).status_code == 400  # no change at all
    assert as_auditor.post(status_url(emergency), {"status": "under_review"}).status_code == 400  # no version
    assert not ReviewChange.objects.exists()
    assert not AccessEvent.objects.filter(event_type=kinds.REVIEW_STATUS_CHANGED.name).exists()


def test_a_duplicate_submit_records_one_change_and_says_so(world, as_auditor, emergency):
    first = change(as_auditor, emergency, ReviewStatus.VIOLATION, "Slo opp naboen.", version=1)
    again = change(as_auditor, emergency, ReviewStatus.VIOLATION, "Slo opp naboen.", version=1)
    assert first.status_code == again.status_code == 302
    assert ReviewChange.objects.count() == 1
    body = as_auditor.get(item_url(emergency)).content.decode()
    assert "Denne endringen var allerede lagret." in body
    outcomes = AccessEvent.objects.filter(event_type=kinds.REVIEW_STATUS_CHANGED.name).values_list(
        "outcome", "reason_code"
    )
    assert sorted(outcomes) == [(Outcome.GRANTED, ""), (Outcome.INVALID, "review_duplicate")]


def test_a_stale_different_change_is_refused(world, as_auditor, emergency, settings):
    colleague = make_user("t-revisor-2", synthetic_id(9, 3, 70, 640), "", "Randi Revisor")
    grant_role(colleague, world.hospital, Role.AUDITOR)
    other = login(Client(), colleague, world.hospital)
    assert (
        change(other, emergency, ReviewStatus.FOLLOW_UP, "Må følges opp med leder.", version=1).status_code
        == 302
    )
    stale = change(as_auditor, emergency, ReviewStatus.JUSTIFIED, "I orden.", version=1)
    assert stale.status_code == 409
    body = stale.content.decode()
    assert 'data-testid="review-conflict"' in body and "Noen andre endret" in body
    assert 'name="version" value="2"' in body  # the form now carries the current version
    emergency.refresh_from_db()
    assert emergency.status == ReviewStatus.FOLLOW_UP and emergency.reviewer == colleague
    assert ReviewChange.objects.count() == 1
    assert AccessEvent.objects.filter(
        event_type=kinds.REVIEW_STATUS_CHANGED.name, outcome=Outcome.INVALID, reason_code="review_stale"
    ).exists()
    # Submitted again on the current version, it goes through.
    assert change(as_auditor, emergency, ReviewStatus.JUSTIFIED, "I orden.", version=2).status_code == 302
    assert ReviewChange.objects.count() == 2


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_concurrent_double_submit_creates_one_change(world):
    doctor = hospital_doctor(world)
    event = record(world, T0, user=doctor, org=world.hospital, patient=world.patient, basis=Basis.AKUTT)
    queue_all(rate=0.0)
    item = item_for(event)
    owner = login(Client(), world.auditor, world.hospital)
    data = {"status": ReviewStatus.VIOLATION, "comment": "Ingen grunn til akutt tilgang.", "version": 1}
    statuses = post_at_once(owner, status_url(item), data)
    assert statuses == [302] * 8, statuses
    assert ReviewChange.objects.filter(item=item).count() == 1
    item.refresh_from_db()
    assert item.status == ReviewStatus.VIOLATION and item.version == 2
    outcomes = AccessEvent.objects.filter(event_type=kinds.REVIEW_STATUS_CHANGED.name).values_list(
        "outcome", flat=True
    )
    assert sorted(outcomes) == [Outcome.GRANTED] + [Outcome.INVALID] * 7


# --- the list: filters, paging, query count, URLs --------------------------------------------


def _queue_events(world, doctor, patients, n, *, basis=Basis.AKUTT):
    for i in range(n):
        record(
            world,
            T0 + datetime.timedelta(seconds=i),
            user=doctor,
            org=world.hospital,
            patient=patients[i % len(patients)],
            basis=basis,
        )


def test_the_list_filters_by_signal_and_pages_by_keyset_newest_first(world, as_auditor, settings):
    settings.LOG_REVIEW_PAGE_SIZE = 2
    doctor = hospital_doctor(world)
    _queue_events(world, doctor, [world.patient], 3)
    _queue_events(world, doctor, [world.patient], 2, basis="")  # no emergency
    queue_all(rate=1.0)
    expected = [str(item.item_id) for item in ReviewItem.objects.order_by("-event_occurred_at", "-pk")]
    assert len(expected) == 5
    seen: list[str] = []
    url, params = QUEUE, dict[str, str]()
    while True:
        with CaptureQueriesContext(connection) as queries:
            response = as_auditor.get(url, params)
        assert response.status_code == 200
        assert not any("OFFSET" in q["sql"].upper() for q in queries)
        body = response.content.decode()
        seen += ROW.findall(body)
        match = re.search(r'href="([^"]+)" data-testid="review-next"', body)
        if match is None:
            break
        url, params = match.group(1).replace("&amp;", "&"), {}
        record(
            world,
            T0 + datetime.timedelta(days=1),
            user=doctor,
            org=world.hospital,
            patient=world.patient,
            basis=Basis.AKUTT,
        )
    assert seen == expected
    emergency = as_auditor.get(QUEUE, {"signal": "emergency"}).content.decode()
    assert len(ROW.findall(emergency)) == 2  # the first page of the three
    flagged = {str(i.item_id) for i in ReviewItem.objects.filter(signal_codes__contains=",emergency,")}
    assert set(ROW.findall(emergency)) <= flagged and len(flagged) == 3
    assert as_auditor.get(QUEUE, {"signal": "nonsense"}).status_code == 400
    assert as_auditor.get(QUEUE, {"cursor": "forged"}).status_code == 400


def test_the_list_costs_the_same_queries_for_5_and_50_items(world, as_auditor):
    doctor = hospital_doctor(world)
    small = [make_patient(f"Liten{i}") for i in range(5)]
    large = [make_patient(f"Stor{i}") for i in range(5)]
    _queue_events(world, doctor, small, 5)
    queue_all(rate=0.0)
    as_auditor.get(QUEUE)  # warm up the session
    counts = {}
    for n in (5, 50):
        if n == 50:
            _queue_events(world, doctor, large, 45)
            queue_all(rate=0.0)
        for params in ({}, {"signal": "emergency", "status": "new"}):
            with CaptureQueriesContext(connection) as queries:
                response = as_auditor.get(QUEUE, params)
            body = response.content.decode()
            assert body.count('data-testid="review-row"') == n
            counts[(n, bool(params))] = len(queries)
    assert counts[(5, False)] == counts[(50, False)] and counts[(5, True)] == counts[(50, True)], counts


def test_no_national_id_in_any_url(world, as_auditor, emergency, settings):
    settings.LOG_REVIEW_PAGE_SIZE = 1
    record(
        world,
        T0 + datetime.timedelta(minutes=1),
        user=world.other_clinician,
        org=world.hospital,
        patient=world.other_patient,
        basis=Basis.AKUTT,
    )
    queue_all(rate=0.0)
    responses = [
        as_auditor.get(QUEUE),
        as_auditor.get(item_url(emergency)),
        change(as_auditor, emergency, ReviewStatus.UNDER_REVIEW),
        change(as_auditor, emergency, ReviewStatus.JUSTIFIED, "", version=2),
    ]
    assert 'data-testid="review-next"' in responses[0].content.decode()
    for response in responses:
        assert LIST_PATIENT_ID not in response.get("Location", "") and OTHER_PATIENT_ID not in response.get(
            "Location", ""
        )
        urls = re.findall(r'(?:action|href|src|hx-get|hx-post)="([^"]*)"', response.content.decode())
        assert all(LIST_PATIENT_ID not in url and OTHER_PATIENT_ID not in url for url in urls)
    assert LIST_PATIENT_ID in responses[1].content.decode()  # shown in the page, never in a URL


def test_each_organisation_reviews_a_shared_event_on_its_own(
    world, as_auditor, two_organisations, legevakt_auditor
):
    """The hospital's status and comment are the hospital's: the legevakt's auditors see
    their own item of the same event, untouched."""
    hospital_item = two_organisations["shared_at_source"]
    legevakt_item = two_organisations["shared"]
    assert hospital_item.pk != legevakt_item.pk and hospital_item.event_id == legevakt_item.event_id
    assert (
        change(
            as_auditor, hospital_item, ReviewStatus.JUSTIFIED, "Intern kommentar fra sykehuset."
        ).status_code
        == 302
    )
    other = login(Client(), legevakt_auditor, world.legevakt)
    page = other.get(item_url(legevakt_item)).content.decode()
    assert "Intern kommentar fra sykehuset." not in page and "Rune Revisor" not in page
    legevakt_item.refresh_from_db()
    assert legevakt_item.status == ReviewStatus.NEW
    assert other.get(item_url(hospital_item)).status_code == 404


def test_context_signals_are_not_shown_to_the_owner_of_the_document(world, settings):
    """ "Many patients" reads the clinician's other accesses: the hospital, whose document
    was read by a legevakt doctor, must not learn of the legevakt's other work from it."""
    settings.LOG_REVIEW_MANY_PATIENTS = 2
    hospital_doc = add_document(world)
    record(world, T0, user=world.other_clinician, org=world.legevakt, patient=world.other_patient)
    shared = record(
        world,
        T0 + datetime.timedelta(minutes=1),
        kinds.DOCUMENT_OPEN.name,
        user=world.other_clinician,
        org=world.legevakt,
        patient=world.patient,
        document=hospital_doc,
    )
    queue_all(rate=0.0)
    assert "many_patients" in item_for(shared).signals
    assert (
        not ReviewItem.objects.filter(event_id=shared.event_id, reviewer_orgnr=world.hospital.orgnr)
        .exclude(signal_codes="")
        .filter(signal_codes__contains=",many_patients,")
        .exists()
    )


# --- separation of duties ------------------------------------------------------------------


@pytest.fixture
def own_items(world):
    """The hospital's auditor also works as a clinician there: one item of their own
    access, one of a colleague's access to them as a patient, one of someone else."""

    grant_role(world.auditor, world.hospital, Role.CLINICIAN)
    doctor = hospital_doctor(world)
    auditor_as_patient = make_patient("Revisor", national_id=world.auditor.pid)
    own = record(world, T0, user=world.auditor, org=world.hospital, patient=world.patient, basis=Basis.AKUTT)
    to_self = record(
        world,
        T0 + datetime.timedelta(minutes=1),
        user=doctor,
        org=world.hospital,
        patient=auditor_as_patient,
        basis=Basis.AKUTT,
    )
    other = record(
        world,
        T0 + datetime.timedelta(minutes=2),
        user=doctor,
        org=world.hospital,
        patient=world.patient,
        basis=Basis.AKUTT,
    )
    queue_all(rate=0.0)
    return item_for(own), item_for(to_self), item_for(other)


def test_an_auditor_sees_their_own_items_marked_and_cannot_act_on_them(world, as_auditor, own_items):
    own, to_self, other = own_items
    body = as_auditor.get(QUEUE).content.decode()
    marked = dict(
        re.findall(r'data-item-id="([0-9a-f-]+)"[^>]*>.*?(?:data-conflict="(\w+)"|</tr>)', body, re.S)
    )
    assert marked == {
        str(own.item_id): "review_own_access",
        str(to_self.item_id): "review_own_patient_record",
        str(other.item_id): "",
    }
    assert "Din egen tilgang" in body and "Dine egne opplysninger" in body

    page = as_auditor.get(item_url(own)).content.decode()
    assert 'data-testid="review-own"' in page and "Dette er din egen tilgang" in page
    assert 'data-testid="review-status-form"' not in page
    assert 'data-testid="review-status-form"' in as_auditor.get(item_url(other)).content.decode()

    for item, reason in ((own, "review_own_access"), (to_self, "review_own_patient_record")):
        before = set(AccessEvent.objects.values_list("pk", flat=True))
        response = change(as_auditor, item, ReviewStatus.JUSTIFIED, "Jeg hadde grunn.")
        assert response.status_code == 403
        assert 'data-testid="review-own"' in response.content.decode()
        item.refresh_from_db()
        assert item.status == ReviewStatus.NEW and item.version == 1
        refused = AccessEvent.objects.exclude(pk__in=before).get(event_type=kinds.REVIEW_STATUS_CHANGED.name)
        assert (refused.outcome, refused.reason_code) == (Outcome.DENIED, reason)
        assert refused.details["review_item"] == str(item.item_id) and refused.details["to"] == "justified"
        assert world.auditor.pid not in str(refused.details)
    # Also an empty or invalid form is refused as such, not answered with form errors.
    assert as_auditor.post(status_url(own), {}).status_code == 403
    assert not ReviewChange.objects.exists()

    # Another auditor of the hospital decides them.
    colleague = login(Client(), add_auditor(world.hospital, "t-revisor-2", name="Siri Sjekk"), world.hospital)
    assert (
        change(colleague, own, ReviewStatus.JUSTIFIED, "Kontrollert: akutt innleggelse.").status_code == 302
    )
    own.refresh_from_db()
    assert own.status == ReviewStatus.JUSTIFIED


def test_the_service_refuses_a_review_of_ones_own_access_whoever_calls_it(world, own_items):
    from pjd_portal.accounts.caller import caller_of
    from pjd_portal.review import services
    from tests.builders import request_as

    own, _to_self, _other = own_items
    facts = policy.StaffFacts(**{**staff(world.auditor, world.hospital).__dict__, "pid": world.auditor.pid})
    result = services.change_status(
        caller=caller_of(request_as(world.auditor, method="post", organisation=world.hospital)),
        staff=facts,
        user=world.auditor,
        item_id=own.item_id,
        version=1,
        status=ReviewStatus.JUSTIFIED,
        comment="x",
    )
    assert result == services.Result.REFUSED
    assert not ReviewChange.objects.exists()


def test_the_policy_decides_separation_of_duties():
    auditor = policy.StaffFacts(
        user_id=5, organisation_id=1, roles=frozenset({Role.AUDITOR}), organisation_orgnr="974589095", pid="1"
    )
    decide = policy.may_act_on_review_item
    assert decide(auditor, actor_user_id=6, actor_pid="2", patient_national_id="3")
    assert (
        decide(auditor, actor_user_id=5, actor_pid="", patient_national_id="3").reason_code
        == "review_own_access"
    )
    assert (
        decide(auditor, actor_user_id=None, actor_pid="1", patient_national_id="3").reason_code
        == "review_own_access"
    )
    assert (
        decide(auditor, actor_user_id=6, actor_pid="2", patient_national_id="1").reason_code
        == "review_own_patient_record"
    )
    # A person without a pid is no patient match for events without one.
    no_pid = policy.StaffFacts(**{**auditor.__dict__, "pid": ""})
    assert decide(no_pid, actor_user_id=6, actor_pid="", patient_national_id="")
    assert not decide(None, actor_user_id=6, actor_pid="2", patient_national_id="3")


# --- the sample ----------------------------------------------------------------------------


def test_the_sample_is_drawn_from_the_unflagged_accesses_and_is_never_empty(world, as_auditor, settings):
    """A night where nearly everything is flagged: the rate draws nothing from the three
    unflagged accesses, so the floor takes the one with the lowest keyed draw."""

    doctor = hospital_doctor(world)
    key, rate = b"fixed-key", 0.01
    # An earlier visit (before the night's window): a care relation, so no signal below.
    record(world, T0 - datetime.timedelta(days=2), user=doctor, org=world.hospital, patient=world.patient)
    flagged = [
        record(
            world,
            T0 + datetime.timedelta(minutes=i),
            user=doctor,
            org=world.hospital,
            patient=world.patient,
            basis=Basis.AKUTT,
        )
        for i in range(6)
    ]
    unflagged = [
        record(
            world,
            T0 + datetime.timedelta(minutes=10 + i),
            user=doctor,
            org=world.hospital,
            patient=world.patient,
        )
        for i in range(3)
    ]
    assert not any(is_sampled(e.event_id, rate, key) for e in unflagged)  # the rate alone: no sample
    counts = build_queue(T0 - datetime.timedelta(days=1), T0 + datetime.timedelta(days=1), rate=rate, key=key)
    assert (counts.flagged, counts.sampled) == (6, 1)
    lowest = min(unflagged, key=lambda e: draw(e.event_id, key))
    [sampled] = ReviewItem.objects.filter(sampled=True)
    assert sampled.event_id == lowest.event_id and not sampled.signals
    assert {i.event_id for i in ReviewItem.objects.filter(sampled=False)} == {e.event_id for e in flagged}
    # A rerun finds the floor met: nothing new. Without a floor, or at rate 0, no sample.
    again = build_queue(T0 - datetime.timedelta(days=1), T0 + datetime.timedelta(days=1), rate=rate, key=key)
    assert again.sampled == 0 and ReviewItem.objects.count() == 7
    ReviewItem.objects.filter(sampled=True).delete()
    assert (
        build_queue(
            T0 - datetime.timedelta(days=1), T0 + datetime.timedelta(days=1), rate=rate, key=key, minimum=0
        ).sampled
        == 0
    )
    assert (
        build_queue(
            T0 - datetime.timedelta(days=1), T0 + datetime.timedelta(days=1), rate=0.0, key=key
        ).sampled
        == 0
    )
    build_queue(T0 - datetime.timedelta(days=1), T0 + datetime.timedelta(days=1), rate=rate, key=key)

    sampled = ReviewItem.objects.get(sampled=True)
    assert sampled.event_id == lowest.event_id  # the same keyed draw again
    # The queue tells sample from signal, states the rate, and filters by it.
    settings.REVIEW_QUEUE_SAMPLE_RATE = rate
    body = as_auditor.get(QUEUE).content.decode()
    kinds_shown = dict(re.findall(r'data-item-id="([0-9a-f-]+)" data-kind="(\w+)"', body))
    assert kinds_shown[str(sampled.item_id)] == "sample"
    assert sorted(kinds_shown.values()) == ["sample"] + ["signal"] * 6
    found = re.search(r'data-testid="review-sample-rate">(.*?)</p>', body, re.S)
    assert found is not None and "1 %" in found.group(1) and "minst 1" in found.group(1)
    only_sample = as_auditor.get(QUEUE, {"kind": "sample"}).content.decode()
    assert ROW.findall(only_sample) == [str(ReviewItem.objects.get(sampled=True).item_id)]
    assert len(ROW.findall(as_auditor.get(QUEUE, {"kind": "signal"}).content.decode())) == 6
    item_page = as_auditor.get(item_url(ReviewItem.objects.get(sampled=True))).content.decode()
    assert 'data-testid="review-sampled"' in item_page and "1 %" in item_page


def test_the_log_search_and_the_event_page_mark_the_auditors_own_accesses(world, as_auditor, own_items):
    own, to_self, other = own_items
    body = as_auditor.post(reverse("forvaltning:log_search"), {}).content.decode()
    assert body.count('data-conflict="review_own_access"') == 1
    assert body.count('data-conflict="review_own_patient_record"') == 1
    for item, conflict in ((own, "review_own_access"), (to_self, "review_own_patient_record")):
        page = as_auditor.get(reverse("forvaltning:log_event", args=[item.event_id])).content.decode()
        assert f'data-conflict="{conflict}"' in page
    page = as_auditor.get(reverse("forvaltning:log_event", args=[other.event_id])).content.decode()
    assert "data-conflict" not in page
