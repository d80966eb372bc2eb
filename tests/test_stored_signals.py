"""The risk signals fixed at the time of access (logreading.stored_signals): computed once
by `compute_signals` a minute after the access, stored per event and reviewing
organisation, never moved by a later change of the patient's state; the search and the
queue read them, and show the events not computed yet with their signals computed on the
fly, merged in order. On PostgreSQL, every question of the search form is answered by an
index in the page's order (EXPLAIN), for each filter."""

from __future__ import annotations

import datetime
import io
import json
import random
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection

from pjd_portal.access.models import Basis
from pjd_portal.auditlog import events as kinds
from pjd_portal.auditlog.events import Outcome
from pjd_portal.auditlog.models import AccessEvent
from pjd_portal.lib.cursor import Cursor
from pjd_portal.logreading import log_search, risk, stored_signals
from pjd_portal.logreading.models import SIGNAL_FIELDS, EventSignals, SignalWatermark
from pjd_portal.patients.models import AddressProtection
from pjd_portal.review.models import ReviewItem
from pjd_portal.review.queue import build_queue
from tests.builders import (
    T0,
    add_document,
    hospital_doctor,
    make_patient,
    record,
    staff,
)


def _search(world, thresholds=None, limit=200, **filters) -> dict[int, tuple[str, ...]]:
    auditor = staff(world.auditor, world.hospital)
    page = log_search.search_page(
        auditor,
        log_search.LogFilters(**filters),
        thresholds=thresholds or risk.Thresholds.from_settings(),
        limit=limit,
    )
    return {row.event.pk: row.signals for row in page.rows}


def test_the_stored_fields_are_the_signals_in_their_order():
    assert tuple(str(s) for s in risk.Signal) == SIGNAL_FIELDS


def test_a_later_change_of_the_patient_leaves_the_old_signals_as_they_were(world):
    """Accessed as a stranger (no care relation); then the patient gets this doctor as
    fastlege and a protected address. The old access keeps the signals it had; a new
    access gets the new ones; the review queue queues the old one as it was."""

    doctor = hospital_doctor(world)
    patient = make_patient("Endresen")
    old = record(world, T0, user=doctor, org=world.hospital, patient=patient)
    counts = stored_signals.compute_signals(until=T0 + datetime.timedelta(minutes=1))
    assert (counts.events, counts.rows) == (1, 1)
    assert _search(world)[old.pk] == ("no_care_relation",)

    patient.fastlege_hpr_number = doctor.hpr_number
    patient.address_protection = AddressProtection.STRENGT_FORTROLIG
    patient.save()
    # Computed today, the old access would read otherwise:
    live = log_search.live_page(
        staff(world.auditor, world.hospital),
        log_search.LogFilters(),
        thresholds=risk.Thresholds.from_settings(),
    )
    assert {row.event.pk: row.signals for row in live.rows}[old.pk] == ("protected_address",)

    later = record(world, T0 + datetime.timedelta(days=400), user=doctor, org=world.hospital, patient=patient)
    stored_signals.compute_signals(until=T0 + datetime.timedelta(days=400, minutes=1))
    found = _search(world)
    assert found[old.pk] == ("no_care_relation",)  # as it was at the time of access
    assert found[later.pk] == ("protected_address",)  # on the list now, and protected
    assert set(_search(world, signal="no_care_relation")) == {old.pk}
    assert set(_search(world, signal="protected_address")) == {later.pk}
    event_page = log_search.event_for_review(
        staff(world.auditor, world.hospital), old.event_id, thresholds=risk.Thresholds.from_settings()
    )
    assert event_page is not None and event_page.signals == ("no_care_relation",)

    build_queue(T0 - datetime.timedelta(days=1), T0 + datetime.timedelta(days=401), rate=0.0, key=b"k")
    assert ReviewItem.objects.get(event_pk=old.pk).signals == ("no_care_relation",)
    assert ReviewItem.objects.get(event_pk=later.pk).signals == ("protected_address",)


def test_a_colleague_who_leaves_later_is_still_a_colleague_on_the_old_access(world):
    from tests.builders import revoke_roles

    doctor = hospital_doctor(world)
    colleague = make_patient("Revisor", national_id=world.auditor.pid, given_name="Rune")
    old = record(world, T0, user=doctor, org=world.hospital, patient=colleague)
    stored_signals.compute_signals(until=T0 + datetime.timedelta(minutes=1))
    revoke_roles(world.auditor)  # the patient no longer works at the hospital
    assert "colleague" in EventSignals.objects.get(event_pk=old.pk).signals
    later = record(
        world, T0 + datetime.timedelta(hours=1), user=doctor, org=world.hospital, patient=colleague
    )
    stored_signals.compute_signals(until=T0 + datetime.timedelta(hours=1, minutes=1))
    assert "colleague" not in EventSignals.objects.get(event_pk=later.pk).signals


