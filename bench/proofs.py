"""Benchmark: inclusion and consistency proofs on a 1,000,000-entry log in PostgreSQL.

Target: p99 under 10 ms for each kind of proof at 1,000,000 entries and under 5 ms at
10,000,000 (`--entries 10000000 --target-ms 5`), served as the API serves it
(`service.evidence.reading.prove_inclusion` / `prove_consistency`: one session and transaction
per proof, through the runtime's connection pool). Tree sizes and indexes are random,
so every shape of proof appears (random tree sizes give long right borders).

The log is bulk-loaded with COPY (`_bulk_log.py`). Then `--appends` entries go through
the real `CustodyLog.append`, and the roots from stored nodes (`CustodyLog.root`) are
checked against a recomputation from the stored leaf bytes alone, before and after
those appends; sample proofs are verified against the recomputed roots. So the bulk
load is proven to be what the real append path would have built.

It also reports the database's bytes per entry (leaves, tree nodes and their indexes).

A large load takes long and keeps the CPUs busy, so `--keep` leaves the loaded database
and the data folder holding the log's signing key in place (both are printed), and
`--database URL --data-dir DIR` times proofs on them again, without loading, when the
CPUs are idle.

    .venv/bin/python bench/proofs.py [--entries 1000000] [--requests 1000] [--appends 10]
                                     [--target-ms 10] [--keep | --database URL --data-dir DIR]
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
from _bulk_log import ORGANISATIONS, bulk_load, stored_leaf_hashes
from _locker import scratch_database
from _report import Row, percentile, print_context, print_table

from service.accounts.members import Principal
from service.accounts.permissions import Role
from service.core import merkle
from service.errors import VerificationError
from service.evidence.reading import prove_consistency, prove_inclusion
from service.runtime import Runtime, open_runtime
from service.settings import Settings

_WARM_UP = 50
_VERIFIED_SAMPLES = 20
_AUDITOR = Principal(user_id="bench-auditor", organisation_id=ORGANISATIONS[0], role=Role.AUDITOR)

Request = Callable[[], object]


def _inclusion(runtime: Runtime, rng: random.Random, size: int) -> Request:
    tree_size = rng.randint(1, size)
    index = rng.randrange(tree_size)
    return lambda: prove_inclusion(runtime, _AUDITOR, index=index, tree_size=tree_size)


def _consistency(runtime: Runtime, rng: random.Random, size: int) -> Request:
    second = rng.randint(2, size)
    first = rng.randrange(1, second)
    return lambda: prove_consistency(runtime, _AUDITOR, first=first, second=second)


def _time_ms(requests: list[Request]) -> list[float]:
    """Wall time of each request in milliseconds, after untimed warm-up requests."""
    for request in requests[:_WARM_UP]:
        request()
    timings = []
    for request in requests[_WARM_UP:]:
        started = time.perf_counter()
        request()
        timings.append((time.perf_counter() - started) * 1000)
    return timings


def _append_ms(runtime: Runtime, count: int) -> tuple[list[float], list[float]]:
    """Append `count` entries through CustodyLog.append: (append call, whole transaction)."""
    call, transaction = [], []
    for number in range(count):
        started = time.perf_counter()
        with runtime.database.session() as session:
            begun = time.perf_counter()
            runtime.log.append(
                session,
                organisation_id=ORGANISATIONS[0],
                actor="user:bench",
                action="evidence.ingested",
                subjects=[f"evidence:bench-{number}"],
                details={"sha256": f"{number:064x}", "size": number + 1},
            )
            call.append((time.perf_counter() - begun) * 1000)
        transaction.append((time.perf_counter() - started) * 1000)
    return call, transaction


def _check(runtime: Runtime, url: str, loaded: int, rng: random.Random) -> list[str]:
    """Stored roots and sample proofs against roots recomputed from the stored leaves."""
    hashes = stored_leaf_hashes(url)
    size = len(hashes)
    roots = {n: merkle.root_from_leaf_hashes(hashes[:n]) for n in (loaded, size)}
    with runtime.database.session() as session:
        stored = {n: runtime.log.root(session, n) for n in roots}
    failures = [f"stored root at {n} differs" for n in roots if stored[n] != roots[n]]
    indexes = [*range(loaded, size), *(rng.randrange(size) for _ in range(_VERIFIED_SAMPLES))]
    try:
        for index in indexes:
            proof = prove_inclusion(runtime, _AUDITOR, index=index, tree_size=size)
            merkle.verify_inclusion(
                index=index, size=size, leaf_hash=hashes[index], proof=proof, root=roots[size]
            )
        proof = prove_consistency(runtime, _AUDITOR, first=loaded, second=size)
        merkle.verify_consistency(
            first=loaded,
            second=size,
            first_root=roots[loaded],
            second_root=roots[size],
            proof=proof,
        )
    except VerificationError as error:
        failures.append(f"proof does not verify: {error}")
    return failures


def _bytes_per_entry(url: str, entries: int) -> str:
    """The database's size per entry, whole and for the two tables that grow with the log."""
    with psycopg.connect(url) as connection:
        whole, leaves, nodes = connection.execute(
            "SELECT pg_database_size(current_database()),"
            " pg_total_relation_size('custody_entry'), pg_total_relation_size('tree_node')"
        ).fetchone()  # type: ignore[misc]
    return (
        f"{whole / entries:.0f} B in all; custody_entry {leaves / entries:.0f} B, "
        f"tree_node {nodes / entries:.0f} B (with indexes)"
    )


