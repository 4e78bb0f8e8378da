"""A large custody log in PostgreSQL, loaded with COPY instead of one append at a time.

The leaves are encoded with the server's own `encode_entry` and the tree nodes computed
with the server's own `merkle.hashes_for_append`, exactly the nodes `CustodyLog.append`
would have stored. `stored_leaf_hashes` reads the leaf bytes back, so a benchmark can
rebuild the tree from them alone and prove the load equals the real append path.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta

import psycopg

from service.core import merkle
from service.core.entry import encode_entry
from service.custody.log import rfc3339

ORGANISATIONS = tuple(str(uuid.UUID(int=n, version=4)) for n in (1, 2, 3))
_START = datetime(2024, 1, 1, tzinfo=UTC)


def _subject(index: int) -> str:
    return f"evidence:{uuid.UUID(int=index + 1_000_000_000, version=4)}"


def _entry(index: int) -> tuple[bytes, str, datetime]:
    """The leaf, organisation and time of entry `index`: an upload, as the server logs it."""
    moment = _START + timedelta(seconds=index)
    organisation = ORGANISATIONS[index % len(ORGANISATIONS)]
    digest = hashlib.sha256(index.to_bytes(8, "big")).hexdigest()
    leaf = encode_entry(
        {
            "index": index,
            "time": rfc3339(moment),
            "organisation": organisation,
            "actor": f"user:{uuid.UUID(int=index % 97 + 10, version=4)}",
            "action": "evidence.ingested",
            "subject": _subject(index),
            "subjects": [_subject(index)],
            "sha256": digest,
            "sha512": digest + digest,
            "size": 1000 + index,
            "media_type": "image/jpeg",
            "submission_sha256": digest,
        }
    )
    return leaf, organisation, moment


def _tree_nodes(leaf_hashes: Sequence[bytes]) -> Iterator[tuple[int, int, bytes]]:
    """Every node the appends of `leaf_hashes` store, keeping only the right frontier."""
    frontier: dict[merkle.NodeId, bytes] = {}
    for index, leaf_hash in enumerate(leaf_hashes):
        siblings = {node: frontier[node] for node in merkle.append_siblings(index)}
        completed = merkle.hashes_for_append(index, leaf_hash, siblings)
        for node, digest in completed.items():
            yield node.level, node.index, digest
        # The perfect subtrees covering [0, index + 1) are all a later append needs.
        known = frontier | completed
        frontier = {node: known[node] for node in merkle.perfect_subtrees(0, index + 1)}


def _copy_entries(cursor: psycopg.Cursor[object], count: int) -> list[bytes]:
    """COPY `count` custody entries and their subjects; returns the leaf hashes."""
    leaf_hashes: list[bytes] = []
    columns = "index, leaf, organisation_id, action, recorded_at"
    with cursor.copy(f"COPY custody_entry ({columns}) FROM STDIN") as copy:
        for index in range(count):
            leaf, organisation, moment = _entry(index)
            leaf_hashes.append(merkle.leaf_hash(leaf))
            copy.write_row((index, leaf, organisation, "evidence.ingested", moment))
    with cursor.copy("COPY custody_subject (entry_index, subject) FROM STDIN") as copy:
        for index in range(count):
            copy.write_row((index, _subject(index)))
    return leaf_hashes


def bulk_load(url: str, count: int) -> float:
    """Load entries 0 .. count-1 and their tree nodes into an empty, migrated log; seconds."""
    started = time.perf_counter()
    with psycopg.connect(url) as connection, connection.cursor() as cursor:
        size = cursor.execute("SELECT size FROM log_head WHERE id = 1").fetchone()
        if size != (0,):
            raise RuntimeError(f"bulk load needs an empty log, found size {size}")
        leaf_hashes = _copy_entries(cursor, count)
        with cursor.copy("COPY tree_node (level, index, hash) FROM STDIN") as copy:
            for row in _tree_nodes(leaf_hashes):
                copy.write_row(row)
        cursor.execute("UPDATE log_head SET size = %s WHERE id = 1", (count,))
        # The next append reserves the index after the loaded ones.
        cursor.execute("SELECT setval('custody_index_seq', %s, false)", (count,))
    with psycopg.connect(url, autocommit=True) as connection:
        # What autovacuum would have done on a log that grew to this size over time.
        connection.execute("VACUUM ANALYZE custody_entry, custody_subject, tree_node")
    return time.perf_counter() - started


def stored_leaf_hashes(url: str) -> list[bytes]:
    """The leaf hash of every stored entry, in index order, read back from the database."""
    hashes: list[bytes] = []
    with (
        psycopg.connect(url) as connection,
        connection.cursor(name="leaves") as cursor,
    ):
        cursor.itersize = 10_000
        cursor.execute("SELECT index, leaf FROM custody_entry ORDER BY index")
        for expected, (index, leaf) in enumerate(cursor):
            if index != expected:
                raise RuntimeError(f"custody_entry has a gap: want index {expected}, got {index}")
            hashes.append(merkle.leaf_hash(leaf))
    return hashes
