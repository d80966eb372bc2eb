"""The auditor's overview (loggkontroll, oversikt): who gets in, the counts over seeded
events (other organisations' events not counted, days in Norwegian time), the same
signals as the search, a bounded number of queries, the period form, and the logging."""

from __future__ import annotations

import datetime
import re
from collections import Counter

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from pjd_portal.access.models import Basis
from pjd_portal.auditlog import events as kinds
from pjd_portal.auditlog.models import AccessEvent
from pjd_portal.lib import barchart
from pjd_portal.logreading import log_search, risk, stored_signals
from pjd_portal.logreading import overview as counts
from pjd_portal.patients.models import AddressProtection
from pjd_portal.review import overview as review_overview
from pjd_portal.review.models import ReviewItem, ReviewStatus
from pjd_portal.review.queue import build_queue
from tests.builders import (
    LIST_PATIENT_ID,
    OTHER_PATIENT_ID,
    T0,
    add_document,
    comparable,
    hospital_doctor,
    record,
    staff,
)

OVERVIEW = "/forvaltning/loggkontroll/oversikt/"
OTHER_PERSONAS = ["anonymous", "fastlege", "other_clinician", "administrator", "privacy_officer"]
PERIOD = {"date_from": "2026-06-29", "date_to": "2026-07-02"}
DAY = datetime.timedelta(days=1)
HOUR = datetime.timedelta(hours=1)


@pytest.fixture
def seeded(world):
    """Events in and out of the hospital auditor's scope and period (T0: 1 July 2026, 12:00
    in Oslo, a Wednesday)."""

    doctor = hospital_doctor(world)
    doc = add_document(world)
    mine = [
        # The hospital's staff, within hours, 1 July.
        record(world, T0, kinds.PATIENT_LOOKUP.name, user=doctor, org=world.hospital, patient=world.patient),
        record(
            world,
            T0 + HOUR,
            kinds.BASIS_STATED.name,
            user=doctor,
            org=world.hospital,
            patient=world.patient,
            basis=Basis.AKUTT,
        ),
        # The GP office's fastlege opens the hospital's document: in scope by the source.
        record(
            world,
            T0,
            kinds.DOCUMENT_OPEN.name,
            user=world.fastlege,
            org=world.gp_office,
            patient=world.patient,
            document=doc,
        ),
        # 22:30 UTC on 1 July is 00:30 on 2 July in Oslo: counted on 2 July, outside hours.
        record(
            world,
            datetime.datetime(2026, 7, 1, 22, 30, tzinfo=datetime.UTC),
            kinds.PATIENT_LOOKUP.name,
            user=doctor,
            org=world.hospital,
            patient=world.other_patient,
        ),
    ]
    # Not counted: the legevakt's own work, and the hospital's before the period.
    others = [
        record(
            world,
            T0 + 10 * HOUR,
            kinds.PATIENT_LOOKUP.name,
            user=world.other_clinician,
            org=world.legevakt,
            patient=world.other_patient,
            basis=Basis.AKUTT,
        ),
        record(
            world,
            T0 - 10 * DAY,
            kinds.PATIENT_LOOKUP.name,
            user=doctor,
            org=world.hospital,
            patient=world.patient,
        ),
    ]
    return doctor, mine, others


def period() -> counts.Period:
    return counts.Period(datetime.date(2026, 6, 29), datetime.date(2026, 7, 2))


def expected_from_the_search(world) -> tuple[Counter[str], Counter[tuple[str, str]]]:
    """Flagged events per signal and per clinician, counted from what the search shows."""

    page = log_search.search_page(
        staff(world.auditor, world.hospital),
        log_search.LogFilters(start=period().start, end=period().end),
        thresholds=risk.Thresholds.from_settings(),
        limit=200,
    )
    per_signal: Counter[str] = Counter()
    per_clinician: Counter[tuple[str, str]] = Counter()
    for row in page.rows:
        per_signal.update(row.signals)
        if row.signals:
            per_clinician[(row.event.actor_name, row.event.actor_hpr_number)] += 1
    return per_signal, per_clinician


# --- who gets in -------------------------------------------------------------------------


