"""Benchmark: the server's memory during a 1 GiB upload, on S3 and on the embedded default.

Target: the locker process's peak resident set during a 1 GiB upload through
POST /v1/evidence is at most 64 MiB above its idle RSS, measured right before the
upload (after a small warm-up upload). VmRSS of the server process is sampled from
/proc/<pid>/status every 20 ms; the kernel's high-water mark (VmHWM, reset before the
upload) is reported beside it and catches spikes between samples.

Backends: PostgreSQL + SeaweedFS (S3), and the embedded default (SQLite + filesystem).

    .venv/bin/python bench/upload_memory.py [--mib 1024] [--backend s3|embedded|both]
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from _locker import Locker, embedded_environment, run_locker, s3_environment, scratch_database
from _report import Row, print_context, print_table
from _upload import RssSampler, make_unique, rss_mib, upload, write_random_file

from tests.seaweed import run_seaweed

_TARGET_GROWTH_MIB = 64.0


@dataclass(frozen=True, slots=True, kw_only=True)
class MemoryResult:
    backend: str
    idle_mib: float
    sampled_peak_mib: float
    high_water_mib: float
    samples: int
    seconds: float


@contextmanager
def _locker(backend: str, scratch: Path) -> Iterator[Locker]:
    """A running locker on `backend`, with its own data directory (and S3, database)."""
    data_dir, log_path = scratch / f"{backend}-data", scratch / f"{backend}.log"
    with ExitStack() as stack:
        if backend == "embedded":
            env = embedded_environment(data_dir)
        else:
            database_url = stack.enter_context(scratch_database("bench_memory"))
            s3 = stack.enter_context(run_seaweed(scratch / "s3"))
            env = s3_environment(s3, database_url=database_url, data_dir=data_dir)
        yield stack.enter_context(run_locker(env, log_path=log_path))


def _measure(backend: str, scratch: Path, path: Path, sha256: str) -> MemoryResult:
    with _locker(backend, scratch) as locker:
        print(f"{backend}: locker pid {locker.pid} at {locker.url}")
        warm_up = scratch / "warm-up.bin"
        write_random_file(warm_up, 1)
        upload(locker, warm_up, sha256=make_unique(warm_up, 1))
        idle = rss_mib(locker.pid)
        with RssSampler(locker.pid) as sampler:
            seconds = upload(locker, path, sha256=sha256)
    return MemoryResult(
        backend=backend,
        idle_mib=idle,
        sampled_peak_mib=sampler.peak.sampled_mib,
        high_water_mib=sampler.peak.high_water_mib,
        samples=sampler.peak.samples,
        seconds=seconds,
    )


def _rows(result: MemoryResult, mib: int) -> list[Row]:
    name, target = result.backend, f"<= {_TARGET_GROWTH_MIB:.0f} MiB"
    sampled = result.sampled_peak_mib - result.idle_mib
    high_water = result.high_water_mib - result.idle_mib
    return [
        Row(label=f"{name}: idle RSS", value=f"{result.idle_mib:.1f} MiB"),
        Row(
            label=f"{name}: sampled peak RSS ({result.samples} samples)",
            value=f"{result.sampled_peak_mib:.1f} MiB",
        ),
        Row(label=f"{name}: VmHWM during upload", value=f"{result.high_water_mib:.1f} MiB"),
        Row(
            label=f"{name}: sampled peak - idle",
            value=f"{sampled:.1f} MiB",
            target=target,
            met=sampled <= _TARGET_GROWTH_MIB,
        ),
        Row(
            label=f"{name}: VmHWM - idle",
            value=f"{high_water:.1f} MiB",
            target=target,
            met=high_water <= _TARGET_GROWTH_MIB,
        ),
        Row(label=f"{name}: upload rate", value=f"{mib / result.seconds:.1f} MiB/s"),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=1024, help="size of the upload")
    parser.add_argument("--backend", choices=("s3", "embedded", "both"), default="both")
    args = parser.parse_args()
    backends = ("s3", "embedded") if args.backend == "both" else (args.backend,)
    print_context()
    results: list[MemoryResult] = []
    with tempfile.TemporaryDirectory(prefix="locker-bench-") as scratch_dir:
        scratch = Path(scratch_dir)
        path = scratch / "upload.bin"
        write_random_file(path, args.mib)
        for number, backend in enumerate(backends):
            sha256 = make_unique(path, number + 2)
            results.append(_measure(backend, scratch, path, sha256))
    rows = [row for result in results for row in _rows(result, args.mib)]
    return 0 if print_table(f"server memory during a {args.mib} MiB upload", rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
