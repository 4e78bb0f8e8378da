"""Benchmark: a mixed load on one `locker serve`, then on two, in the same run.

Target (the operations issue): with two API processes on this machine, requests/s for a
mixed load (uploads of small files, reads, proofs) >= 1.6x one process's figure in the
same run.

Both phases run on one PostgreSQL database and one SeaweedFS with Object Lock, each
process with the signing key given as LOCKER_SIGNING_KEY_FILE and no jobs of its own
(LOCKER_JOBS_IN_PROCESS=false, no worker: the analysis jobs the uploads queue wait in
the database, so the API processes alone share the CPUs). Each client loops over an
upload of 4 KiB of new bytes, a read of that item's record, and an inclusion proof of
its entry in the latest checkpoint; in the second phase the clients alternate between
the two servers, request by request.

    .venv/bin/python bench/replicas.py [--clients 16] [--seconds 20]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path

import httpx
from _locker import bootstrap_key, scratch_database, serve_locker
from _report import Row, percentile, print_context, print_table

from tests.seaweed import SeaweedServer, run_seaweed

_SMALL = 4096


def _settings(s3: SeaweedServer, database_url: str, scratch: Path, name: str) -> dict[str, str]:
    return {
        "LOCKER_DATA_DIR": str(scratch / name),
        "LOCKER_SIGNING_KEY_FILE": str(scratch / "log-signing-key"),
        "LOCKER_DATABASE_URL": database_url,
        "LOCKER_S3_ENDPOINT": s3.endpoint,
        "LOCKER_S3_ACCESS_KEY": s3.access_key,
        "LOCKER_S3_SECRET_KEY": s3.secret_key,
        "LOCKER_S3_BUCKET": "bench-replicas",
        "LOCKER_S3_SECURE": "false",
        "LOCKER_JOBS_IN_PROCESS": "false",
    }


_Latencies = dict[str, list[float]]


def _cycle(sessions: list[httpx.Client], turn: int, latencies: _Latencies) -> None:
    """One upload, one read of it, one proof of its entry, alternating servers."""
    started = time.perf_counter()
    files = [("file", ("small.bin", os.urandom(_SMALL), "application/octet-stream"))]
    item = sessions[turn % len(sessions)].post("/v1/evidence", files=files)
    assert item.status_code == 201, item.text
    latencies["upload"].append((time.perf_counter() - started) * 1000)
    client = sessions[(turn + 1) % len(sessions)]
    started = time.perf_counter()
    read = client.get(f"/v1/evidence/{item.json()['id']}")
    assert read.status_code == 200, read.text
    latencies["read"].append((time.perf_counter() - started) * 1000)
    started = time.perf_counter()
    size = int(client.get("/log/checkpoint").text.splitlines()[1])
    index = item.json()["custody_index"]
    proof = client.get("/v1/custody/proof/inclusion", params={"index": index, "tree_size": size})
    assert proof.status_code == 200, proof.text
    latencies["proof"].append((time.perf_counter() - started) * 1000)


def _mixed_load(urls: list[str], key: str, clients: int, seconds: float) -> _Latencies:
    """Every client's upload, read and proof latencies (ms), alternating over `urls`.

    A proof is two requests (the checkpoint, then the proof), timed together."""
    per_client: list[_Latencies] = [{"upload": [], "read": [], "proof": []} for _ in range(clients)]
    deadline = time.monotonic() + seconds
    headers = {"Authorization": f"Bearer {key}"}

    def loop(number: int) -> None:
        sessions = [httpx.Client(base_url=u, headers=headers, timeout=60) for u in urls]
        turn = number
        try:
            while time.monotonic() < deadline:
                turn += 1
                _cycle(sessions, turn, per_client[number])
        finally:
            for session in sessions:
                session.close()

    threads = [threading.Thread(target=loop, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {k: [ms for c in per_client for ms in c[k]] for k in ("upload", "read", "proof")}


def _rows(name: str, latencies: dict[str, list[float]], seconds: float) -> tuple[float, list[Row]]:
    # A proof took two requests: the checkpoint and the proof.
    requests = len(latencies["upload"]) + len(latencies["read"]) + 2 * len(latencies["proof"])
    rate = requests / seconds
    tails = ", ".join(f"{k} {percentile(v, 0.99):.0f}" for k, v in latencies.items() if v)
    return rate, [
        Row(label=f"{name}: requests/s (upload, read, proof)", value=f"{rate:.0f}"),
        Row(label=f"{name}: p99 per kind (ms)", value=tails),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each phase")
    args = parser.parse_args()
    print_context()
    with ExitStack() as stack:
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="locker-bench-")))
        s3 = stack.enter_context(run_seaweed(scratch / "s3"))
        database_url = stack.enter_context(scratch_database("bench_replicas"))
        envs = [_settings(s3, database_url, scratch, name) for name in ("a", "b")]
        key = bootstrap_key(envs[0])
        log = scratch / "servers.log"
        first, _ = stack.enter_context(serve_locker(envs[0], log_path=log))
        _mixed_load([first], key, args.clients, 3)  # warm-up: connections, caches
        one = _mixed_load([first], key, args.clients, args.seconds)
        one_rate, rows = _rows("one server", one, args.seconds)
        second, _ = stack.enter_context(serve_locker(envs[1], log_path=log))
        _mixed_load([first, second], key, args.clients, 3)
        two = _mixed_load([first, second], key, args.clients, args.seconds)
        two_rate, more = _rows("two servers", two, args.seconds)
    ratio = two_rate / one_rate
    rows += more
    rows.append(
        Row(
            label="two servers ÷ one server",
            value=f"{ratio:.2f}",
            target=">= 1.6",
            met=ratio >= 1.6,
        )
    )
    return 0 if print_table("mixed load on one and on two API processes", rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
