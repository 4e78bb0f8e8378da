"""The locker's jobs: what runs after a request has been answered, and how often to retry.

Each job is a plain function over the Runtime, safe to run twice (a retried or
re-deferred job finds its work done and returns), so the queue may deliver it at least
once. The queue (service.jobs.queue) decides where it runs: in a `locker worker`, in the
server's own process, or in-process on the embedded default.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import structlog
from sqlmodel import col, select

from service.db.models import Export
from service.evidence.extraction import analyse_evidence, pending_analysis
from service.exports.bundles import build_export

if TYPE_CHECKING:
    from service.runtime import Runtime

_log = structlog.get_logger("locker.jobs")


@dataclass(frozen=True, slots=True, kw_only=True)
class Attempt:
    """Which try this is: the last one records a failure for good."""

    number: int
    final: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class Job:
    """A kind of job: its name on the queue, its work and its retry budget."""

    name: str
    run: Callable[..., None]
    attempts: int
    # One queued job per subject (e.g. per export): deferring it again is a no-op.
    lock_by: str | None = None


def _build_export(runtime: Runtime, attempt: Attempt, *, export_id: str) -> None:
    with runtime.database.session() as session:
        export = session.get(Export, export_id)
        if export is None or export.status in {"done", "failed"}:
            return  # already settled by an earlier delivery
    build_export(runtime, export_id, final=attempt.final)


def _analyse(runtime: Runtime, attempt: Attempt, *, evidence_id: str) -> None:
    analyse_evidence(runtime, evidence_id)


BUILD_EXPORT = Job(name="build_export", run=_build_export, attempts=5, lock_by="export_id")
ANALYSE = Job(name="analyse_evidence", run=_analyse, attempts=3, lock_by="evidence_id")
JOBS = {job.name: job for job in (BUILD_EXPORT, ANALYSE)}


@dataclass(frozen=True, slots=True, kw_only=True)
class Deferral:
    """A job to queue, with its arguments."""

    job: Job
    arguments: dict[str, str]


def unfinished_work(runtime: Runtime) -> list[Deferral]:
    """Work the database says is owed: exports not settled, items not analysed.

    Deferring is not in the request's transaction, so a crash between commit and defer
    could drop a job; queueing this list again (periodically and at start) picks such
    work up. Queue locks make a job that is still queued a no-op to defer again.
    """
    with runtime.database.session() as session:
        exports = session.exec(
            select(Export.id).where(col(Export.status).in_(["pending", "retrying"]))
        ).all()
    owed = [Deferral(job=BUILD_EXPORT, arguments={"export_id": e}) for e in exports]
    owed += [Deferral(job=ANALYSE, arguments={"evidence_id": e}) for e in pending_analysis(runtime)]
    return owed
