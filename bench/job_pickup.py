"""Benchmark: how soon a worker starts a job after it was queued.

Target (the operations issue): a job's pick-up latency p99 <= 1 s.

One `locker serve` (no jobs of its own) and one `locker worker` on PostgreSQL and the
filesystem store. Uploads of small new photos arrive at a steady rate; each upload's
request queues its analysis job after its commit. The pick-up latency of a job is the
time from its `deferred` event to its `started` event, both written by PostgreSQL in
procrastinate's event table (one clock: the database's); the job's run time (started to
succeeded) is shown beside it. Keep the rate below what one worker can run (its
concurrency, 2, divided by the run time), or the figure measures a backlog rather than
the pick-up.

    .venv/bin/python bench/job_pickup.py [--jobs 40] [--rate 0.5]
"""

from __future__ import annotations

import argparse
import io
import os
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import httpx
import psycopg
from _locker import bootstrap_key, locker_process, scratch_database, serve_locker
from _report import Row, percentile, print_context, print_table
from PIL import Image

# Per analysis job, in milliseconds by the database's clock: deferred -> started (the
# pick-up), and started -> succeeded (the job itself, to tell a pick-up from a backlog).
_TIMES = """
SELECT extract(epoch FROM started.at - deferred.at) * 1000,
       extract(epoch FROM ended.at - started.at) * 1000
FROM procrastinate_jobs job
JOIN procrastinate_events deferred ON deferred.job_id = job.id AND deferred.type = 'deferred'
JOIN procrastinate_events started ON started.job_id = job.id AND started.type = 'started'
JOIN procrastinate_events ended ON ended.job_id = job.id AND ended.type = 'succeeded'
WHERE job.task_name = 'analyse_evidence'
"""


def _photo() -> bytes:
    """A small PNG of new pixels: a type the worker analyses, never a duplicate."""
    out = io.BytesIO()
    Image.frombytes("RGB", (32, 32), os.urandom(32 * 32 * 3)).save(out, format="PNG")
    return out.getvalue()


def _queue_jobs(url: str, key: str, jobs: int, rate: float) -> None:
    """`jobs` uploads, one every 1/rate seconds: each queues one analysis job."""
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}) as client:
        start = time.monotonic()
        for n in range(jobs):
            time.sleep(max(0.0, start + n / rate - time.monotonic()))
            files = [("file", (f"photo-{n}.png", _photo(), "image/png"))]
            answer = client.post("/v1/evidence", files=files)
            assert answer.status_code == 201, answer.text


def _wait_for_worker(database_url: str) -> None:
    """Until the worker has registered: its start-up is not a pick-up."""
    deadline = time.monotonic() + 120
    with psycopg.connect(database_url, autocommit=True) as connection:
        while not connection.execute("SELECT 1 FROM procrastinate_workers").fetchone():
            if time.monotonic() > deadline:
                raise RuntimeError("the worker did not start")
            time.sleep(0.2)


def _job_times(database_url: str, jobs: int) -> tuple[list[float], list[float]]:
    """Each analysis job's pick-up latency and run time (ms), once every job has run."""
    deadline = time.monotonic() + 300
    with psycopg.connect(database_url, autocommit=True) as connection:
        while True:
            rows = [(float(p), float(r)) for p, r in connection.execute(_TIMES)]
            if len(rows) >= jobs or time.monotonic() > deadline:
                return [p for p, _ in rows], [r for _, r in rows]
            time.sleep(0.5)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=40, help="jobs to queue")
    parser.add_argument("--rate", type=float, default=0.5, help="jobs queued per second")
    args = parser.parse_args()
    print_context()
    with ExitStack() as stack:
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="locker-bench-")))
        database_url = stack.enter_context(scratch_database("bench_jobs"))
        env = {
            "LOCKER_DATA_DIR": str(scratch / "data"),
            "LOCKER_DATABASE_URL": database_url,
            "LOCKER_JOBS_IN_PROCESS": "false",
        }
        key = bootstrap_key(env)
        log = scratch / "processes.log"
        url, _ = stack.enter_context(serve_locker(env, log_path=log))
        stack.enter_context(locker_process(["worker"], env, log_path=log))
        _wait_for_worker(database_url)
        _queue_jobs(url, key, args.jobs, args.rate)
        latencies, run_times = _job_times(database_url, args.jobs)
    if not latencies:
        print("no analysis job ran")
        return 1
    p50, p99 = percentile(latencies, 0.5), percentile(latencies, 0.99)
    rows = [
        Row(label="jobs run / queued", value=f"{len(latencies)} / {args.jobs}"),
        Row(
            label="job run time p50 / p99",
            value=f"{percentile(run_times, 0.5):.0f} / {percentile(run_times, 0.99):.0f} ms",
        ),
        Row(label=f"queued at {args.rate:g}/s: pick-up p50", value=f"{p50:.0f} ms"),
        Row(
            label=f"queued at {args.rate:g}/s: pick-up p99",
            value=f"{p99:.0f} ms",
            target="<= 1000 ms",
            met=p99 <= 1000 and len(latencies) == args.jobs,
        ),
        Row(label="pick-up max", value=f"{max(latencies):.0f} ms"),
    ]
    return 0 if print_table("job pick-up latency, one worker", rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