def _latency_rows(name: str, timings: list[float], target_ms: float) -> list[Row]:
    p99 = percentile(timings, 0.99)
    spread = (
        f"median {statistics.median(timings):.2f}, p95 {percentile(timings, 0.95):.2f}, "
        f"max {max(timings):.2f}"
    )
    return [
        Row(label=f"{name}: {len(timings)} proofs, ms", value=spread),
        Row(
            label=f"{name}: p99",
            value=f"{p99:.2f} ms",
            target=f"< {target_ms:g} ms",
            met=p99 < target_ms,
        ),
    ]


def _warm_tree(url: str) -> float:
    """Read every tree node and the whole of its index once; seconds.

    A log that serves proofs keeps its tree (about 230 B per entry) in memory; without
    this, proofs time the disk, the more so after the leaf check below has read every
    leaf (about 850 B per entry) through the operating system's cache.
    """
    started = time.perf_counter()
    with psycopg.connect(url) as connection:
        connection.execute("SELECT sum(length(hash)) FROM tree_node")
        connection.execute("SET enable_seqscan = off")  # the primary key index, whole
        connection.execute("SELECT count(*) FROM tree_node WHERE level >= 0")
    return time.perf_counter() - started


def _run(url: str, data_dir: Path, args: argparse.Namespace, *, load: bool) -> list[Row]:
    runtime = open_runtime(Settings(data_dir=data_dir, database_url=url))
    try:
        if load:
            seconds = bulk_load(url, args.entries)
            print(f"bulk-loaded {args.entries} entries in {seconds:.1f} s")
        with runtime.database.session() as session:
            loaded = runtime.log.size(session)
        print(f"read the tree into memory in {_warm_tree(url):.1f} s")
        rng = random.Random(9162)
        count = args.requests + _WARM_UP
        inclusion = _time_ms([_inclusion(runtime, rng, loaded) for _ in range(count)])
        consistency = _time_ms([_consistency(runtime, rng, loaded) for _ in range(count)])
        call, transaction = _append_ms(runtime, args.appends)
        failures = _check(runtime, url, loaded, rng)
        size_per_entry = _bytes_per_entry(url, loaded + args.appends)
    finally:
        runtime.close()
    total = loaded + args.appends
    return [
        *_latency_rows("inclusion", inclusion, args.target_ms),
        *_latency_rows("consistency", consistency, args.target_ms),
        Row(label="database bytes per entry", value=size_per_entry),
        Row(label=f"append at {loaded}: append()", value=_spread(call)),
        Row(label=f"append at {loaded}: transaction", value=_spread(transaction)),
        Row(
            label="stored roots = recomputation from leaves",
            value="; ".join(failures) or f"equal at {loaded} and {total}",
            target="equal",
            met=not failures,
        ),
    ]


def _spread(timings: list[float]) -> str:
    return (
        f"first {timings[0]:.2f} ms, median {statistics.median(timings):.2f} ms, "
        f"max {max(timings):.2f} ms ({len(timings)} appends)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=1_000_000, help="size of the log")
    parser.add_argument("--requests", type=int, default=1000, help="timed proofs of each kind")
    parser.add_argument("--appends", type=int, default=10, help="real appends after the load")
    parser.add_argument("--target-ms", type=float, default=10.0, help="p99 target per proof")
    reuse = parser.add_mutually_exclusive_group()
    reuse.add_argument("--keep", action="store_true", help="keep the loaded database")
    reuse.add_argument("--database", help="time proofs on a database kept before; no load")
    parser.add_argument("--data-dir", type=Path, help="the data folder kept with --database")
    args = parser.parse_args()
    if bool(args.database) != bool(args.data_dir):
        parser.error("--database and --data-dir go together")
    print_context()
    if args.database:
        rows = _run(args.database, args.data_dir, args, load=False)
    elif args.keep:
        data_dir = Path(tempfile.mkdtemp(prefix="locker-bench-"))
        with scratch_database("bench_proofs", keep=True) as url:
            rows = _run(url, data_dir, args, load=True)
        print(f"kept the data folder: {data_dir}")
    else:
        with (
            tempfile.TemporaryDirectory(prefix="locker-bench-") as scratch,
            scratch_database("bench_proofs") as url,
        ):
            rows = _run(url, Path(scratch), args, load=True)
    return 0 if print_table("proofs on the loaded log", rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
