"""Benchmark: upload throughput through the API against S3 straight, on the same server.

Targets: a 256 MiB upload through POST /v1/evidence (locker on PostgreSQL and SeaweedFS,
a separate process) runs at no less than 0.85x the throughput of putting the same bytes
with the minio client straight to the same S3 server (16 MiB parts, length known), both
plain and with the optional `sha256` part sent first (the digest an investigator's
client computed in the field); over tus (/v1/uploads) in 8 MiB PATCH requests, no less
than 0.8x. Each is run `--runs` times, alternating; medians are compared. Every API
upload has new content (its first 8 bytes change), so deduplication cannot shortcut it.

    .venv/bin/python bench/upload_throughput.py [--mib 256] [--runs 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from _locker import Locker, run_locker, s3_environment, scratch_database
from _report import Row, print_context, print_table
from _upload import MIB, make_unique, tus_upload, upload, write_random_file
from minio import Minio

from tests.seaweed import SeaweedServer, run_seaweed

# The targets, as fractions of the raw put's throughput.
_TARGETS = {"api": 0.85, "api + sha256 part": 0.85, "tus, 8 MiB PATCHes": 0.8}
_RAW_BUCKET = "bench-raw"
_PART_SIZE = 16 * MIB


def _raw_put(client: Minio, path: Path, name: str) -> float:
    """put_object of the file straight to S3 (length known, 16 MiB parts); seconds."""
    size = path.stat().st_size
    started = time.perf_counter()
    with path.open("rb") as handle:
        client.put_object(_RAW_BUCKET, name, handle, length=size, part_size=_PART_SIZE)
    return time.perf_counter() - started


def _warm_up(locker: Locker, client: Minio, scratch: Path) -> None:
    """One small write each way: first connections and SeaweedFS volume growth."""
    small = scratch / "warm-up.bin"
    write_random_file(small, 1)
    upload(locker, small, sha256=make_unique(small, 1))
    _raw_put(client, small, "warm-up")


def _measure(locker: Locker, client: Minio, path: Path, runs: int) -> dict[str, list[float]]:
    """Seconds per run for each way of uploading, interleaved run by run."""
    times: dict[str, list[float]] = {name: [] for name in [*_TARGETS, "raw"]}
    for run in range(runs):
        sha256 = make_unique(path, 3 * run + 2)
        times["api"].append(upload(locker, path, sha256=sha256))
        sha256 = make_unique(path, 3 * run + 3)
        times["api + sha256 part"].append(upload(locker, path, sha256=sha256, send_sha256=True))
        sha256 = make_unique(path, 3 * run + 4)
        times["tus, 8 MiB PATCHes"].append(tus_upload(locker, path, sha256)[0])
        times["raw"].append(_raw_put(client, path, f"raw-{run}"))
        seconds = ", ".join(f"{name} {t[-1]:.2f} s" for name, t in times.items())
        print(f"run {run + 1}/{runs}: {seconds}")
    return times


def _report(times: dict[str, list[float]], mib: int) -> bool:
    rate = {name: mib / statistics.median(seconds) for name, seconds in times.items()}
    rows = [
        Row(label=f"{name} MiB/s (median)", value=f"{value:.1f}") for name, value in rate.items()
    ]
    for name, target in _TARGETS.items():
        ratio = rate[name] / rate["raw"]
        rows.append(
            Row(
                label=f"{name} / raw",
                value=f"{ratio:.2f}",
                target=f">= {target}",
                met=ratio >= target,
            )
        )
    return print_table(f"upload of {mib} MiB, {len(times['api'])} runs each", rows)


def _client(s3: SeaweedServer) -> Minio:
    client = s3.client()
    client.make_bucket(_RAW_BUCKET, object_lock=True)  # versioned, like the locker's bucket
    return client


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=256, help="size of the upload")
    parser.add_argument("--runs", type=int, default=3, help="runs of each way, alternating")
    args = parser.parse_args()
    print_context()
    with (
        tempfile.TemporaryDirectory(prefix="locker-bench-") as scratch_dir,
        scratch_database("bench_upload") as database_url,
    ):
        scratch = Path(scratch_dir)
        path = scratch / "upload.bin"
        write_random_file(path, args.mib)
        with run_seaweed(scratch / "s3") as s3:
            env = s3_environment(s3, database_url=database_url, data_dir=scratch / "locker")
            with run_locker(env, log_path=scratch / "locker.log") as locker:
                print(f"locker pid {locker.pid} at {locker.url}; S3 at {s3.endpoint}")
                client = _client(s3)
                _warm_up(locker, client, scratch)
                times = _measure(locker, client, path, args.runs)
    return 0 if _report(times, args.mib) else 1


if __name__ == "__main__":
    raise SystemExit(main())
