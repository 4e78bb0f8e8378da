"""Benchmark: what completing a resumable (tus) upload costs, against a form upload.

A tus upload's PATCHes store its bytes once, as pieces of the object at its key, and
the receiving process keeps their running digests. When the last byte arrives the
pieces are joined where they are and the evidence is recorded; only if the last PATCH
lands on a process that did not receive every byte (another process, or after a
restart) is the joined object read back once to digest it. This times the final
one-byte PATCH both ways: sent to the process that received the rest, and sent to a
second `locker serve` on the same database and store. For scale, the same bytes are
uploaded once through POST /v1/evidence, and the whole tus upload is timed too. No
target: the issue asks what rebuilding the digests costs.

    .venv/bin/python bench/tus_completion.py [--mib 256] [--runs 3] [--backend s3|embedded]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from contextlib import ExitStack
from pathlib import Path

from _locker import serve_locker, start_locker
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
        other, _ = stack.enter_context(serve_locker(locker.env, log_path=root / "other.log"))
        path = root / "file.bin"
        write_random_file(path, args.mib)
        times: dict[str, list[float]] = {"form": [], "tus": [], "kept": [], "read back": []}
        for run in range(args.runs):
            times["form"].append(upload(locker, path, sha256=make_unique(path, 3 * run + 1)))
            whole, last = tus_upload(locker, path, make_unique(path, 3 * run + 2))
            times["tus"].append(whole)
            times["kept"].append(last)
            _, last = tus_upload(locker, path, make_unique(path, 3 * run + 3), finish_at=other)
            times["read back"].append(last)
    median = {name: statistics.median(values) for name, values in times.items()}
    rows = [
        Row(label="POST /v1/evidence, whole file", value=f"{median['form']:.2f} s"),
        Row(label="tus, whole upload (8 MiB PATCHes)", value=f"{median['tus']:.2f} s"),
        Row(label="tus, completion, same process", value=f"{median['kept']:.2f} s"),
        Row(
            label="tus, completion on another process (read back + record)",
            value=f"{median['read back']:.2f} s ({args.mib / median['read back']:.0f} MiB/s)",
        ),
    ]
    print_table(f"{args.mib} MiB, {args.backend}, median of {args.runs}", rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
