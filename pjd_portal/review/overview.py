"""The auditor's overview (/forvaltning/loggkontroll/oversikt/): counts over a period.

Events per day and per type, flagged events per signal, the clinicians with the most
flagged events (`logreading.overview`) and the open review items per status (here:
they are the review queue's). It lives with the review queue because the floors put
review above the log reading and the administration area's gate (forvaltning.access).

For an organisation's auditors only (`auditor_required`: everyone else gets the 404 of a
missing page), within their scope, and logged (LOG_OVERVIEW_VIEW) before it is shown: the
page names clinicians. The period is a GET form: dates are no personal data.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

from django import forms
from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from pjd_portal.access import policy
from pjd_portal.accounts.audit_context import actor_of, point_of_care_of
from pjd_portal.auditlog import events
from pjd_portal.auditlog.events import Outcome
from pjd_portal.auditlog.services import record_event_committed
from pjd_portal.forvaltning.access import auditor_required
from pjd_portal.lib import barchart
from pjd_portal.lib.replica import replica_reads
from pjd_portal.logreading import overview as counts
from pjd_portal.logreading import risk
from pjd_portal.review import services
from pjd_portal.review.models import ReviewStatus

TEMPLATE = "forvaltning/overview/overview.html"
DEFAULT_DAYS = 30
# A bar per day stays readable, and the counts stay cheap, up to about a year.
MAX_DAYS = 366
EARLIEST_DATE = datetime.date(2000, 1, 1)
LATEST_DATE = datetime.date(2100, 12, 31)
# Statuses still waiting for the auditor: justified and violation close an item.
OPEN_STATUSES = (ReviewStatus.NEW, ReviewStatus.UNDER_REVIEW, ReviewStatus.FOLLOW_UP)


# --- the open review items: the selector ----------------------------------------------


def open_items(staff: policy.StaffFacts, period: counts.Period) -> list[counts.Tally]:
    """The auditor's open review items on events of the period, per status, one query;
    every open status is listed, zeros included."""

    rows = (
        services.items_in_scope(staff)
        .filter(
            status__in=OPEN_STATUSES, event_occurred_at__gte=period.start, event_occurred_at__lt=period.end
        )
        .values("status")
        .annotate(n=Count("pk"))
        .order_by()
    )
    found = {row["status"]: row["n"] for row in rows}
    return [counts.Tally(str(status), str(status.label), found.get(status, 0)) for status in OPEN_STATUSES]


# --- the period -----------------------------------------------------------------------


def _date_field(label: Any) -> forms.DateField:
    return forms.DateField(
        label=label,
        required=False,
        error_messages={"invalid": _("Enter a date, for example 31.12.2026.")},
        widget=forms.DateInput(attrs={"type": "date", "class": "ds-input"}, format="%Y-%m-%d"),
    )


class PeriodForm(forms.Form):
    """From and to, whole days in Norwegian time; empty: the last 30 days up to today."""

    date_from = _date_field(_("From date"))
    date_to = _date_field(_("To date (inclusive)"))

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        for name in ("date_from", "date_to"):
            day = data.get(name)
            if day and not (EARLIEST_DATE <= day <= LATEST_DATE):
                self.add_error(name, _("Choose a date between 2000 and 2100."))
        if self.errors:
            return data
        today = timezone.localdate(timezone=risk.OSLO)
        last = data.get("date_to") or today
        first = data.get("date_from") or last - datetime.timedelta(days=DEFAULT_DAYS - 1)
        if first > last:
            self.add_error("date_to", _("The to date must be on or after the from date."))
        elif (last - first).days + 1 > MAX_DAYS:
            self.add_error("date_from", _("Choose a period of at most %(days)d days.") % {"days": MAX_DAYS})
        data["period"] = counts.Period(first, last)
        return data


# --- the charts ----------------------------------------------------------------------


@dataclass(frozen=True)
class ChartView:
    """One chart and its table: the same numbers twice, for the eye and for the ear."""

    key: str
    title: Any
    chart: barchart.Chart
    rows: list[counts.Tally]
    label_heading: Any
    columns: bool = False  # one column per day, else one horizontal bar per row


def _horizontal(key: str, title: Any, label_heading: Any, rows: list[counts.Tally]) -> ChartView:
    return ChartView(key, title, barchart.horizontal([(r.label, r.count) for r in rows]), rows, label_heading)


def _charts(found: counts.Overview, items: list[counts.Tally]) -> dict[str, ChartView]:
    clinicians = [
        counts.Tally(c.hpr_number, f"{c.name} ({c.hpr_number})" if c.hpr_number else c.name, c.count)
        for c in found.flagged.clinicians
    ]
    charts = [
        ChartView(
            "per-day",
            _("Events per day"),
            barchart.columns([(r.label, r.count) for r in found.per_day]),
            found.per_day,
            _("Day"),
            columns=True,
        ),
        _horizontal("per-type", _("Events per event type"), _("Event"), found.per_type),
        _horizontal(
            "per-signal", _("Flagged events per risk signal"), _("Risk signal"), found.flagged.per_signal
        ),
        _horizontal("open-items", _("Open review items per status"), _("Status"), items),
        _horizontal("clinicians", _("Clinicians with the most flagged events"), _("Clinician"), clinicians),
    ]
    return {chart.key.replace("-", "_"): chart for chart in charts}


def _record_view(request: HttpRequest, period: counts.Period, total: int) -> None:
    record_event_committed(
        events.LOG_OVERVIEW_VIEW(
            outcome=Outcome.GRANTED,
            date_from=period.first.isoformat(),
            date_to=period.last.isoformat(),
            total=total,
        ),
        actor=actor_of(request),
        where=point_of_care_of(request),
    )


@auditor_required
@replica_reads
def log_overview(request: HttpRequest, staff: policy.StaffFacts) -> HttpResponse:
    if request.method != "GET":
        response = HttpResponse(status=405)
        response["Allow"] = "GET"
        return response
    form = PeriodForm(request.GET)
    if not form.is_valid():
        # Nothing counted, nothing shown: the message says what to change.
        return render(request, TEMPLATE, {"form": form}, status=400)
    period: counts.Period = form.cleaned_data["period"]
    if not request.GET:  # the default period shown in the form, as if chosen
        form = PeriodForm(initial={"date_from": period.first, "date_to": period.last})
    found = counts.overview(staff, period, thresholds=risk.Thresholds.from_settings())
    items = open_items(staff, period)
    _record_view(request, period, found.total)
    context = {
        "form": form,
        "overview": found,
        "charts": _charts(found, items),
        "clinicians": found.flagged.clinicians,
    }
    return render(request, TEMPLATE, context)