def test_one_row_per_reviewing_organisation_and_context_signals_only_for_the_acting_one(world, settings):
    settings.LOG_REVIEW_MANY_PATIENTS = 1
    doc = add_document(world)  # the hospital's document
    shared = record(
        world,
        T0,
        kinds.DOCUMENT_OPEN.name,
        user=world.other_clinician,
        org=world.legevakt,
        patient=world.patient,
        document=doc,
    )
    own = record(world, T0, user=world.other_clinician, org=world.legevakt, patient=world.other_patient)
    nobody = record(world, T0, kinds.LOGIN.name, user=world.other_clinician, org=None)
    AccessEvent.objects.filter(pk=nobody.pk)  # (a login acts for the GP office: in its scope)
    stored_signals.compute_signals(until=T0 + datetime.timedelta(minutes=1))
    rows = {(r.event_pk, r.reviewer_orgnr): r for r in EventSignals.objects.all()}
    assert set(rows) >= {
        (shared.pk, world.legevakt.orgnr),
        (shared.pk, world.hospital.orgnr),
        (own.pk, world.legevakt.orgnr),
    }
    assert (own.pk, world.hospital.orgnr) not in rows
    acting = rows[(shared.pk, world.legevakt.orgnr)].signals
    owner = rows[(shared.pk, world.hospital.orgnr)].signals
    assert "no_care_relation" in acting and "many_patients" in acting
    assert not set(owner) & risk.CONTEXT_SIGNALS
    assert set(owner) == set(acting) - risk.CONTEXT_SIGNALS


def test_the_job_is_idempotent_moves_its_watermark_forward_and_says_what_it_did(world):
    doctor = hospital_doctor(world)
    for i in range(3):
        record(
            world, T0 + datetime.timedelta(minutes=i), user=doctor, org=world.hospital, patient=world.patient
        )
    first = stored_signals.compute_signals(until=T0 + datetime.timedelta(hours=1), chunk=2)
    assert (first.events, first.rows) == (3, 3)
    again = stored_signals.compute_signals(until=T0 + datetime.timedelta(hours=1))
    assert (again.events, again.rows) == (0, 0)
    stored_signals.compute_signals(until=T0)  # an older run finishing late: no step back
    assert SignalWatermark.objects.get().computed_before == T0 + datetime.timedelta(hours=1)
    out = io.StringIO()
    call_command("compute_signals", stdout=out)
    assert "Signals stored for 0 events" in out.getvalue()
    assert EventSignals.objects.count() == 3


def test_a_late_commit_within_the_lookback_is_still_computed(world, settings):
    settings.LOG_SIGNALS_LOOKBACK_MINUTES = 60
    doctor = hospital_doctor(world)
    stored_signals.compute_signals(until=T0 + datetime.timedelta(minutes=30))
    # Written with a time before the watermark (a transaction that committed late).
    late = record(
        world, T0 + datetime.timedelta(minutes=5), user=doctor, org=world.hospital, patient=world.patient
    )
    assert late.pk in _search(world)  # shown before it is computed, signals on the fly
    stored_signals.compute_signals(until=T0 + datetime.timedelta(minutes=31))
    assert EventSignals.objects.filter(event_pk=late.pk).exists()
    assert late.pk in _search(world)


def test_stored_and_not_yet_computed_events_page_together_exactly_once_in_order(world):
    doctor = hospital_doctor(world)
    made = []
    for i in range(6):
        made.append(
            record(
                world,
                T0 + datetime.timedelta(minutes=i),
                kinds.BASIS_STATED.name,
                user=doctor,
                org=world.hospital,
                patient=world.patient,
                basis=Basis.AKUTT if i % 2 else Basis.UNNTAK,
            )
        )
    stored_signals.compute_signals(until=T0 + datetime.timedelta(minutes=3))  # the first three
    assert EventSignals.objects.count() == 3
    auditor = staff(world.auditor, world.hospital)
    thresholds = risk.Thresholds.from_settings()
    for signal, expected in (("", made), ("emergency", made[1::2])):
        seen, cursor = [], None
        while True:
            page = log_search.search_page(
                auditor, log_search.LogFilters(signal=signal), thresholds=thresholds, cursor=cursor, limit=2
            )
            seen += [row.event.pk for row in page.rows]
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        assert seen == [e.pk for e in reversed(expected)], signal
    exported = list(
        log_search.iter_rows(auditor, log_search.LogFilters(), thresholds=thresholds, max_rows=100)
    )
    assert [row.event.pk for row in exported] == [e.pk for e in reversed(made)]
    assert [row.signals for row in exported] == [
        row.signals
        for row in log_search.live_page(
            auditor, log_search.LogFilters(), thresholds=thresholds, limit=50
        ).rows
    ]


