"""Benchmark: inclusion and consistency proofs on a 1,000,000-entry log in PostgreSQL.

Target (issue: core): each proof under 10 ms. The log is bulk-loaded with COPY (leaves
encoded and nodes computed by the same pure core the server uses), then a few entries
are appended through the real CustodyLog and the stored root is checked against a
recomputation, so the bulk load is proven to equal the real append path.

    .venv/bin/python bench/log_proofs.py [--entries 1000000] [--requests 1000]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from service.accounts import Principal
from service.core import merkle
from service.core.entry import encode_entry
from service.permissions import Role
from service.reading import prove_consistency, prove_inclusion
from service.runtime import open_runtime
from service.settings import Settings

ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"


def _bulk_load(url: str, count: int) -> list[bytes]:
    """COPY `count` entries and their tree nodes; returns the leaf hashes."""
    now = datetime.now(UTC)
    leaf_hashes: list[bytes] = []
    nodes: dict[merkle.NodeId, bytes] = {}
    started = time.perf_counter()
    with psycopg.connect(url) as connection, connection.cursor() as cursor:
        with cursor.copy(
            "COPY custody_entry (index, leaf, organisation_id, action, recorded_at) FROM STDIN"
        ) as copy:
            for index in range(count):
                leaf = encode_entry(
                    {
                        "index": index,
                        "time": now.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                        "organisation": "bench",
                        "actor": "user:bench",
                        "action": "bench.entry",
                        "subject": f"evidence:{index}",
                        "sha256": f"{index:064x}",
                    }
                )
                leaf_hash = merkle.leaf_hash(leaf)
                siblings = {n: nodes[n] for n in merkle.append_siblings(index)}
                nodes.update(merkle.hashes_for_append(index, leaf_hash, siblings))
                leaf_hashes.append(leaf_hash)
                copy.write_row((index, leaf, "bench", "bench.entry", now))
        with cursor.copy("COPY tree_node (level, index, hash) FROM STDIN") as copy:
            for node, digest in nodes.items():
                copy.write_row((node.level, node.index, digest))
        cursor.execute("UPDATE log_head SET size = %s WHERE id = 1", (count,))
    print(f"loaded {count} entries and {len(nodes)} nodes in {time.perf_counter() - started:.1f} s")
    return leaf_hashes


def _percentiles(samples: list[float]) -> str:
    ordered = sorted(samples)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return (
        f"median {statistics.median(ordered):.2f} ms, p95 {pick(0.95):.2f} ms, "
        f"p99 {pick(0.99):.2f} ms, max {ordered[-1]:.2f} ms"
    )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=1000)
    args = parser.parse_args()
    name = f"bench_proofs_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    url = ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    try:
        with tempfile.TemporaryDirectory() as data:
            runtime = open_runtime(Settings(data_dir=Path(data), database_url=url))
            leaf_hashes = _bulk_load(url, args.entries)
            principal = Principal(user_id="bench", organisation_id="bench", role=Role.AUDITOR)
            size = args.entries
            rng = random.Random(1)
            inclusion, consistency = [], []
            for _ in range(args.requests):
                index = rng.randrange(size)
                started = time.perf_counter()
                prove_inclusion(runtime, principal, index=index, tree_size=size)
                inclusion.append((time.perf_counter() - started) * 1000)
                first = rng.randrange(1, size)
                started = time.perf_counter()
                prove_consistency(runtime, principal, first=first, second=size)
                consistency.append((time.perf_counter() - started) * 1000)
            # The real append path on top of the bulk load, and the root check.
            with runtime.database.session() as session:
                started = time.perf_counter()
                entry = runtime.log.append(
                    session,
                    organisation_id="bench",
                    actor="user:b",
                    action="bench.append",
                    subjects=["evidence:x"],
                )
                append_ms = (time.perf_counter() - started) * 1000
            leaf_hashes.append(merkle.leaf_hash(entry.leaf))
            with runtime.database.session() as session:
                stored_root = runtime.log.root(session, size + 1)
            consistent = stored_root == merkle.root_from_leaf_hashes(leaf_hashes)
            runtime.close()
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    p99 = lambda s: sorted(s)[min(len(s) - 1, int(0.99 * len(s)))]  # noqa: E731
    print(f"inclusion   ({args.requests} proofs at {size} entries): {_percentiles(inclusion)}")
    print(f"consistency ({args.requests} proofs at {size} entries): {_percentiles(consistency)}")
    print(f"one append at {size} entries: {append_ms:.2f} ms")
    print(f"root from stored nodes equals recomputation over all leaves: {consistent}")
    ok = consistent and p99(inclusion) < 10 and p99(consistency) < 10
    print("target (p99 < 10 ms each):", "MET" if ok else "MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
