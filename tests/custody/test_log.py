"""The custody log on a real database: appends, roots, proofs and checkpoints, each
checked against the RFC 9162 reference computation and the pure verifiers."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import pytest
from sqlmodel import Session, select

from service.core import merkle
from service.core.checkpoint import open_checkpoint
from service.core.entry import decode_entry
from service.custody import CustodyLog
from service.custody.log import rfc3339
from service.db import Database
from service.db.models import CustodyEntry, CustodySubject, SignedCheckpoint
from service.errors import InvalidInput, RootMismatch

ENTRIES = 13  # not a power of two: proofs cross the tree's ragged right border


def _append(log: CustodyLog, database: Database, count: int) -> list[bytes]:
    leaves = []
    with database.session() as session:
        for n in range(count):
            appended = log.append(
                session,
                organisation_id="org-1",
                actor="user:alice",
                action="evidence.ingested",
                subjects=[f"evidence:{n}", "incident:7", f"evidence:{n}"],
                details={"sha256": f"{n:064x}"},
            )
            leaves.append(appended.leaf)
    return leaves


def test_appends_are_numbered_from_zero_and_keep_their_fields(
    log: CustodyLog, database: Database
) -> None:
    leaves = _append(log, database, 3)
    with database.session() as session:
        assert log.size(session) == 3
        rows = session.exec(select(CustodyEntry).order_by(CustodyEntry.index)).all()
        subjects = select(CustodySubject.subject).where(CustodySubject.entry_index == 2)
        assert sorted(session.exec(subjects)) == ["evidence:2", "incident:7"]  # once each
    assert [row.leaf for row in rows] == leaves
    fields = decode_entry(leaves[2])
    assert fields["index"] == 2
    assert fields["subject"] == "evidence:2"  # the first subject names the entry
    assert fields["sha256"] == f"{2:064x}"
    assert fields["time"] == rfc3339(rows[2].recorded_at.replace(tzinfo=UTC))


def test_an_append_rolls_back_with_its_transaction(log: CustodyLog, database: Database) -> None:
    _append(log, database, 2)
    with pytest.raises(RuntimeError), database.session() as session:
        log.append(session, organisation_id="o", actor="a", action="x", subjects=["s"])
        raise RuntimeError("the caller's transaction fails")
    leaves = _append(log, database, 1)
    assert decode_entry(leaves[0])["index"] == 2  # no gap where the rolled-back one was


def test_rfc3339_is_utc_with_microseconds() -> None:
    moment = datetime.fromisoformat("2026-03-01T12:30:45.000001+02:00")
    assert rfc3339(moment) == "2026-03-01T10:30:45.000001Z"


def test_every_root_and_proof_matches_the_reference_tree(
    log: CustodyLog, database: Database
) -> None:
    leaves = _append(log, database, ENTRIES)
    hashes = [merkle.leaf_hash(leaf) for leaf in leaves]
    with database.session() as session:
        assert log.root(session, 0) == merkle.EMPTY_ROOT
        roots = {size: log.root(session, size) for size in range(1, ENTRIES + 1)}
        for size, root in roots.items():
            assert root == merkle.root_from_leaf_hashes(hashes[:size])
            for index in range(size):
                proof = log.inclusion_proof(session, index=index, tree_size=size)
                merkle.verify_inclusion(
                    index=index, size=size, leaf_hash=hashes[index], proof=proof, root=root
                )
            for first in range(1, size + 1):
                proof = log.consistency_proof(session, first=first, second=size)
                merkle.verify_consistency(
                    first=first,
                    second=size,
                    first_root=roots[first],
                    second_root=root,
                    proof=proof,
                )


def test_a_proof_does_not_verify_against_another_leaf(log: CustodyLog, database: Database) -> None:
    leaves = _append(log, database, 5)
    with database.session() as session:
        proof = log.inclusion_proof(session, index=3, tree_size=5)
        root = log.root(session, 5)
    with pytest.raises(RootMismatch):
        merkle.verify_inclusion(
            index=3, size=5, leaf_hash=merkle.leaf_hash(leaves[2]), proof=proof, root=root
        )


@pytest.mark.parametrize(
    ("index", "tree_size", "message"),
    [
        (0, 0, r"tree_size must be in \[1, 4\], got 0"),
        (0, 5, r"tree_size must be in \[1, 4\], got 5"),
        (3, 3, r"index must be in \[0, 3\), got 3"),
        (-1, 3, r"index must be in \[0, 3\), got -1"),
    ],
)
def test_inclusion_proofs_outside_the_log_are_refused(
    log: CustodyLog, database: Database, index: int, tree_size: int, message: str
) -> None:
    _append(log, database, 4)
    with database.session() as session, pytest.raises(InvalidInput, match=message):
        log.inclusion_proof(session, index=index, tree_size=tree_size)


@pytest.mark.parametrize(
    ("first", "second", "message"),
    [
        (1, 5, r"tree_size must be in \[1, 4\], got 5"),
        (0, 3, "need 0 < first <= second, got first=0 second=3"),
        (4, 3, "need 0 < first <= second, got first=4 second=3"),
    ],
)
def test_consistency_proofs_outside_the_log_are_refused(
    log: CustodyLog, database: Database, first: int, second: int, message: str
) -> None:
    _append(log, database, 4)
    with database.session() as session, pytest.raises(InvalidInput, match=message):
        log.consistency_proof(session, first=first, second=second)


def test_a_checkpoint_is_signed_once_per_size(log: CustodyLog, database: Database) -> None:
    empty = log.latest_checkpoint(database)
    assert open_checkpoint(empty.note, log.verifier, origin=log.origin).size == 0
    assert empty.root_hash == merkle.EMPTY_ROOT

    leaves = _append(log, database, 3)
    signed = log.latest_checkpoint(database)
    checkpoint = open_checkpoint(signed.note, log.verifier, origin=log.origin)
    assert (checkpoint.size, signed.size) == (3, 3)
    hashes = [merkle.leaf_hash(leaf) for leaf in leaves]
    assert checkpoint.root_hash == merkle.root_from_leaf_hashes(hashes)

    again = log.latest_checkpoint(database)
    assert (again.note, again.signed_at) == (signed.note, signed.signed_at)
    with database.session() as session:
        assert session.exec(select(SignedCheckpoint.size)).all() == [0, 3]


class _RacedDatabase:
    """The real database, where another request signs the same size just before ours is
    stored: what two requests asking for the latest checkpoint at once can do."""

    def __init__(self, database: Database, rival: CustodyLog) -> None:
        self._database = database
        self._rival = rival
        self.sessions = 0

    @contextmanager
    def session(self) -> Iterator[Session]:
        self.sessions += 1
        if self.sessions == 2:  # after our read, before our insert
            self._rival.latest_checkpoint(self._database)
        with self._database.session() as session:
            yield session


def test_a_checkpoint_signed_concurrently_is_the_one_returned(
    log: CustodyLog, database: Database
) -> None:
    _append(log, database, 2)
    rival = CustodyLog(signer=log._signer, origin=log.origin)
    raced = _RacedDatabase(database, rival)
    returned = log.latest_checkpoint(raced)  # type: ignore[arg-type]
    with database.session() as session:
        stored = session.exec(select(SignedCheckpoint)).all()
    assert raced.sessions == 3  # read, insert refused, read the rival's
    assert len(stored) == 1
    assert (returned.size, returned.signed_at) == (2, stored[0].signed_at)