def test_every_filter_of_the_form_reads_the_stored_rows_as_the_live_search_does(world):
    doctor = hospital_doctor(world)
    doc = add_document(world)
    made = [
        record(world, T0, user=doctor, org=world.hospital, patient=world.patient),
        record(
            world,
            T0 + datetime.timedelta(hours=1),
            kinds.DOCUMENT_OPEN.name,
            user=world.fastlege,
            org=world.gp_office,
            patient=world.patient,
            document=doc,
        ),
        record(
            world,
            T0 + datetime.timedelta(days=2),
            kinds.ACCESS_DENIED.name,
            Outcome.DENIED,
            user=doctor,
            org=world.hospital,
            patient=world.other_patient,
        ),
        record(
            world,
            T0 + datetime.timedelta(days=3),
            user=doctor,
            org=world.hospital,
            patient_national_id="99999999999",
            outcome=Outcome.NOT_FOUND,
        ),
    ]
    questions = [
        {},
        {"patient_id": world.patient.pk},
        {"patient_national_id": "99999999999"},
        {"clinician": doctor.hpr_number},
        {"clinician": "sykehus"},
        {"organisation_orgnr": world.gp_office.orgnr},
        {"start": T0 + datetime.timedelta(minutes=30), "end": T0 + datetime.timedelta(days=2, hours=1)},
        {"event_type": kinds.ACCESS_DENIED.name},
        {"outcome": Outcome.NOT_FOUND},
        {"signal": "no_care_relation", "clinician": doctor.hpr_number},
    ]
    live = {str(q): _search(world, **q) for q in questions}
    stored_signals.compute_signals(until=T0 + datetime.timedelta(days=4))
    assert EventSignals.objects.filter(event_pk__in=[e.pk for e in made]).count() == 5  # one shared
    for q in questions:
        assert _search(world, **q) == live[str(q)], q
    assert all(live[str(q)] for q in questions), live


# --- PostgreSQL: every question has its index ----------------------------------------

HOSPITAL = "100000001"
OTHERS = ["100000002", "100000003", "100000004"]


