"""Running jobs: a procrastinate worker on PostgreSQL, plus the locker's own housekeeping.

Every worker, besides running queued jobs, (1) sends heartbeats, and retries the jobs of
workers that went silent for three heartbeats (a SIGKILLed process, a lost machine);
(2) queues again whatever the database says is owed (`unfinished_work`), so nothing is
lost between a commit and its defer; (3) settles, at the same pace, the upload intents
no request is handling any more (a crash or a database outage left them pending; see
`service.evidence.intents`), as `locker fsck --repair` would; (4) timestamps the latest
checkpoint with every configured TSA every LOCKER_TSA_INTERVAL seconds, sooner after a
failure; (5) deletes idempotency records past their 24 hours, every hour; (6) removes
expired resumable uploads (`service.evidence.resumable`). Several workers may run at
once: a job runs at most once at a time, and the housekeeping is idempotent (one token
per checkpoint and authority; an intent is settled under its row's lock, once).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import procrastinate
import structlog
from procrastinate.exceptions import UniqueViolation
from procrastinate.jobs import Status

from service.accounts.idempotency import purge_expired
from service.custody.timestamps import timestamp_periodically
from service.errors import describe
from service.evidence.intents import settle_pending
from service.evidence.resumable import expire_uploads, settle_completions
from service.jobs.queue import (
    JobQueue,
    database_conninfo,
    defer_unfinished,
    procrastinate_app,
)

if TYPE_CHECKING:
    from service.runtime import Runtime

_log = structlog.get_logger("locker.jobs")
# Idempotency records are kept at least 24 hours; an hour's lateness in deleting is fine.
_PURGE_SECONDS = 3600


async def run_worker(runtime: Runtime, queue: JobQueue, *, concurrency: int = 2) -> None:
    """Run jobs and housekeeping until cancelled (PostgreSQL only)."""
    heartbeat = runtime.settings.job_heartbeat_seconds
    connector = procrastinate.PsycopgConnector(conninfo=database_conninfo(runtime))
    app = procrastinate_app(connector, backoff=runtime.settings.job_backoff_seconds)
    async with app.open_async():
        housekeeping = asyncio.gather(
            _every(heartbeat, lambda: _retry_stalled(app, heartbeat * 3)),
            _every(runtime.settings.job_reconcile_seconds, lambda: _owed(runtime, queue)),
            _every(runtime.settings.job_reconcile_seconds, lambda: _stale_intents(runtime)),
            _every(runtime.settings.job_reconcile_seconds, lambda: _expire(runtime)),
            _stamp_periodically(runtime),
            _every(_PURGE_SECONDS, lambda: _purge_idempotency(runtime)),
        )
        try:
            await app.run_worker_async(
                concurrency=concurrency,
                additional_context={"runtime": runtime},
                install_signal_handlers=False,
                update_heartbeat_interval=heartbeat,
                stalled_worker_timeout=heartbeat * 3,
            )
        finally:
            housekeeping.cancel()
            await asyncio.gather(housekeeping, return_exceptions=True)


async def run_in_process(runtime: Runtime, queue: JobQueue) -> None:
    """The embedded default's housekeeping (its jobs run on the queue's own thread)."""
    await asyncio.gather(
        _every(runtime.settings.job_reconcile_seconds, lambda: _owed(runtime, queue)),
        _every(runtime.settings.job_reconcile_seconds, lambda: _stale_intents(runtime)),
        _every(runtime.settings.job_reconcile_seconds, lambda: _expire(runtime)),
        _stamp_periodically(runtime),
        _every(_PURGE_SECONDS, lambda: _purge_idempotency(runtime)),
    )


async def _purge_idempotency(runtime: Runtime) -> None:
    purged = await asyncio.to_thread(purge_expired, runtime)
    if purged:
        _log.info("deleted expired idempotency records", records=purged)


async def _stamp_periodically(runtime: Runtime) -> None:
    # One loop per authority, each backing off on its own after a failure.
    if runtime.tsa is not None:
        await timestamp_periodically(runtime)


async def _every(seconds: float, step: Callable[[], Awaitable[None]]) -> None:
    """Run `step` now and then every `seconds` (only now when 0), outliving its failures."""
    while True:
        try:
            await step()
        except Exception as exc:
            _log.warning("housekeeping step failed", error=describe(exc))
        if seconds <= 0:
            return
        await asyncio.sleep(seconds)


async def _retry_stalled(app: procrastinate.App, silent_seconds: float) -> None:
    stalled = await app.job_manager.get_stalled_jobs(seconds_since_heartbeat=silent_seconds)
    for job in stalled:
        _log.warning("retrying a job whose worker went silent", job=job.task_name, id=job.id)
        try:
            await app.job_manager.retry_job(job)
        except UniqueViolation:
            # The same work is queued already (queued again as owed work meanwhile): that
            # twin will do it, so this one ends here instead of being queued twice.
            await app.job_manager.finish_job(job, status=Status.FAILED, delete_job=False)


async def _expire(runtime: Runtime) -> None:
    # Resumable uploads nobody finished: their parts are removed (idempotent, so several
    # workers may do it at once).
    await asyncio.to_thread(expire_uploads, runtime)


async def _owed(runtime: Runtime, queue: JobQueue) -> None:
    owed = await asyncio.to_thread(defer_unfinished, runtime, queue)
    if owed:
        _log.info("queued unfinished work", jobs=len(owed))


async def _stale_intents(runtime: Runtime) -> None:
    for line in await asyncio.to_thread(settle_completions, runtime):
        _log.info("settled a resumable upload nobody completed", outcome=line)
    for line in await asyncio.to_thread(settle_pending, runtime, stale_only=True):
        _log.info("settled a stale upload intent", outcome=line)
