"""The auditor's questions, measured (`manage.py benchmark_audit`, PostgreSQL only).

`bulk_signals` computes the stored signals of the benchmark's bulk rows set-based, in one
SQL statement (window functions), by the same rules as `risk`: ten million events in
minutes, where the job's per-chunk path (`stored_signals.compute_signals`) would take an
hour. What the synthetic log has no rows for is made up the same way for every run: no
patient is on a GP list and none is a colleague or shares a surname (no patient rows),
every PROTECTED_EVERY-th patient has a protected address, and "many patients" counts the
clinician's clinical events in the window (not distinct patients). The job itself is then
timed on the last day of the log (its rows removed and computed again).

`measure` times the log review's own code (`log_search.search_page`, the page as the
auditor gets it: the stored rows, the events they point to and the not-yet-computed tail)
for each question of the form, first page and deep page, over the largest organisations;
and, with `before`, the old query shapes (`log_search.live_page`: every signal computed
at read time, the scope as an OR) on the same questions.
"""

from __future__ import annotations

import datetime
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.management.base import OutputWrapper
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from pjd_portal.access import policy
from pjd_portal.accounts.models import Role
from pjd_portal.auditlog.models import AccessEvent
from pjd_portal.logreading import log_search, risk, stored_signals
from pjd_portal.logreading.models import SIGNAL_FIELDS, EventSignals, SignalWatermark

BULK_CHAIN = 999
PROTECTED_EVERY = 500
PAGE = 50
TOP_ORGANISATIONS = 5
WARM_UP = 5
TAIL = 5


def _index_definitions(cursor: Any, table: str) -> list[tuple[str, str]]:
    cursor.execute(
        "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s AND indexname NOT LIKE %s",
        [table, "%_pkey"],
    )
    return list(cursor.fetchall())


def bulk_signals(out: OutputWrapper) -> None:
    """The stored signals of every bulk row (chain BULK_CHAIN), in one INSERT … SELECT;
    the table's indexes are dropped first and built again after, as for any bulk load."""

    thresholds = risk.Thresholds.from_settings()
    table = EventSignals._meta.db_table
    params: dict[str, Any] = {
        "chain": BULK_CHAIN,
        "clinical": sorted(risk.CLINICAL_EVENT_TYPES),
        "contact": sorted(risk.CONTACT_EVENT_TYPES),
        "emergency_bases": sorted(risk.EMERGENCY_BASES),
        "emergency_type": "emergency_access",
        "care": datetime.timedelta(days=thresholds.care_relation_days),
        "visit": datetime.timedelta(hours=thresholds.same_visit_hours),
        "window": datetime.timedelta(minutes=thresholds.many_patients_minutes),
        "many": thresholds.many_patients,
        "start_hour": thresholds.workday_start_hour,
        "end_hour": thresholds.workday_end_hour,
        "protected_every": PROTECTED_EVERY,
        "blocked": risk.BLOCKED_REASON_CODE,
    }
    sql = f"""
    INSERT INTO {table} (
      event_pk, reviewer_orgnr, occurred_at, event_type, outcome, organisation_orgnr, source_orgnr,
      actor_hpr_number, actor_name, patient_id, patient_national_id, computed_at,
      {", ".join(SIGNAL_FIELDS)})
    WITH facts AS (
      SELECT e.id, e.occurred_at, e.event_type, e.outcome, e.organisation_orgnr, e.source_orgnr,
             e.actor_hpr_number, e.actor_name, e.actor_pid, e.patient_id, e.patient_national_id,
             e.basis, e.reason_code,
             e.event_type = ANY(%(clinical)s) AS clinical,
             count(*) FILTER (WHERE e.outcome = 'granted' AND e.event_type = ANY(%(contact)s)) OVER (
               PARTITION BY e.organisation_orgnr, e.patient_id ORDER BY e.occurred_at
               RANGE BETWEEN %(care)s PRECEDING AND %(visit)s PRECEDING) AS contacts,
             count(*) FILTER (WHERE e.patient_id IS NOT NULL AND e.event_type = ANY(%(clinical)s)) OVER (
               PARTITION BY e.actor_user_id, e.organisation_orgnr ORDER BY e.occurred_at
               RANGE BETWEEN %(window)s PRECEDING AND CURRENT ROW) AS in_window
      FROM audit_accessevent e
      WHERE e.chain = %(chain)s AND (e.organisation_orgnr <> '' OR e.source_orgnr <> '')
    ), local AS (
      SELECT f.*, f.occurred_at AT TIME ZONE 'Europe/Oslo' AS oslo FROM facts f
    )
    SELECT f.id, r.reviewer, f.occurred_at, f.event_type, f.outcome, f.organisation_orgnr, f.source_orgnr,
           f.actor_hpr_number, f.actor_name, f.patient_id, f.patient_national_id, now(),
           (f.basis = ANY(%(emergency_bases)s) OR f.event_type = %(emergency_type)s),
           r.own AND f.clinical AND f.patient_id IS NOT NULL AND f.contacts = 0,
           f.clinical AND f.actor_pid <> '' AND f.actor_pid = f.patient_national_id,
           false,
           false,
           r.own AND f.clinical AND f.in_window >= %(many)s,
           f.clinical AND (extract(isodow FROM f.oslo) >= 6 OR extract(hour FROM f.oslo) < %(start_hour)s
                           OR extract(hour FROM f.oslo) >= %(end_hour)s),
           f.clinical AND f.patient_id IS NOT NULL AND f.patient_id %% %(protected_every)s = 0,
           f.reason_code = %(blocked)s
    FROM local f
    CROSS JOIN LATERAL (VALUES (f.organisation_orgnr, true), (f.source_orgnr, false)) AS r(reviewer, own)
    WHERE r.reviewer <> '' AND (r.own OR r.reviewer <> f.organisation_orgnr)
    """  # noqa: S608 (the table and column names are the model's)
    with connection.cursor() as cursor:
        indexes = _index_definitions(cursor, table)
        for name, _definition in indexes:
            cursor.execute(f'DROP INDEX "{name}"')
        cursor.execute("SET work_mem = '2GB'")
        started = time.monotonic()
        cursor.execute(sql, params)
        inserted = cursor.rowcount
        seconds = time.monotonic() - started
        out.write(
            f"stored signals of the bulk rows: {inserted:,} rows in {seconds:.1f} s (one INSERT … SELECT)"
        )
        cursor.execute("SET maintenance_work_mem = '1GB'")
        started = time.monotonic()
        for _name, definition in indexes:
            cursor.execute(definition)
        out.write(f"  {len(indexes)} indexes built again in {time.monotonic() - started:.1f} s")
        cursor.execute("RESET work_mem")
        cursor.execute("RESET maintenance_work_mem")
        started = time.monotonic()
        cursor.execute(f"VACUUM (ANALYZE) {table}")
        out.write(f"  VACUUM (ANALYZE) {time.monotonic() - started:.1f} s")
    now = timezone.now()
    SignalWatermark.objects.update_or_create(pk=1, defaults={"computed_before": now, "updated_at": now})


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))] if ordered else 0.0


