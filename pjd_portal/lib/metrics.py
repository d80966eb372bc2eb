"""Prometheus metrics at /metrics, for the operators' scraper only.

The figures live with what they measure (auditlog/metrics.py, documents/sources/metrics.py,
the request figures here); this module serves them. The page is behind a bearer token
(PJD_METRICS_TOKEN; unset: no page, a 404) rather than an address list: behind the load
balancer every request comes from the balancer's address, and a token works the same on
any network path. Prometheus sends it with `authorization: {credentials: ...}`.

With several worker processes (granian --workers N, `make serve`) each process counts for
itself. PROMETHEUS_MULTIPROC_DIR set (make serve sets it) puts every process's figures in
files there and any worker answers the scrape with the sum (prometheus_client's
multiprocess mode); without it a scrape sees only the process that answered it. Figures
read at scrape time (the breakers' states) are the answering process's own.
"""

from __future__ import annotations

import hmac
import os

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from django.views.decorators.http import require_GET
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

# One line per answered request (accounts/request_log.py): by the route's name, never its
# path (a path holds handles), and the method from a fixed list.
HTTP_REQUESTS = Counter(
    "pjd_http_requests",
    "Requests answered, by route name, method and status.",
    ["route", "method", "status"],
)
HTTP_REQUEST_SECONDS = Histogram(
    "pjd_http_request_seconds",
    "Time to answer a request (a streamed document: until its first byte is ready), by route name.",
    ["route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)

# Figures computed when the scrape comes, each process's own (not aggregated in files).
_scrape_time = CollectorRegistry(auto_describe=True)


def add_scrape_time_collector(collector: Collector) -> None:
    _scrape_time.register(collector)


def render() -> bytes:
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
        counted = generate_latest(registry)
    else:
        counted = generate_latest(REGISTRY)
    return counted + generate_latest(_scrape_time)


@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    token = settings.METRICS_TOKEN
    if not token:
        raise Http404
    offered = request.headers.get("Authorization", "")
    if not hmac.compare_digest(offered.encode(), f"Bearer {token}".encode()):
        response = HttpResponse("Unauthorized\n", status=401, content_type="text/plain; charset=utf-8")
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(render(), content_type=CONTENT_TYPE_LATEST)
