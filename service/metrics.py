"""The locker's Prometheus metrics: what an operator asks of a running server.

The series counted as things happen live in prometheus-client's process-wide registry,
beside its process and garbage-collector series: one server is one process. What the
database knows (log size, checkpoint age, jobs) is read when /metrics is scraped, by a
collector of the HTTP app (service.api.metrics). docs/operations.md lists every series.

Labels take few values: a route's template, never its URL; a store's kind; an error's
class.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

# Seconds; from a cached read to a large upload over a slow link.
_REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
# Seconds; an append locks the log's head row, so waiting for other appends counts too.
_APPEND_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5)

HTTP_REQUESTS = Counter(
    "locker_http_requests",
    "HTTP requests answered, by method, route template and status.",
    ["method", "route", "status"],
)
HTTP_DURATION = Histogram(
    "locker_http_request_duration_seconds",
    "Time from a request's arrival to the end of its response, by method and route.",
    ["method", "route"],
    buckets=_REQUEST_BUCKETS,
)
UPLOADS = Counter(
    "locker_uploads",
    "Uploads that ended, by store kind and outcome (stored, duplicate, failed).",
    ["store", "outcome"],
)
UPLOAD_BYTES = Counter(
    "locker_upload_bytes",
    "Bytes of newly stored evidence, by store kind (a duplicate adds none).",
    ["store"],
)
UPLOAD_READ_BACK_BYTES = Counter(
    "locker_upload_read_back_bytes",
    "Bytes of resumable uploads read back from the store to digest them: their PATCHes "
    "landed on more than one process, or the receiving one restarted.",
)
INGEST_DURATION = Histogram(
    "locker_ingest_duration_seconds",
    "Time to receive, hash, store and record one upload, by outcome.",
    ["outcome"],
    buckets=_REQUEST_BUCKETS,
)
CUSTODY_APPENDS = Counter(
    "locker_custody_appends",
    "Entries appended to the custody log (an append whose transaction then rolls back "
    "is counted too).",
)
CUSTODY_APPEND_DURATION = Histogram(
    "locker_custody_append_duration_seconds",
    "Time to append one custody entry, waiting for the log's head lock included.",
    buckets=_APPEND_BUCKETS,
)
INTEGRITY_FAILURES = Counter(
    "locker_integrity_failures",
    "Integrity checks that failed while serving a request, by error class.",
    ["kind"],
)
AUTHENTICATION_FAILURES = Counter(
    "locker_authentication_failures",
    "Requests whose credentials were missing or not recognised.",
)


def store_kind(store: object) -> str:
    """A store's label: its class name without "Store", lower case (s3, filesystem)."""
    return type(store).__name__.removesuffix("Store").lower()