def _bulk_rows(n: int) -> None:
    """n stored rows over a year, skewed: one large organisation, one busy clinician."""

    rng = random.Random(16)
    start = T0 - datetime.timedelta(days=365)
    now = T0
    rows = []
    for i in range(n):
        reviewer = HOSPITAL if rng.random() < 0.4 else rng.choice(OTHERS)
        clinician = "900000001" if rng.random() < 0.1 else str(900000100 + rng.randrange(300))
        flags = {name: rng.random() < 0.05 for name in SIGNAL_FIELDS}
        flags["outside_hours"] = rng.random() < 0.3
        rows.append(
            EventSignals(
                event_pk=i + 1,
                reviewer_orgnr=reviewer,
                occurred_at=start + datetime.timedelta(seconds=i * 365 * 86400 // n),
                event_type=rng.choice(["document_open", "document_list", "patient_lookup", "basis_stated"]),
                outcome="denied" if rng.random() < 0.02 else "granted",
                organisation_orgnr=reviewer if rng.random() < 0.8 else rng.choice(OTHERS),
                source_orgnr="",
                actor_hpr_number=clinician,
                actor_name=f"Kliniker {clinician}",
                patient_id=1 + rng.randrange(2000),
                patient_national_id=f"9{rng.randrange(2000):010d}",
                computed_at=now,
                **flags,
            )
        )
    EventSignals.objects.bulk_create(rows, batch_size=5000)
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {EventSignals._meta.db_table}")


def _plan(query) -> dict[str, Any]:
    plan: dict[str, Any] = json.loads(query.explain(format="json"))[0]["Plan"]
    return plan


def _nodes(plan: dict[str, Any]):
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


def _auditor(orgnr: str = HOSPITAL):
    from pjd_portal.access import policy
    from pjd_portal.accounts.models import Role

    return policy.StaffFacts(
        user_id=1, organisation_id=1, roles=frozenset({Role.AUDITOR}), organisation_orgnr=orgnr
    )


DEEP = Cursor(T0 - datetime.timedelta(days=200), 10**9)
QUESTIONS: list[tuple[str, dict[str, Any], str | None]] = [
    ("default scope", {}, "logreading_sig_scope"),
    (
        "time range",
        {"start": T0 - datetime.timedelta(days=100), "end": T0 - datetime.timedelta(days=90)},
        "logreading_sig_scope",
    ),
    ("clinician by HPR", {"clinician": "900000001"}, "logreading_sig_hpr"),
    ("clinician by HPR, a rare one", {"clinician": "900000150"}, "logreading_sig_hpr"),
    ("patient", {"patient_id": 17}, "logreading_sig_patient"),
    ("unknown national id", {"patient_national_id": "90000000017"}, "logreading_sig_nid"),
    ("event type", {"event_type": "basis_stated"}, None),
    ("outcome", {"outcome": "denied"}, "logreading_sig_outcome"),
    ("acting organisation", {"organisation_orgnr": OTHERS[0]}, "logreading_sig_org"),
    *(
        (f"signal {name}", {"signal": name}, f"logreading_sig_{abbr}")
        for name, abbr in (
            ("emergency", "emerg"),
            ("no_care_relation", "nocare"),
            ("self_lookup", "self"),
            ("same_surname", "surname"),
            ("colleague", "colleague"),
            ("many_patients", "many"),
            ("outside_hours", "hours"),
            ("protected_address", "protected"),
            ("blocked_clinician", "blocked"),
        )
    ),
    (
        "signal and time range",
        {"signal": "no_care_relation", "start": T0 - datetime.timedelta(days=30)},
        "logreading_sig_nocare",
    ),
    (
        "clinician and time range",
        {"clinician": "900000001", "start": T0 - datetime.timedelta(days=30)},
        "logreading_sig_hpr",
    ),
    ("clinician and signal", {"clinician": "900000150", "signal": "outside_hours"}, None),
    ("patient and signal", {"patient_id": 17, "signal": "emergency"}, None),
]


@pytest.mark.postgres
@pytest.mark.django_db
def test_each_question_is_answered_by_its_index():
    """For each filter of the form (and combinations), first page and deep page: the
    page's query (51 rows) reads the stored rows through an index, never a sequential
    scan, and a single filter through its own index. The planner walks the index in the
    page's order (no sort), or, for a rare key it expects few rows of, collects them by
    the same index and sorts those few."""

    _bulk_rows(30_000)
    failures: list[tuple[Any, ...]] = []
    for question, filters, index in QUESTIONS:
        for cursor in (None, DEEP):
            query = log_search.stored_query(_auditor(), log_search.LogFilters(**filters), cursor)[:51]
            nodes = list(_nodes(_plan(query)))
            kinds_of = [node["Node Type"] for node in nodes]
            used = [node.get("Index Name", "") for node in nodes if node.get("Index Name")]
            page = "deep" if cursor else "first"
            if "Seq Scan" in kinds_of or not used or not all(n.startswith("logreading_sig_") for n in used):
                failures.append((question, page, kinds_of, used))
            elif index is not None and used != [index]:
                failures.append((question, page, kinds_of, used))
            elif "Sort" in kinds_of and "Bitmap Index Scan" not in kinds_of:
                failures.append((question, page, kinds_of, used))
            elif cursor is not None and "Sort" not in kinds_of:
                # The cursor bounds the index range: the scan starts there, not at the top.
                [scan] = [node for node in nodes if node.get("Index Name")]
                if "occurred_at <=" not in scan.get("Index Cond", ""):
                    failures.append(
                        (question, page, "cursor not in the index condition", scan.get("Index Cond"))
                    )
            assert len(list(query)) <= 51
    assert not failures, failures


@pytest.mark.postgres
def test_the_page_reads_its_events_by_primary_key_in_their_month_only(world):
    doctor = hospital_doctor(world)
    for i in range(3):
        record(
            world, T0 + datetime.timedelta(minutes=i), user=doctor, org=world.hospital, patient=world.patient
        )
    stored_signals.compute_signals(until=T0 + datetime.timedelta(hours=1))
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        _search(world)
    [events_sql] = [
        q["sql"]
        for q in queries.captured_queries
        if 'FROM "audit_accessevent"' in q["sql"] and '"id" IN' in q["sql"]
    ]
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (FORMAT JSON) " + events_sql)
        plan = cursor.fetchone()[0][0]["Plan"]
        # Pruned to the events' month: one partition of the log is read, whatever its size.
        parts = {
            n["Relation Name"]
            for n in _nodes(plan)
            if n.get("Relation Name", "").startswith("audit_accessevent")
        }
        assert len(parts) == 1, parts
        # And by its primary key (id, occurred_at), once the planner may not read it whole
        # (a test's partition holds three rows: reading it whole is the cheaper plan there).
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("EXPLAIN (FORMAT JSON) " + events_sql)
        plan = cursor.fetchone()[0][0]["Plan"]
        cursor.execute("SET LOCAL enable_seqscan = on")
    scans = [n for n in _nodes(plan) if n.get("Relation Name", "").startswith("audit_accessevent")]
    assert scans and all(
        n["Node Type"] in ("Index Scan", "Bitmap Heap Scan", "Index Only Scan") for n in scans
    )
