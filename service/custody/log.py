"""Appending to the custody log, proving inclusion and consistency, signing checkpoints.

The log is an RFC 9162 Merkle tree. The tree stores every perfect subtree
(`tree_node`), so a proof or a root needs O(log n) node reads, never a rebuild from
all leaves.

On PostgreSQL an append reserves its index and writes its entry in the caller's
transaction, holding no lock other writers wait for; once that transaction commits,
the caller waits until the sequencer (custody/sequencer.py) has integrated the entry
into the tree, so every acknowledged entry is in the log at the index it was given.
On SQLite, where transactions run one at a time anyway, an append locks `log_head`
and integrates its entry in the caller's transaction.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine, text, tuple_
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
from service.core.entry import (
    ENTRY_FORMAT,
    decode_entry,
    encode_entry,
    entry_fields,
    entry_subjects,
    rfc3339,
)
from service.custody.sequencer import (
    RESERVATION_CLASS,
    RESERVE,
    Sequencer,
    SignNote,
    fetch_nodes,
)
from service.db.engine import Database, after_commit
from service.db.models import CustodyEntry, CustodySubject, LogHead, SignedCheckpoint, TreeNode
from service.errors import InvalidInput
from service.metrics import CUSTODY_APPEND_DURATION, CUSTODY_APPENDS


@dataclass(frozen=True, slots=True, kw_only=True)
class AppendedEntry:
    """An entry as appended: its index and its exact leaf bytes."""

    index: int
    leaf: bytes
    time: datetime


__all__ = ["AppendedEntry", "CustodyLog", "rfc3339"]

# How long a request waits for its committed entry to enter the tree before answering
# 503 (the entry stays, and enters the tree at its index when a sequencer runs again).
_INTEGRATION_WAIT_SECONDS = 30.0
# How long a key rotation waits for the running sequencer to let go.
_LEAD_WAIT_SECONDS = 10.0
_AWAITED = "custody_awaited"  # the highest index a session appended, in Session.info
# An entry and its subjects in one statement (one round trip, on PostgreSQL).
_INSERT_ENTRY = text(
    "WITH entry AS ("
    'INSERT INTO custody_entry ("index", leaf, organisation_id, action, recorded_at) '
    "VALUES (:index, :leaf, :organisation, :action, :at)) "
    "INSERT INTO custody_subject (entry_index, subject) "
    "SELECT :index, subject FROM unnest(CAST(:subjects AS text[])) AS subject"
)
# Reserve the index (its lock held until commit, as `RESERVE`) and write the entry whose
# leaf is :head, the index's digits, :tail, and its subjects: one statement.
_RESERVE_AND_INSERT = text(
    "WITH reserved AS ("
    "SELECT reserved, pg_advisory_xact_lock(:class, (reserved % 2147483648)::int) "
    "FROM (SELECT nextval('custody_index_seq') AS reserved) AS next), "
    "entry AS ("
    'INSERT INTO custody_entry ("index", leaf, organisation_id, action, recorded_at) '
    "SELECT reserved, :head || convert_to(reserved::text, 'UTF8') || :tail, "
    ":organisation, :action, :at FROM reserved "
    'RETURNING "index"), '
    "subjects AS ("
    "INSERT INTO custody_subject (entry_index, subject) "
    'SELECT entry."index", subject FROM entry, unnest(CAST(:subjects AS text[])) AS subject) '
    'SELECT "index" FROM entry'
)
_INDEX_KEY = b'"index":'
_INDEX_ZERO = _INDEX_KEY + b"0"


class CustodyLog:
    """The deployment's single append-only log."""

    def __init__(
        self, *, signer: NoteSigner, origin: str, co_signers: Sequence[NoteSigner] = ()
    ) -> None:
        self._signer = signer
        self._co_signers = tuple(co_signers)  # a rotated-out key, during its overlap
        self.origin = origin
        self._sequencers: dict[Engine, Sequencer] = {}
        self._sequencers_lock = threading.Lock()

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
        engine = session.get_bind().engine
        if engine.dialect.name == "postgresql":
            return self._append_batched(
                session,
                engine,
                organisation_id=organisation_id,
                actor=actor,
                action=action,
                subjects=subjects,
                details=details,
            )
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
        siblings = _fetch_nodes(session, merkle.append_siblings(index))
        new_nodes = merkle.hashes_for_append(index, merkle.leaf_hash(leaf), siblings)
        session.add_all(
            TreeNode(level=n.level, index=n.index, hash=h) for n, h in new_nodes.items()
        )
        head.size = index + 1
        session.add(head)
        session.flush()
        return AppendedEntry(index=index, leaf=leaf, time=now)

    def _append_batched(
        self,
        session: Session,
        engine: Engine,
        *,
        organisation_id: str,
        actor: str,
        action: str,
        subjects: Sequence[str],
        details: Mapping[str, object] | None,
    ) -> AppendedEntry:
        """PostgreSQL: reserve an index, write the entry; the sequencer integrates it."""
        # Core statements on the session's connection, no ORM objects.
        connection = session.connection()
        now = datetime.now(UTC)
        fields = entry_fields(
            index=0,
            time=rfc3339(now),
            organisation=organisation_id,
            actor=actor,
            action=action,
            subjects=subjects,
            details=details,
        )
        values = {
            "organisation": organisation_id,
            "action": action,
            "at": now,
            # The table indexes what the leaf signs: every subject, none added beside it.
            "subjects": entry_subjects({"format": ENTRY_FORMAT, **fields}),
        }
        # The canonical leaf holds its index as one run of digits after its one top-level
        # "index" key, so the database can write the leaf of the index it reserves in the
        # same statement: one round trip. Where the leaf's text has that run elsewhere
        # too (details quoting it), the index is reserved first and the leaf encoded after.
        template = encode_entry(fields)
        if template.count(_INDEX_ZERO) == 1:
            head, _, tail = template.partition(_INDEX_ZERO)
            head += _INDEX_KEY
            values |= {"class": RESERVATION_CLASS, "head": head, "tail": tail}
            index = int(connection.execute(_RESERVE_AND_INSERT, values).scalar_one())
            leaf = head + str(index).encode() + tail
        else:
            index = int(connection.execute(RESERVE, {"class": RESERVATION_CLASS}).one()[0])
            leaf = encode_entry({**fields, "index": index})
            connection.execute(_INSERT_ENTRY, {**values, "index": index, "leaf": leaf})
        self._await_after_commit(session, engine, index)
        session.flush()  # whatever the caller added before, as the ORM path did
        return AppendedEntry(index=index, leaf=leaf, time=now)

    def _await_after_commit(self, session: Session, engine: Engine, index: int) -> None:
        """Have the session's commit return only once its entries are in the tree."""
        awaited = max(session.info.get(_AWAITED, -1), index)
        session.info[_AWAITED] = awaited
        sequencer = self.sequencer(engine)
        after_commit(
            session,
            "custody",
            lambda: sequencer.wait(awaited, timeout=_INTEGRATION_WAIT_SECONDS),
        )

    def sequencer(self, engine: Engine) -> Sequencer:
        """This process's sequencer of the log in `engine` (PostgreSQL), started once."""
        with self._sequencers_lock:
            sequencer = self._sequencers.get(engine)
            if sequencer is None:
                sequencer = Sequencer(engine, sign=self._sign, origin=self.origin)
                self._sequencers[engine] = sequencer
            return sequencer

    @contextmanager
    def signing_with(self, database: Database, sign: SignNote) -> Iterator[None]:
        """Sign the checkpoint over what the block appends with `sign` (a key rotation).

        On PostgreSQL this process leads the sequencing meanwhile (waiting for another
        leader to let go); on SQLite the block's own transaction signs it (`sign_head`).
        """
        if database.engine.dialect.name != "postgresql":
            yield
            return
        with self.sequencer(database.engine).exclusive(sign, timeout=_LEAD_WAIT_SECONDS):
            yield

    def sign_head(self, session: Session, sign: SignNote) -> None:
        """On SQLite, store the checkpoint over this transaction's appends, signed by `sign`."""
        if session.get_bind().engine.dialect.name == "postgresql":
            return  # the sequencer signs it when it integrates them (`signing_with`)
        size = self.size(session)
        root = self.root(session, size)
        note = sign(Checkpoint(origin=self.origin, size=size, root_hash=root))
        session.add(
            SignedCheckpoint(size=size, root_hash=root, note=note, signed_at=datetime.now(UTC))
        )

    def close(self) -> None:
        """Stop this process's sequencers, letting go of the lead."""
        with self._sequencers_lock:
            sequencers, self._sequencers = list(self._sequencers.values()), {}
        for sequencer in sequencers:
            sequencer.close()

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
    wanted = list(ids)
    if not wanted:
        return {}
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        return fetch_nodes(connection, wanted)
    # Plain rows, not ORM objects: a proof reads up to ~2 log2(size) nodes, and building
    # and tracking an object for each cost more CPU than the query itself.
    nodes = TreeNode.__table__.c  # type: ignore[attr-defined]
    rows = connection.execute(
        select(nodes.level, nodes.index, nodes.hash).where(
            tuple_(nodes.level, nodes.index).in_([(n.level, n.index) for n in wanted])
        )
    )
    return {merkle.NodeId(level, index): hash_ for level, index, hash_ in rows}