@dataclass
class _Organisation:
    orgnr: str
    rows: int
    clinicians: list[str]
    patients: list[int]


def _auditor(orgnr: str) -> policy.StaffFacts:
    return policy.StaffFacts(
        user_id=1, organisation_id=1, roles=frozenset({Role.AUDITOR}), organisation_orgnr=orgnr
    )


def _largest(cursor: Any, rng: random.Random) -> list[_Organisation]:
    """The largest organisations by rows in their auditors' scope, with clinicians and
    patients drawn from their rows (so the busiest come up most often)."""

    table = EventSignals._meta.db_table
    cursor.execute(
        f"SELECT reviewer_orgnr, count(*) FROM {table} GROUP BY 1 ORDER BY 2 DESC LIMIT %s",  # noqa: S608
        [TOP_ORGANISATIONS],
    )
    found = []
    for orgnr, rows in cursor.fetchall():
        cursor.execute(
            f"SELECT actor_hpr_number, patient_id FROM {table} TABLESAMPLE SYSTEM (1) "  # noqa: S608
            "WHERE reviewer_orgnr = %s AND actor_hpr_number <> '' LIMIT 2000",
            [orgnr],
        )
        sample = cursor.fetchall()
        found.append(
            _Organisation(
                orgnr,
                rows,
                [hpr for hpr, _p in sample],
                [patient for _h, patient in sample if patient is not None],
            )
        )
    return found


