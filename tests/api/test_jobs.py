"""Durable jobs: an export outlives the worker that was building it, says when it is
being retried and why, and is found again when its job was lost."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import httpx
import psycopg
import pytest
from sqlmodel import select

from service.accounts.members import authenticate_key, bootstrap
from service.db.models import Evidence
from service.exports.bundles import request_export
from service.runtime import Runtime
from tests.databases import PostgresTemplate, allow_connections
from tests.harness import Locker, serving
from tests.processes import (
    LOCKER,
    ROOT,
    bootstrap_key,
    locker_environment,
    locker_process,
    serving_process,
)


def _wait_status(
    client: httpx.Client, export_id: str, wanted: set[str], *, seconds: float = 90
) -> dict[str, object]:
    deadline = time.monotonic() + seconds
    while True:
        status = client.get(f"/v1/exports/{export_id}").json()
        if status["status"] in wanted:
            return dict(status)
        assert time.monotonic() < deadline, f"export stayed {status}"
        time.sleep(0.05)


def _exported_item(client: httpx.Client, content: bytes) -> tuple[str, str]:
    """Upload one item and request its bundle: (evidence id, export id)."""
    item = client.post("/v1/evidence", files=[("file", ("statement.txt", content, "x/y"))])
    assert item.status_code == 201, item.text
    export = client.post("/v1/exports", json={"evidence_ids": [item.json()["id"]]})
    assert export.status_code == 202, export.text
    return item.json()["id"], export.json()["id"]


@pytest.mark.parametrize("backend", ["sqlite-fs"], indirect=True)
def test_a_failing_export_says_it_is_retried_and_then_why_it_failed(
    make_locker: Callable[..., Locker],
) -> None:
    locker = make_locker(job_backoff_seconds=0.3)
    with locker.client() as client:
        item = client.post("/v1/evidence", files=[("file", ("a.txt", b"evidence " * 100, "x/y"))])
        evidence_id = item.json()["id"]
        # The stored object disappears (a broken disk): every build attempt fails.
        with locker.runtime.database.session() as session:
            evidence = session.exec(select(Evidence).where(Evidence.id == evidence_id)).one()
        stored = locker.runtime.settings.data_dir / "store" / "objects" / evidence.object_key
        stored.unlink()
        export_id = client.post("/v1/exports", json={"evidence_ids": [evidence_id]}).json()["id"]
        retrying = _wait_status(client, export_id, {"retrying", "failed"})
        assert retrying["status"] == "retrying", retrying
        assert "object" in str(retrying["error"]), retrying
        failed = _wait_status(client, export_id, {"failed", "done"})
    assert failed["status"] == "failed"
    assert failed["error"] and "\n" not in str(failed["error"])


@pytest.mark.parametrize("backend", ["sqlite-fs", "postgres-s3"], indirect=True)
def test_an_export_whose_job_was_lost_is_built_when_the_server_starts(
    make_runtime: Callable[..., Runtime],
) -> None:
    runtime = make_runtime()
    with serving(runtime) as url:  # a first server: an item to export
        key = _bootstrap_key(runtime)
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}) as client:
            item = client.post("/v1/evidence", files=[("file", ("a.txt", b"x" * 500, "x/y"))])
    # Recorded, but the process died before queueing the build.
    principal = authenticate_key(runtime, key)
    export = request_export(runtime, principal, incident_id=None, evidence_ids=[item.json()["id"]])
    with (
        serving(runtime) as url,
        httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}) as client,
    ):
        done = _wait_status(client, export.id, {"done", "failed"})
    assert done["status"] == "done", done


def _bootstrap_key(runtime: Runtime) -> str:
    return bootstrap(runtime, organisation="Lost Jobs", email="lead@example.org").api_key


def _being_built(database_url: str, export_id: str) -> bool:
    """Whether a worker holds a build job of this export (another may be queued behind)."""
    with psycopg.connect(database_url) as connection:
        row = connection.execute(
            "SELECT count(*) FROM procrastinate_jobs WHERE task_name = 'build_export'"
            " AND args->>'export_id' = %s AND status = 'doing'",
            (export_id,),
        ).fetchone()
    return row is not None and row[0] > 0


def test_an_export_survives_the_sigkill_of_its_worker(
    postgres_template: PostgresTemplate, tmp_path: Path
) -> None:
    with ExitStack() as stack:
        database_url = stack.enter_context(postgres_template.fresh())
        env = locker_environment(
            LOCKER_DATA_DIR=str(tmp_path / "data"),
            LOCKER_DATABASE_URL=database_url,
            LOCKER_JOBS_IN_PROCESS="false",  # only the workers run jobs
            LOCKER_JOB_HEARTBEAT_SECONDS="1",
        )
        key = bootstrap_key(env, "Jobs")
        log = tmp_path / "processes.log"
        url, _ = stack.enter_context(serving_process(env, log))
        first_worker = stack.enter_context(locker_process(["worker"], env, log))
        client = stack.enter_context(
            httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=120)
        )
        # Big enough that building its bundle takes a while.
        _, export_id = _exported_item(client, os.urandom(64 * 1024 * 1024))
        # Hold the export's row: the build can run, but cannot record its end.
        holder = stack.enter_context(psycopg.connect(database_url))
        holder.execute("SELECT id FROM export WHERE id = %s FOR UPDATE", (export_id,))
        deadline = time.monotonic() + 120
        while not _being_built(database_url, export_id):
            assert time.monotonic() < deadline, "the worker never picked the job up"
            time.sleep(0.01)
        time.sleep(1)  # mid-build, or waiting to record it
        first_worker.send_signal(signal.SIGKILL)
        first_worker.wait(timeout=10)
        holder.rollback()
        assert client.get(f"/v1/exports/{export_id}").json()["status"] == "pending"

        stack.enter_context(locker_process(["worker"], env, log))  # a replacement
        # A worker starts in seconds, sees the silent one's job after 3 heartbeats, rebuilds.
        status = _wait_status(client, export_id, {"done", "failed"}, seconds=300)
        assert status["status"] == "done", status
        bundle = client.get(f"/v1/exports/{export_id}/content")
        assert bundle.status_code == 200
        assert hashlib.sha256(bundle.content).hexdigest() == status["sha256"]
        # The killed worker's job ended (retried, or superseded by its queued twin), and
        # a build of this export succeeded.
        with psycopg.connect(database_url) as connection:
            states = [
                row[0]
                for row in connection.execute(
                    "SELECT status FROM procrastinate_jobs WHERE task_name = 'build_export'"
                    " AND args->>'export_id' = %s ORDER BY id",
                    (export_id,),
                )
            ]
        assert "succeeded" in states and "doing" not in states, states
        # The killed attempt may have left staging bytes (never a record): --repair drops
        # them, and then fsck finds nothing at all.
        for command in (["fsck", "--repair"], ["fsck"]):
            audit = subprocess.run(
                [*LOCKER, *command], env=env, cwd=ROOT, capture_output=True, text=True
            )
        assert audit.returncode == 0, audit.stdout + audit.stderr


def test_a_worker_that_loses_its_database_recovers_without_a_restart(
    postgres_template: PostgresTemplate, tmp_path: Path
) -> None:
    with ExitStack() as stack:
        database_url = stack.enter_context(postgres_template.fresh())
        database = database_url.rsplit("/", 1)[1]
        env = locker_environment(
            LOCKER_DATA_DIR=str(tmp_path / "data"),
            LOCKER_DATABASE_URL=database_url,
            LOCKER_JOBS_IN_PROCESS="false",  # only the worker runs jobs
            LOCKER_JOB_HEARTBEAT_SECONDS="1",
        )
        key = bootstrap_key(env, "Outage")
        log = tmp_path / "processes.log"
        url, _ = stack.enter_context(serving_process(env, log))
        worker = stack.enter_context(locker_process(["worker"], env, log))
        client = stack.enter_context(
            httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60)
        )
        _, before = _exported_item(client, b"built before the outage")
        assert _wait_status(client, before, {"done", "failed"})["status"] == "done"

        allow_connections(database, False)  # every connection of the worker is cut
        try:
            time.sleep(5)  # the worker's polling, heartbeats and housekeeping all fail
        finally:
            allow_connections(database, True)
        _, after = _exported_item(client, b"requested after the outage")
        status = _wait_status(client, after, {"done", "failed"}, seconds=120)
        assert status["status"] == "done", status
        assert worker.poll() is None, "the worker exited instead of recovering"
