"""The access log's figures for Prometheus (served at /metrics, lib/metrics.py)."""

from __future__ import annotations

from prometheus_client import Histogram

# From the request's call to the writer until its event is committed (or the write failed):
# what a document's bytes wait for. `path`: group (the group writer, outside a transaction),
# own_transaction (SQLite, or group commit off), outer_transaction (the event is part of a
# caller's transaction, so this is the insert only; the commit comes with the caller's).
AUDIT_WRITE_SECONDS = Histogram(
    "pjd_audit_write_seconds",
    "Time to write (and, outside a caller's transaction, commit) one access event.",
    ["path", "outcome"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