def _tail_events(organisations: list[_Organisation]) -> int:
    """TAIL events a second apart for each organisation, just now (after the job's
    watermark), by one of its clinicians: the search finds them without stored rows."""

    now = timezone.now()
    made = []
    for o in organisations:
        for i in range(TAIL):
            hpr = o.clinicians[i % len(o.clinicians)]
            made.append(
                AccessEvent(
                    occurred_at=now - datetime.timedelta(seconds=i),
                    event_type="document_open",
                    outcome="granted",
                    actor_user_id=int(hpr) - 900000000 + 1_000_000,
                    actor_hpr_number=hpr,
                    actor_name=f"Kliniker {int(hpr) - 900000000}",
                    organisation_orgnr=o.orgnr,
                    organisation_name=f"Virksomhet {o.orgnr}",
                    patient_id=1 + i,
                    patient_national_id=f"9{1 + i:010d}",
                    source_orgnr=o.orgnr,
                    chain=BULK_CHAIN,
                )
            )
    AccessEvent.objects.bulk_create(made)
    return TAIL


Question = Callable[[_Organisation, random.Random, datetime.datetime], dict[str, Any]]


def _signal_question(signal: str) -> Question:
    return lambda o, r, t: {"signal": signal}


def _questions(first: datetime.datetime) -> list[tuple[str, Question, bool]]:
    """(name, filters for an organisation, measured before too)."""

    def week(rng: random.Random) -> dict[str, Any]:
        start = first + datetime.timedelta(days=rng.randrange(7, 350))
        return {"start": start, "end": start + datetime.timedelta(days=7)}

    def month(rng: random.Random) -> dict[str, Any]:
        start = first + datetime.timedelta(days=rng.randrange(30, 330))
        return {"start": start, "end": start + datetime.timedelta(days=30)}

    questions: list[tuple[str, Question, bool]] = [
        ("default scope (no filter)", lambda o, r, t: {}, True),
        ("time range (a week)", lambda o, r, t: week(r), True),
        ("clinician by HPR number", lambda o, r, t: {"clinician": r.choice(o.clinicians)}, True),
        ("patient", lambda o, r, t: {"patient_id": r.choice(o.patients)}, False),
        ("outcome denied", lambda o, r, t: {"outcome": "denied"}, False),
        ("event type emergency_access", lambda o, r, t: {"event_type": "emergency_access"}, False),
    ]
    for signal in risk.Signal:
        questions.append(
            (
                f"signal {signal.value}",
                _signal_question(signal.value),
                signal.value in ("no_care_relation", "many_patients", "emergency"),
            )
        )
    questions += [
        (
            "no care relation in a month",
            lambda o, r, t: {"signal": "no_care_relation", **month(r)},
            True,
        ),
        (
            "clinician by HPR, outside hours",
            lambda o, r, t: {"clinician": r.choice(o.clinicians), "signal": "outside_hours"},
            False,
        ),
        (
            "clinician by HPR in a month",
            lambda o, r, t: {"clinician": r.choice(o.clinicians), **month(r)},
            False,
        ),
    ]
    return questions


def _timed(work: Callable[[], Any]) -> float:
    started = time.perf_counter()
    work()
    return (time.perf_counter() - started) * 1000


