"""Benchmark: custody appends under concurrency, at the log layer and through HTTP.

Targets (the log issue):
- log layer, 16 concurrent writers on PostgreSQL (fsync and synchronous_commit on), each
  append durable (committed) before it counts: >= 2,000 appends/s, p99 <= 50 ms;
- through HTTP, in one run on one server: 16 writers creating incidents reach >= 0.9x
  the requests/s of 16 readers doing an authenticated read, with append p99 <= 2x the
  read p99.

The log layer is `CustodyLog.append` in its own transaction, as every use case calls it.
The HTTP part starts `locker serve` as a separate process on PostgreSQL (the embedded
filesystem store: incidents store no bytes) and runs writers and readers at once.

    .venv/bin/python bench/log_throughput.py [--writers 16] [--seconds 10]
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import Manager, get_context
from pathlib import Path
from threading import Barrier as BarrierType

import httpx
from _locker import run_locker, scratch_database
from _report import Row, percentile, print_context, print_table

from service.accounts.members import bootstrap
from service.runtime import Runtime, open_runtime
from service.settings import Settings

Operation = Callable[[int], None]


def _hammer(
    threads: int,
    seconds: float,
    make: Callable[[int], Operation],
    start: Callable[[], None] = lambda: None,
) -> list[list[float]]:
    """Run `threads` loops for `seconds`; per loop, each completed call's latency (ms).

    Each loop makes one call first, unmeasured (connections, the sequencer); then all
    start together once `start` has returned.
    """
    latencies: list[list[float]] = [[] for _ in range(threads)]
    warm = threading.Barrier(threads + 1)
    go = threading.Event()
    deadline = 0.0

    def loop(number: int) -> None:
        operation, done = make(number), latencies[number]
        operation(-1)
        warm.wait()
        go.wait()
        while time.monotonic() < deadline:
            started = time.perf_counter()
            operation(len(done))
            done.append((time.perf_counter() - started) * 1000)

    workers = [threading.Thread(target=loop, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    warm.wait()
    start()
    deadline = time.monotonic() + seconds
    go.set()
    for worker in workers:
        worker.join()
    return latencies


def _append_loops(
    url: str,
    data_dir: Path,
    org_id: str,
    first: int,
    count: int,
    seconds: float,
    start: BarrierType,
) -> list[float]:
    """`count` writer loops in this process, numbered from `first`: their latencies (ms).

    They start measuring when every process has passed `start`, so the processes' runs
    overlap (each one takes seconds to import and connect on a busy machine).
    """
    runtime: Runtime = open_runtime(Settings(data_dir=data_dir, database_url=url), migrate=False)
    try:

        def make(number: int) -> Operation:
            def append(n: int) -> None:
                with runtime.database.session() as session:
                    runtime.log.append(
                        session,
                        organisation_id=org_id,
                        actor=f"user:bench-{first + number}",
                        action="incident.created",
                        subjects=[f"incident:bench-{first + number}-{n}"],
                    )

            return append

        return [ms for loop in _hammer(count, seconds, make, start.wait) for ms in loop]
    finally:
        runtime.close()


def _log_layer(url: str, data_dir: Path, args: argparse.Namespace) -> list[Row]:
    runtime: Runtime = open_runtime(Settings(data_dir=data_dir, database_url=url))
    try:
        organisation = bootstrap(runtime, organisation="Bench", email="b@example.org")
        org_id = organisation.organisation_id
        # Writers in several processes, as a deployment runs them: one Python process's
        # threads share one interpreter lock. This process's sequencer integrates.
        shares = [args.writers // args.processes] * args.processes
        shares[0] += args.writers - sum(shares)
        firsts = [sum(shares[:n]) for n in range(args.processes)]
        with (
            Manager() as manager,
            ProcessPoolExecutor(args.processes, mp_context=get_context("spawn")) as pool,
        ):
            start = manager.Barrier(args.processes)
            futures = [
                pool.submit(_append_loops, url, data_dir, org_id, first, share, args.seconds, start)
                for first, share in zip(firsts, shares, strict=True)
            ]
            latencies = [ms for future in futures for ms in future.result()]
    finally:
        runtime.close()
    rate = len(latencies) / args.seconds
    p99 = percentile(latencies, 0.99)
    return [
        Row(
            label=f"log layer: {args.writers} writers in {args.processes} processes, appends/s",
            value=f"{rate:.0f}",
            target=">= 2000",
            met=rate >= 2000,
        ),
        Row(label="log layer: append p99", value=f"{p99:.1f} ms", target="<= 50 ms", met=p99 <= 50),
    ]


def _http(url: str, data_dir: Path, args: argparse.Namespace) -> list[Row]:
    env = {"LOCKER_DATA_DIR": str(data_dir), "LOCKER_DATABASE_URL": url}
    with run_locker(env, log_path=data_dir / "locker.log") as locker:
        headers = {"Authorization": f"Bearer {locker.api_key}"}
        with httpx.Client(base_url=locker.url, headers=headers) as client:
            created = client.post("/v1/incidents", json={"title": "read me"})
            created.raise_for_status()
            incident_id = created.json()["id"]
        clients: list[httpx.Client] = []
        lock = threading.Lock()

        def client_for() -> httpx.Client:
            client = httpx.Client(base_url=locker.url, headers=headers, timeout=60)
            with lock:
                clients.append(client)
            return client

        def make(number: int) -> Operation:
            client = client_for()
            if number < args.writers:

                def write(n: int) -> None:
                    response = client.post("/v1/incidents", json={"title": f"w{number}-{n}"})
                    assert response.status_code == 201, response.text

                return write

            def read(n: int) -> None:
                response = client.get(f"/v1/incidents/{incident_id}")
                assert response.status_code == 200, response.text

            return read

        # One run, writers and readers at once: loops below `writers` write, the rest read.
        loops = _hammer(2 * args.writers, args.seconds, make)
        for client in clients:
            client.close()
    writes = [ms for loop in loops[: args.writers] for ms in loop]
    reads = [ms for loop in loops[args.writers :] for ms in loop]
    write_rate, read_rate = len(writes) / args.seconds, len(reads) / args.seconds
    ratio = write_rate / read_rate
    tail = percentile(writes, 0.99) / percentile(reads, 0.99)
    return [
        Row(label="HTTP: incident creations/s", value=f"{write_rate:.0f}"),
        Row(label="HTTP: authenticated reads/s", value=f"{read_rate:.0f}"),
        Row(
            label="HTTP: writes/s ÷ reads/s",
            value=f"{ratio:.2f}",
            target=">= 0.9",
            met=ratio >= 0.9,
        ),
        Row(
            label="HTTP: p99 write ÷ p99 read",
            value=f"{tail:.2f} ({percentile(writes, 0.99):.0f} / {percentile(reads, 0.99):.0f} ms)",
            target="<= 2",
            met=tail <= 2,
        ),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writers", type=int, default=16, help="concurrent writers (and readers)")
    parser.add_argument(
        "--processes", type=int, default=4, help="processes the log-layer writers run in"
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each run")
    args = parser.parse_args()
    print_context()
    rows: list[Row] = []
    for part in (_log_layer, _http):
        with (
            tempfile.TemporaryDirectory(prefix="locker-bench-") as data_dir,
            scratch_database("bench_log") as url,
        ):
            rows += part(url, Path(data_dir), args)
    return 0 if print_table("custody appends under concurrency", rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
