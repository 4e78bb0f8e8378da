"""Benchmark: what completing a resumable (tus) upload costs, against a form upload.

A tus upload keeps no hash state between requests: when the last byte arrives the
server reads every stored part back, in order, through the ordinary intake pipe
(SHA-256, SHA-512, the final object with retention) and records the evidence. This
measures that re-read: the file is sent in 8 MiB PATCHes but for its last byte, then
the final one-byte PATCH is timed (it is almost all completion). For scale, the same
bytes are uploaded once through POST /v1/evidence, and the whole tus upload is timed
too. No target: the issue asks what the rebuild costs.

    .venv/bin/python bench/tus_completion.py [--mib 256] [--runs 3] [--backend s3|embedded]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from contextlib import ExitStack
from pathlib import Path

from _locker import start_locker
from _report import Row, print_context, print_table
from _upload import make_unique, tus_upload, upload, write_random_file


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--backend", choices=["s3", "embedded"], default="s3")
    args = parser.parse_args()
    print_context()
    with tempfile.TemporaryDirectory() as scratch, ExitStack() as stack:
        root = Path(scratch)
        locker = start_locker(stack, root, backend=args.backend, database="bench_tus")
        path = root / "file.bin"
        write_random_file(path, args.mib)
        times: dict[str, list[float]] = {"form": [], "tus": [], "completion": []}
        for run in range(args.runs):
            times["form"].append(upload(locker, path, sha256=make_unique(path, 2 * run + 1)))
            whole, last = tus_upload(locker, path, make_unique(path, 2 * run + 2))
            times["tus"].append(whole)
            times["completion"].append(last)
    median = {name: statistics.median(values) for name, values in times.items()}
    rows = [
        Row(label="POST /v1/evidence, whole file", value=f"{median['form']:.2f} s"),
        Row(label="tus, whole upload (8 MiB PATCHes)", value=f"{median['tus']:.2f} s"),
        Row(
            label="tus, completion (re-read + record)",
            value=f"{median['completion']:.2f} s ({args.mib / median['completion']:.0f} MiB/s)",
        ),
    ]
    print_table(f"{args.mib} MiB, {args.backend}, median of {args.runs}", rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