@pytest.mark.parametrize("persona", OTHER_PERSONAS)
def test_everyone_but_the_auditor_gets_the_404_of_a_missing_page(world, persona_client, persona):
    client = persona_client(persona)
    missing = client.get("/forvaltning/finnes-ikke/")
    for method in ("get", "post"):
        response = getattr(client, method)(OVERVIEW, PERIOD)
        assert response.status_code == 404
        assert comparable(response) == comparable(missing)
    assert not AccessEvent.objects.filter(event_type=kinds.LOG_OVERVIEW_VIEW.name).exists()


def test_the_auditor_gets_the_page_and_other_methods_are_refused(world, persona_client):
    auditor = persona_client("auditor")
    assert auditor.get(OVERVIEW).status_code == 200
    assert auditor.post(OVERVIEW, PERIOD).status_code == 405
    assert 'data-testid="log-overview-link"' in auditor.get("/forvaltning/loggkontroll/").content.decode()


# --- the counts --------------------------------------------------------------------------


def test_events_per_day_and_type_count_the_scope_only_in_norwegian_days(world, seeded):
    auditor = staff(world.auditor, world.hospital)
    found = counts.overview(auditor, period(), thresholds=risk.Thresholds.from_settings())
    assert [(t.code, t.count) for t in found.per_day] == [
        ("2026-06-29", 0),
        ("2026-06-30", 0),
        ("2026-07-01", 3),
        ("2026-07-02", 1),
    ]
    assert found.total == 4
    assert {(t.code, t.count) for t in found.per_type} == {
        (kinds.PATIENT_LOOKUP.name, 2),
        (kinds.BASIS_STATED.name, 1),
        (kinds.DOCUMENT_OPEN.name, 1),
    }
    assert found.per_type[0].code == kinds.PATIENT_LOOKUP.name  # most frequent first
    assert found.per_type[0].label == str(kinds.PATIENT_LOOKUP.label)
    # The legevakt's auditor sees only the legevakt's event.
    legevakt = counts.overview(
        staff(world.other_clinician, world.legevakt), period(), thresholds=risk.Thresholds.from_settings()
    )
    assert legevakt.total == 0  # a clinician, no auditor: nothing at all


def test_flagged_counts_agree_with_the_search(world, seeded):
    doctor, _, _ = seeded
    auditor = staff(world.auditor, world.hospital)
    flagged = counts.flagged_counts(auditor, period(), thresholds=risk.Thresholds.from_settings())
    per_signal, per_clinician = expected_from_the_search(world)
    assert [t.code for t in flagged.per_signal] == [str(s) for s in risk.Signal]
    assert {t.code: t.count for t in flagged.per_signal} == {str(s): per_signal[str(s)] for s in risk.Signal}
    # The cases seeded: AKUTT once (the legevakt's AKUTT is not the hospital's), and the
    # 00:30 lookup outside hours.
    assert per_signal["emergency"] == 1 and per_signal["outside_hours"] == 1
    assert {(c.name, c.hpr_number): c.count for c in flagged.clinicians} == dict(per_clinician)
    assert flagged.clinicians[0].hpr_number == doctor.hpr_number
    assert world.other_clinician.hpr_number not in {c.hpr_number for c in flagged.clinicians}
    counts_list = [c.count for c in flagged.clinicians]
    assert counts_list == sorted(counts_list, reverse=True)


def test_the_top_clinicians_are_bounded(world, seeded):
    auditor = staff(world.auditor, world.hospital)
    flagged = counts.flagged_counts(auditor, period(), thresholds=risk.Thresholds.from_settings(), top=1)
    assert len(flagged.clinicians) == 1


def test_open_review_items_per_status_in_scope(world, seeded):
    build_queue(T0 - 20 * DAY, T0 + 5 * DAY, rate=1.0)
    auditor = staff(world.auditor, world.hospital)
    mine = ReviewItem.objects.filter(
        reviewer_orgnr=world.hospital.orgnr,
        event_occurred_at__gte=period().start,
        event_occurred_at__lt=period().end,
    )
    assert mine.count() >= 3
    first, second, *_ = mine.order_by("pk")
    ReviewItem.objects.filter(pk=first.pk).update(status=ReviewStatus.JUSTIFIED)  # closed
    ReviewItem.objects.filter(pk=second.pk).update(status=ReviewStatus.FOLLOW_UP)
    found = {t.code: t.count for t in review_overview.open_items(auditor, period())}
    assert found == {
        ReviewStatus.NEW: mine.filter(status=ReviewStatus.NEW).count(),
        ReviewStatus.UNDER_REVIEW: 0,
        ReviewStatus.FOLLOW_UP: 1,
    }
    assert found[ReviewStatus.NEW] == mine.count() - 2
    # The legevakt's items are the legevakt's, and the earlier event is outside the period.
    assert ReviewItem.objects.filter(reviewer_orgnr=world.legevakt.orgnr).exists()