def measure(out: OutputWrapper, rng: random.Random, *, per_kind: int, before: int) -> None:
    """p50/p95 of a 50-row page for each question, over the largest organisations."""

    thresholds = risk.Thresholds.from_settings()
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {EventSignals._meta.db_table}")
        cursor.execute(
            "SELECT min(occurred_at), max(occurred_at) FROM audit_accessevent WHERE chain = %s", [BULK_CHAIN]
        )
        first, last = cursor.fetchone()
        organisations = _largest(cursor, rng)
        cursor.execute(f"SELECT count(*) FROM {EventSignals._meta.db_table}")  # noqa: S608
        stored_rows = cursor.fetchone()[0]
    tail = _tail_events(organisations)
    out.write(
        f"stored signal rows: {stored_rows:,}; measured over the {len(organisations)} largest scopes, "
        f"each with a tail of {tail} events the job has not reached yet (as between two runs):"
    )
    for o in organisations:
        out.write(f"  {o.orgnr}: {o.rows:,} rows in its auditors' scope")

    def deep_cursor(filters: log_search.LogFilters) -> str:
        # A page far into the history: after a point in the oldest three quarters of the
        # log (of the time range, when the question has one).
        lo, hi = filters.start or first, filters.end or last
        point = lo + datetime.timedelta(seconds=rng.random() * 0.75 * (hi - lo).total_seconds())
        return log_search.cursor_at(point, 2**62)

    table = []
    for name, question, old_too in _questions(first):
        figures: dict[str, list[float]] = {"first": [], "deep": [], "old first": [], "old deep": []}
        returned = []
        for i in range(WARM_UP):  # not timed: the first read of an index after the load
            o = organisations[i % len(organisations)]
            log_search.search_page(
                _auditor(o.orgnr), log_search.LogFilters(**question(o, rng, first)), thresholds=thresholds
            )
        for i in range(per_kind):
            o = organisations[i % len(organisations)]
            filters = log_search.LogFilters(**question(o, rng, first))
            staff = _auditor(o.orgnr)
            started = time.perf_counter()
            page = log_search.search_page(staff, filters, thresholds=thresholds)
            figures["first"].append((time.perf_counter() - started) * 1000)
            returned.append(len(page.rows))
            cursor_text = deep_cursor(filters)
            started = time.perf_counter()
            log_search.search_page(staff, filters, thresholds=thresholds, cursor=cursor_text)
            figures["deep"].append((time.perf_counter() - started) * 1000)
        if old_too and before:
            o = organisations[0]  # the largest: the old shapes grow with the scope
            for _ in range(before):
                filters = log_search.LogFilters(**question(o, rng, first))
                staff = _auditor(o.orgnr)
                old_pages: list[tuple[str, str | None]] = [
                    ("old first", None),
                    ("old deep", deep_cursor(filters)),
                ]
                for page_name, old_cursor in old_pages:
                    figures[page_name].append(_old(staff, filters, thresholds, old_cursor))
        table.append((name, figures, statistics_median(returned)))
        out.write(
            f"{name:<34} first p50 {percentile(figures['first'], 50):7.2f} p95 {percentile(figures['first'], 95):7.2f} ms | "
            f"deep p50 {percentile(figures['deep'], 50):7.2f} p95 {percentile(figures['deep'], 95):7.2f} ms"
            + (
                f" | before: first p50 {_ms(percentile(figures['old first'], 50))} deep p50 {_ms(percentile(figures['old deep'], 50))}"
                if figures["old first"]
                else ""
            )
        )
    out.write("")
    out.write(
        f"| question ({per_kind} pages of 50 each, {len(organisations)} largest scopes) | first page p50 / p95 ms "
        "| deep page p50 / p95 ms | rows on a first page (median) | before: first / deep page (largest scope) |"
    )
    out.write("|---|---|---|---|---|")
    for name, figures, rows in table:
        old = (
            f"{_ms(percentile(figures['old first'], 50))} / {_ms(percentile(figures['old deep'], 50))}"
            if figures["old first"]
            else "—"
        )
        out.write(
            f"| {name} | {percentile(figures['first'], 50):.2f} / {percentile(figures['first'], 95):.2f} "
            f"| {percentile(figures['deep'], 50):.2f} / {percentile(figures['deep'], 95):.2f} | {rows} | {old} |"
        )
    out.write("")
    _job(out, last, thresholds)


OLD_TIMEOUT_MS = 30_000


def _ms(value: float) -> str:
    if value >= OLD_TIMEOUT_MS:
        return f"> {OLD_TIMEOUT_MS // 1000} s"
    return f"{value:,.0f} ms" if value >= 100 else f"{value:.1f} ms"


def _old(
    staff: policy.StaffFacts, filters: log_search.LogFilters, thresholds: risk.Thresholds, cursor: str | None
) -> float:
    """One page in the old shape, or OLD_TIMEOUT_MS when it took longer than that."""

    try:
        with transaction.atomic():
            with connection.cursor() as c:
                c.execute(f"SET LOCAL statement_timeout = {OLD_TIMEOUT_MS}")
            return _timed(lambda: log_search.live_page(staff, filters, thresholds=thresholds, cursor=cursor))
    except DatabaseError:
        return float(OLD_TIMEOUT_MS)


def statistics_median(values: list[int]) -> int:
    ordered = sorted(values)
    return ordered[len(ordered) // 2] if ordered else 0


def _job(out: OutputWrapper, last: datetime.datetime, thresholds: risk.Thresholds) -> None:
    """The job (`compute_signals`) on the log's last day, its rows removed first."""

    day = last - datetime.timedelta(days=1)
    removed, _ = EventSignals.objects.filter(occurred_at__gte=day).delete()
    now = timezone.now()
    SignalWatermark.objects.update_or_create(pk=1, defaults={"computed_before": day, "updated_at": now})
    started = time.monotonic()
    counts = stored_signals.compute_signals(until=timezone.now(), thresholds=thresholds)
    seconds = time.monotonic() - started
    out.write(
        f"compute_signals (the job) on the last day: {counts.events:,} events, {counts.rows:,} rows in "
        f"{seconds:.1f} s = {counts.events / max(seconds, 1e-9):,.0f} events/s ({removed:,} rows removed first); "
        f"lookback {settings.LOG_SIGNALS_LOOKBACK_MINUTES} min"
    )
