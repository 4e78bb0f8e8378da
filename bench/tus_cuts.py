"""Benchmark: a large file sent with `locker upload` over a network that drops it 20 times.

Target: a 5 GiB upload whose connection is cut 20 times completes (recorded as new
evidence, its receipt verified against the log's key), with under 1.1x the file's bytes
sent. The locker is a separate process; `service.client.uploader.upload` (what `locker
upload` runs) talks to it through a loopback proxy that counts every byte the client
sends and cuts the connection each time another twenty-first of the file has crossed.
The client runs as in the field: its default tries, and its real waits after each cut.

    .venv/bin/python bench/tus_cuts.py [--mib 5120] [--cuts 20] [--backend s3|embedded]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import httpx
from _locker import start_locker
from _report import Row, print_context, print_table
from _upload import MIB, write_random_file

from service.client.uploader import upload
from service.core.checkpoint import parse_verifier_keys
from tests.cutting_proxy import cutting_proxy

_TARGET_RATIO = 1.1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=5 * 1024)
    parser.add_argument("--cuts", type=int, default=20)
    parser.add_argument("--backend", choices=["s3", "embedded"], default="s3")
    args = parser.parse_args()
    print_context()
    with tempfile.TemporaryDirectory() as scratch, ExitStack() as stack:
        root = Path(scratch)
        locker = start_locker(
            stack,
            root,
            backend=args.backend,
            database="bench_tus_cuts",
            LOCKER_MAX_UPLOAD_BYTES=str((args.mib + 1) * MIB),
        )
        verifier = parse_verifier_keys(httpx.get(f"{locker.url}/v1/custody/verifier-key").text)
        path = root / "video.mp4"
        write_random_file(path, args.mib)
        size = path.stat().st_size
        cuts = [size * (n + 1) // (args.cuts + 1) for n in range(args.cuts)]
        waits: list[float] = []
        with cutting_proxy(locker.url, cuts=cuts) as proxy:
            started = time.perf_counter()
            done = upload(
                proxy.url,
                path,
                api_key=locker.api_key,
                verifier=verifier,
                # Its default tries (5), counted afresh whenever the upload moves on.
                on_retry=lambda _reason, wait: waits.append(wait),
                state_folder=root / "state",
            )
            seconds = time.perf_counter() - started
    if done.answer.get("duplicate") or done.facts.entry["action"] != "evidence.ingested":
        raise RuntimeError(f"not recorded as new evidence: {done.answer}")
    ratio = proxy.sent / size
    rows = [
        Row(label="connections cut", value=f"{proxy.cut} of {args.cuts}"),
        Row(label="attempts (resumptions + 1)", value=str(done.attempts)),
        Row(label="whole upload, cuts and waits included", value=f"{seconds:.1f} s"),
        Row(label="of which the client's waits after cuts", value=f"{sum(waits):.1f} s"),
        Row(
            label="bytes sent / file size",
            value=f"{ratio:.4f} ({proxy.sent:,} for {size:,})",
            target=f"< {_TARGET_RATIO}",
            met=ratio < _TARGET_RATIO and proxy.cut == args.cuts,
        ),
    ]
    met = print_table(f"{args.mib} MiB over tus, {args.backend}, {args.cuts} cuts", rows)
    return 0 if met else 1


if __name__ == "__main__":
    raise SystemExit(main())
