"""Appending to the custody log, proving inclusion and consistency, signing checkpoints.

The log is an RFC 9162 Merkle tree. Every append stores the perfect subtrees it
completes (`tree_node`), so a proof or a root needs O(log n) node reads, never a
rebuild from all leaves. Appends are sequenced by locking the single `log_head` row
inside the caller's transaction: indexes are distinct and gap-free, and an entry,
its nodes and the new size commit or roll back together.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import tuple_
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from service.core import merkle
from service.core.checkpoint import (
    Checkpoint,
    NoteSigner,
    NoteVerifier,
    cosign,
    sign_checkpoint,
)
from service.core.entry import decode_entry, encode_entry, entry_fields, entry_subjects
from service.db.engine import Database
from service.db.models import CustodyEntry, CustodySubject, LogHead, SignedCheckpoint, TreeNode
from service.errors import InvalidInput
from service.metrics import CUSTODY_APPEND_DURATION, CUSTODY_APPENDS


@dataclass(frozen=True, slots=True, kw_only=True)
class AppendedEntry:
    """An entry as appended: its index and its exact leaf bytes."""

    index: int
    leaf: bytes
    time: datetime


def rfc3339(moment: datetime) -> str:
    """RFC 3339 UTC with microseconds and a Z, the one time format of the log."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class CustodyLog:
    """The deployment's single append-only log."""

    def __init__(
        self, *, signer: NoteSigner, origin: str, co_signers: Sequence[NoteSigner] = ()
    ) -> None:
        self._signer = signer
        self._co_signers = tuple(co_signers)  # a rotated-out key, during its overlap
        self.origin = origin

    @property
    def verifier(self) -> NoteVerifier:
        return self._signer.verifier()

    def append(
        self,
        session: Session,
        *,
        organisation_id: str,
        actor: str,
        action: str,
        subjects: Sequence[str],
        details: Mapping[str, object] | None = None,
    ) -> AppendedEntry:
        """Append one entry inside the caller's transaction; it commits with it.

        Every one of `subjects` is signed (entry format v2); FormatError if a key of
        `details` would shadow a signed field.
        """
        with CUSTODY_APPEND_DURATION.time():
            appended = self._append(
                session,
                organisation_id=organisation_id,
                actor=actor,
                action=action,
                subjects=subjects,
                details=details,
            )
        CUSTODY_APPENDS.inc()
        return appended

    def _append(
        self,
        session: Session,
        *,
        organisation_id: str,
        actor: str,
        action: str,
        subjects: Sequence[str],
        details: Mapping[str, object] | None,
    ) -> AppendedEntry:
        head = session.exec(select(LogHead).where(LogHead.id == 1).with_for_update()).one()
        index = head.size
        now = datetime.now(UTC)
        fields = entry_fields(
            index=index,
            time=rfc3339(now),
            organisation=organisation_id,
            actor=actor,
            action=action,
            subjects=subjects,
            details=details,
        )
        leaf = encode_entry(fields)
        siblings = _fetch_nodes(session, merkle.append_siblings(index))
        new_nodes = merkle.hashes_for_append(index, merkle.leaf_hash(leaf), siblings)
        session.add(
            CustodyEntry(
                index=index,
                leaf=leaf,
                organisation_id=organisation_id,
                action=action,
                recorded_at=now,
            )
        )
        # The table indexes what the leaf signs: every subject, none added beside it.
        session.add_all(
            CustodySubject(entry_index=index, subject=s) for s in entry_subjects(decode_entry(leaf))
        )
        session.add_all(
            TreeNode(level=n.level, index=n.index, hash=h) for n, h in new_nodes.items()
        )
        head.size = index + 1
        session.add(head)
        session.flush()
        return AppendedEntry(index=index, leaf=leaf, time=now)

    def size(self, session: Session) -> int:
        """The number of committed entries, as this transaction sees them."""
        return session.exec(select(LogHead.size).where(LogHead.id == 1)).one()

    def root(self, session: Session, size: int) -> bytes:
        """The Merkle root of the first `size` entries, from O(log size) stored nodes."""
        if size == 0:
            return merkle.EMPTY_ROOT
        nodes = _fetch_nodes(session, merkle.perfect_subtrees(0, size))
        return merkle.range_hash(0, size, nodes)

    def inclusion_proof(self, session: Session, *, index: int, tree_size: int) -> list[bytes]:
        """RFC 9162 §2.1.3.1 proof that entry `index` is in the tree of `tree_size`."""
        self._check_size(session, tree_size)
        if not 0 <= index < tree_size:
            raise InvalidInput(f"index must be in [0, {tree_size}), got {index}")
        return self._proof(session, merkle.inclusion_ranges(index, tree_size))

    def consistency_proof(self, session: Session, *, first: int, second: int) -> list[bytes]:
        """RFC 9162 §2.1.4.1 proof that the tree of `first` is a prefix of `second`."""
        self._check_size(session, second)
        if not 0 < first <= second:
            raise InvalidInput(f"need 0 < first <= second, got first={first} second={second}")
        return self._proof(session, merkle.consistency_ranges(first, second))

    def latest_checkpoint(self, database: Database) -> SignedCheckpoint:
        """The checkpoint over every committed entry, signing a new one if the log grew."""
        with database.session() as session:
            size = self.size(session)
            existing = session.get(SignedCheckpoint, size)
            if existing is not None:
                return existing
            root = self.root(session, size)
        checkpoint = Checkpoint(origin=self.origin, size=size, root_hash=root)
        signed = SignedCheckpoint(
            size=size,
            root_hash=root,
            note=self._sign(checkpoint),
            signed_at=datetime.now(UTC),
        )
        try:
            with database.session() as session:
                session.add(signed)
        except IntegrityError:
            # Another request signed this size first; theirs is as good as ours.
            with database.session() as session:
                found = session.get(SignedCheckpoint, size)
                assert found is not None
                return found
        return signed

    def newest_checkpoint(self, session: Session) -> SignedCheckpoint | None:
        """The largest checkpoint signed so far, without signing one."""
        newest = select(SignedCheckpoint).order_by(col(SignedCheckpoint.size).desc()).limit(1)
        return session.exec(newest).first()

    def _sign(self, checkpoint: Checkpoint) -> str:
        note = sign_checkpoint(checkpoint, self._signer)
        for co_signer in self._co_signers:
            note = cosign(note, co_signer)
        return note

    def _check_size(self, session: Session, tree_size: int) -> None:
        size = self.size(session)
        if not 0 < tree_size <= size:
            raise InvalidInput(f"tree_size must be in [1, {size}], got {tree_size}")

    def _proof(self, session: Session, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        nodes = _fetch_nodes(session, merkle.nodes_needed(ranges))
        return merkle.build_proof(ranges, nodes)


def _fetch_nodes(session: Session, ids: Iterable[merkle.NodeId]) -> dict[merkle.NodeId, bytes]:
    """Read the given tree nodes in one query."""
    wanted = [(n.level, n.index) for n in ids]
    if not wanted:
        return {}
    rows = session.exec(select(TreeNode).where(tuple_(TreeNode.level, TreeNode.index).in_(wanted)))
    return {merkle.NodeId(row.level, row.index): row.hash for row in rows}
