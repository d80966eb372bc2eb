"""Remote document sources' figures for Prometheus (served at /metrics, lib/metrics.py).

Labelled by the source's organisation number, never by anything about the patient.
"""

from __future__ import annotations

from collections.abc import Iterator

from django.conf import settings
from prometheus_client import Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from pjd_portal.documents.sources.breaker import CLOSED, HALF_OPEN, OPEN, breaker_for
from pjd_portal.lib.metrics import add_scrape_time_collector

# One exchange with a source, until its answer's status and headers are in (the body is
# streamed after): `outcome` is the status class, or `error` for a timeout or a refused or
# broken connection. Retries are separate exchanges.
SOURCE_REQUEST_SECONDS = Histogram(
    "pjd_source_request_seconds",
    "Time for one request to a remote MHD document source, to its answer's headers.",
    ["source", "outcome"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0),
)

BREAKER_STATE_VALUES = {CLOSED: 0, HALF_OPEN: 1, OPEN: 2}


class BreakerStateCollector(Collector):
    """Each configured source's breaker, read when Prometheus asks (not when the source was
    last asked: a breaker's cool-down ends while nobody calls). The breaker the scraped
    process sees: with a breaker shared between processes, every process's."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "pjd_source_breaker_state",
            "Circuit breaker of each remote document source: 0 closed, 1 half-open (one trial), 2 open.",
            labels=["source"],
        )
        for orgnr, config in sorted(settings.MHD_SOURCES.items()):
            breaker = breaker_for(str(config["base_url"]).rstrip("/"))
            family.add_metric([str(orgnr)], BREAKER_STATE_VALUES[breaker.state])
        yield family


add_scrape_time_collector(BreakerStateCollector())
