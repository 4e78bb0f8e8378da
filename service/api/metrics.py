"""/metrics: the process's counters plus what this server's database says, read per scrape.

The state series cost three small queries per scrape: the log head's one row, the newest
checkpoint by primary key, and the job counts by procrastinate's status index (on SQLite,
the in-process runner's own counts). When the database cannot answer, the scrape still
succeeds: `locker_state_up` is 0 and the state series are left out.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import structlog
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy.exc import SQLAlchemyError

from service.jobs.queue import JobQueue
from service.runtime import Runtime

_log = structlog.get_logger("locker")


class StateCollector(Collector):
    """Log size, checkpoint age and jobs, read from the database when scraped."""

    def __init__(self, runtime: Runtime, jobs: JobQueue) -> None:
        self._runtime, self._jobs = runtime, jobs

    def collect(self) -> Iterator[GaugeMetricFamily]:
        up = GaugeMetricFamily(
            "locker_state_up", "1 if the database answered this scrape's state queries."
        )
        try:
            families = list(self._state())
        except SQLAlchemyError as exc:
            _log.warning("metrics: database state unavailable", error=type(exc).__name__)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families

    def _state(self) -> Iterator[GaugeMetricFamily]:
        log = self._runtime.log
        with self._runtime.database.session() as session:
            size = log.size(session)
            newest = log.newest_checkpoint(session)
        yield GaugeMetricFamily(
            "locker_log_entries", "Entries committed to the custody log.", value=size
        )
        if newest is not None:
            signed_at = newest.signed_at.replace(tzinfo=newest.signed_at.tzinfo or UTC)
            age = (datetime.now(UTC) - signed_at).total_seconds()
            yield GaugeMetricFamily(
                "locker_log_checkpoint_entries",
                "Entries covered by the newest signed checkpoint.",
                value=newest.size,
            )
            yield GaugeMetricFamily(
                "locker_log_checkpoint_age_seconds",
                "Seconds since the newest checkpoint was signed.",
                value=age,
            )
        jobs = GaugeMetricFamily(
            "locker_jobs", "Background jobs by state (queued, running, failed).", labels=["state"]
        )
        for state, count in sorted(self._jobs.counts().items()):
            jobs.add_metric([state], count)
        yield jobs


def exposition(state: CollectorRegistry) -> bytes:
    """The text format of the process's series followed by this server's state series."""
    return generate_latest(REGISTRY) + generate_latest(state)


def state_registry(runtime: Runtime, jobs: JobQueue) -> CollectorRegistry:
    """A registry of this server's own: the state collector must not outlive its app."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StateCollector(runtime, jobs))
    return registry