def test_flagged_counts_read_the_stored_signals_with_the_tail_the_search_shows(world, seeded):
    """Part stored (the job ran up to T0 + 30 min), part not yet: the counts still agree
    with the search. Then the patient gets a protected address: the stored accesses keep
    the signals they had, where a reading of today's facts would move them."""

    stored_signals.compute_signals(until=T0 + 30 * datetime.timedelta(minutes=1))
    auditor = staff(world.auditor, world.hospital)
    thresholds = risk.Thresholds.from_settings()
    flagged = counts.flagged_counts(auditor, period(), thresholds=thresholds)
    per_signal, per_clinician = expected_from_the_search(world)
    assert {t.code: t.count for t in flagged.per_signal} == {str(s): per_signal[str(s)] for s in risk.Signal}
    assert {(c.name, c.hpr_number): c.count for c in flagged.clinicians} == dict(per_clinician)

    stored_signals.compute_signals(until=T0 + 5 * DAY)
    before = counts.flagged_counts(auditor, period(), thresholds=thresholds)
    world.patient.address_protection = AddressProtection.STRENGT_FORTROLIG
    world.patient.save()
    after = counts.flagged_counts(auditor, period(), thresholds=thresholds)
    assert after == before  # fixed at the time of access
    live = log_search.live_page(
        auditor,
        log_search.LogFilters(start=period().start, end=period().end),
        thresholds=thresholds,
        limit=200,
    )
    live_protected = sum("protected_address" in row.signals for row in live.rows)
    assert live_protected > 0  # read today, they would have moved
    assert {t.code: t.count for t in after.per_signal}["protected_address"] == 0


def test_the_top_clinicians_merge_the_stored_and_the_tail_exactly(world, seeded):
    """The doctor's first flagged events are stored, the later ones are not yet: the
    merged count is the sum, and the ranking is over both."""

    doctor, _, _ = seeded
    thresholds = risk.Thresholds.from_settings()
    auditor = staff(world.auditor, world.hospital)
    stored_signals.compute_signals(until=T0 + 90 * datetime.timedelta(minutes=1))  # the AKUTT
    flagged = counts.flagged_counts(auditor, period(), thresholds=thresholds)
    _, per_clinician = expected_from_the_search(world)
    assert {(c.name, c.hpr_number): c.count for c in flagged.clinicians} == dict(per_clinician)
    assert sum(c.count for c in flagged.clinicians if c.hpr_number == doctor.hpr_number) == 2


def test_a_bounded_number_of_queries(world, seeded, django_assert_num_queries):
    """Two for the days and the types, and for the flagged counts: the watermark, the
    stored and the tail's totals, the stored top, the tail's clinicians and their stored
    counts (eight), whether the log has ten events or ten million."""

    auditor = staff(world.auditor, world.hospital)
    thresholds = risk.Thresholds.from_settings()
    with django_assert_num_queries(8):
        counts.overview(auditor, period(), thresholds=thresholds)
    with django_assert_num_queries(1):
        review_overview.open_items(auditor, period())


def test_the_page_costs_the_same_queries_with_more_events(world, seeded, persona_client):
    doctor, _, _ = seeded
    client = persona_client("auditor")

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.get(OVERVIEW, PERIOD).status_code == 200
        return len(captured)

    queries()  # the first request of a session does more (its first audit row, the language)
    before = queries()
    for n in range(30):
        record(
            world,
            T0 + n * HOUR,
            kinds.PATIENT_LOOKUP.name,
            user=doctor,
            org=world.hospital,
            patient=world.patient,
        )
    assert queries() == before


# --- the page ------------------------------------------------------------------------------


