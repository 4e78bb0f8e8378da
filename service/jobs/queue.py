"""Where jobs run: procrastinate on PostgreSQL, a small in-process runner on SQLite.

On PostgreSQL a job is a row in procrastinate's tables, deferred by any process and run
by any worker (`locker worker`, or the server's own when LOCKER_JOBS_IN_PROCESS is on):
it survives the death of the process running it (workers send heartbeats; a job whose
worker went silent is retried), runs at most once at a time, and is retried with
exponential backoff. The embedded default (SQLite, one process) runs jobs on a thread of
its own with the same retry budget; what a crash interrupts there is found again by
`unfinished_work` when the server starts.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Protocol

import procrastinate
import structlog
from procrastinate.exceptions import AlreadyEnqueued
from sqlalchemy import text

from service.errors import describe
from service.jobs.work import JOBS, Attempt, Deferral, Job, unfinished_work

if TYPE_CHECKING:
    from service.runtime import Runtime

_log = structlog.get_logger("locker.jobs")


class JobQueue(Protocol):
    def defer(self, job: Job, **arguments: str) -> None:
        """Queue `job` with `arguments`; returns at once, never runs it here."""

    def close(self) -> None:
        """Stop taking jobs; jobs already queued stay queued (or, in-process, finish)."""

    def counts(self) -> dict[str, int]:
        """Jobs queued, running and failed (given up on), for the metrics."""


def open_queue(runtime: Runtime) -> JobQueue:
    """The queue for this deployment's database."""
    if runtime.database.engine.dialect.name == "postgresql":
        return PostgresQueue(runtime)
    return InProcessQueue(runtime)


def _lock(job: Job, arguments: dict[str, str]) -> str | None:
    return f"{job.name}:{arguments[job.lock_by]}" if job.lock_by else None


def database_conninfo(runtime: Runtime) -> str:
    """The libpq URL of the locker's own database (procrastinate speaks psycopg 3)."""
    url = runtime.database.engine.url.set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


class PostgresQueue:
    """Defers jobs into procrastinate's tables through a small synchronous pool."""

    def __init__(self, runtime: Runtime) -> None:
        connector = procrastinate.SyncPsycopgConnector(
            conninfo=database_conninfo(runtime), min_size=0, max_size=4
        )
        self.app = procrastinate_app(connector, backoff=runtime.settings.job_backoff_seconds)
        self.app.open()
        self._database = runtime.database

    def defer(self, job: Job, **arguments: str) -> None:
        lock = _lock(job, arguments)
        task = self.app.tasks[job.name]
        with contextlib.suppress(AlreadyEnqueued):  # the same work is queued already
            task.configure(lock=lock, queueing_lock=lock).defer(**arguments)

    def close(self) -> None:
        self.app.close()

    def counts(self) -> dict[str, int]:
        # procrastinate's statuses, by its index on status; failed rows stay until removed.
        found = dict.fromkeys(_STATES.values(), 0)
        with self._database.session() as session:
            for status, count in session.execute(_COUNT_BY_STATUS):
                found[_STATES[status]] = count
        return found


_STATES = {"todo": "queued", "doing": "running", "failed": "failed"}
_COUNT_BY_STATUS = text(
    "SELECT status, count(*) FROM procrastinate_jobs"
    " WHERE status IN ('todo', 'doing', 'failed') GROUP BY status"
)


def procrastinate_app(
    connector: procrastinate.BaseConnector, *, backoff: float
) -> procrastinate.App:
    """A procrastinate App that knows every job (the runtime comes from the worker)."""
    app = procrastinate.App(connector=connector)
    for job in JOBS.values():
        app.task(
            name=job.name,
            pass_context=True,
            retry=_Backoff(job, backoff),
        )(_runner(job))
    return app


class _Backoff(procrastinate.BaseRetryStrategy):
    """Retry until the job's budget is spent, waiting backoff·2**n seconds before the
    n-th retry (n from 0), as the in-process runner does."""

    def __init__(self, job: Job, backoff: float) -> None:
        self._retries, self._backoff = job.attempts - 1, backoff

    def get_retry_decision(
        self, *, exception: BaseException, job: procrastinate.jobs.Job
    ) -> procrastinate.RetryDecision | None:
        if job.attempts >= self._retries:  # `attempts`: the tries before this one
            return None
        return procrastinate.RetryDecision(retry_in={"seconds": self._backoff * 2**job.attempts})


def _runner(job: Job) -> Callable[..., None]:
    def run(context: procrastinate.JobContext, **arguments: str) -> None:
        runtime: Runtime = context.additional_context["runtime"]
        attempts = context.job.attempts  # earlier tries of this job
        attempt = Attempt(number=attempts + 1, final=attempts + 1 >= job.attempts)
        try:
            job.run(runtime, attempt, **arguments)
        except Exception as exc:
            _log.warning("job failed", job=job.name, attempt=attempt.number, error=describe(exc))
            raise

    run.__name__ = job.name
    return run


class InProcessQueue:
    """Jobs on one thread of this process, retried with backoff; for SQLite."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="locker-job")
        self._queued: set[str] = set()
        self._guard = threading.Lock()
        self._closed = False
        self._counts = dict.fromkeys(_STATES.values(), 0)

    def defer(self, job: Job, **arguments: str) -> None:
        lock = _lock(job, arguments)
        with self._guard:
            if self._closed or (lock is not None and lock in self._queued):
                return
            if lock is not None:
                self._queued.add(lock)
            self._counts["queued"] += 1
        self._pool.submit(self._run, job, arguments, lock)

    def _run(self, job: Job, arguments: dict[str, Any], lock: str | None) -> None:
        self._count(queued=-1, running=1)
        try:
            for number in range(1, job.attempts + 1):
                attempt = Attempt(number=number, final=number == job.attempts)
                try:
                    job.run(self._runtime, attempt, **arguments)
                    return
                except Exception as exc:
                    _log.warning("job failed", job=job.name, attempt=number, error=describe(exc))
                    if attempt.final:
                        self._count(failed=1)
                    if attempt.final or self._closed:
                        return
                    time.sleep(self._runtime.settings.job_backoff_seconds * 2 ** (number - 1))
        finally:
            self._count(running=-1)
            if lock is not None:
                with self._guard:
                    self._queued.discard(lock)

    def _count(self, **changes: int) -> None:
        with self._guard:
            for state, change in changes.items():
                self._counts[state] += change

    def counts(self) -> dict[str, int]:
        with self._guard:
            return dict(self._counts)

    def close(self) -> None:
        self._closed = True
        self._pool.shutdown(wait=True, cancel_futures=True)


def defer_unfinished(runtime: Runtime, queue: JobQueue) -> list[Deferral]:
    """Queue again whatever the database says is owed (see `unfinished_work`)."""
    owed = unfinished_work(runtime)
    for deferral in owed:
        queue.defer(deferral.job, **deferral.arguments)
    return owed