def test_the_page_shows_charts_and_tables_and_is_logged(world, seeded, persona_client):
    doctor, _, _ = seeded
    response = persona_client("auditor").get(OVERVIEW, PERIOD)
    assert response.status_code == 200
    body = response.content.decode()
    for key in ("per-day", "per-type", "per-signal", "open-items", "clinicians"):
        assert f'data-testid="chart-{key}"' in body and f'data-testid="table-{key}"' in body, key
        assert f'aria-labelledby="chart-{key}-title chart-{key}-desc"' in body
    assert 'data-testid="overview-total">Hendelser i perioden: 4' in body
    # Coordinates are plain numbers, never localised ("12,5" is no SVG length).
    assert not re.search(r'(?:x|y|width|height)="\d+,\d+"', body)
    # The top clinician's row searches the log by HPR number over the period, by POST.
    row = re.search(r'<tr data-testid="clinician-row">(.*?)</tr>', body, re.S)
    assert row is not None and doctor.display_name in row.group(1)
    assert f'name="clinician" value="{doctor.hpr_number}"' in row.group(1)
    assert 'name="date_from" value="2026-06-29"' in row.group(1)
    assert 'method="post" action="/forvaltning/loggkontroll/"' in row.group(1)
    # No patient's national id on the page; the legevakt's clinician is not there.
    assert LIST_PATIENT_ID not in body and OTHER_PATIENT_ID not in body
    assert world.other_clinician.display_name not in body
    (event,) = AccessEvent.objects.filter(event_type=kinds.LOG_OVERVIEW_VIEW.name)
    assert event.actor_user_id == world.auditor.pk and event.organisation_orgnr == world.hospital.orgnr
    assert event.details == {"date_from": "2026-06-29", "date_to": "2026-07-02", "total": 4}
    assert event.patient_id is None and event.patient_national_id == ""


def test_the_default_period_is_the_last_30_days(world, persona_client, time_machine):
    time_machine.move_to(T0, tick=False)
    response = persona_client("auditor").get(OVERVIEW)
    assert response.status_code == 200
    body = response.content.decode()
    assert 'value="2026-06-02"' in body and 'value="2026-07-01"' in body
    assert body.count('<tr data-code="2026-') == 30
    assert 'data-testid="empty-clinicians"' in body and 'data-testid="empty-per-type"' in body
    (event,) = AccessEvent.objects.filter(event_type=kinds.LOG_OVERVIEW_VIEW.name)
    assert event.details == {"date_from": "2026-06-02", "date_to": "2026-07-01", "total": 0}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"date_from": "31.13.2026", "date_to": ""}, "Skriv inn en dato"),
        (
            {"date_from": "2026-07-02", "date_to": "2026-07-01"},
            "Til-datoen må være samme dag som eller etter fra-datoen",
        ),
        ({"date_from": "2024-01-01", "date_to": "2026-07-01"}, "366 dager"),
        ({"date_from": "1999-12-31", "date_to": ""}, "mellom 2000 og 2100"),
    ],
)
def test_bad_dates_give_a_clear_message_and_change_nothing(world, seeded, persona_client, data, message):
    response = persona_client("auditor").get(OVERVIEW, data)
    assert response.status_code == 400
    body = response.content.decode()
    assert 'data-testid="overview-error"' in body and message in body, body
    assert 'data-testid="overview"' not in body and "<svg" not in body
    assert not AccessEvent.objects.filter(event_type=kinds.LOG_OVERVIEW_VIEW.name).exists()


# --- the chart geometry ------------------------------------------------------------------


def test_bars_scale_to_the_largest_and_an_empty_chart_has_none():
    chart = barchart.horizontal([("a", 4), ("b", 2), ("c", 0)])
    assert [bar.width for bar in chart.bars] == [barchart.BAR_WIDTH, barchart.BAR_WIDTH / 2, 0]
    assert chart.maximum == 4 and chart.height == 3 * barchart.ROW_HEIGHT
    columns = barchart.columns([("d1", 0), ("d2", 10)])
    assert columns.bars[0].height == 0 and columns.bars[1].height == barchart.COLUMNS_PLOT_HEIGHT
    assert columns.bars[1].y == barchart.COLUMNS_TOP
    assert barchart.columns([]).bars == [] and barchart.horizontal([]).maximum == 0
