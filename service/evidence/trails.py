"""Custody trails as each reader may see them: an item's trail, the log, the audit export.

A custody view shows each entry as its reader may see it: an entry that also names an
item hidden from the reader keeps its place, its leaf hash and its inclusion proof, but
not its leaf bytes, and every value naming the hidden item is withheld. Entries about
hidden items alone are not shown at all.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import exists, not_, or_
from sqlmodel import Session, col, select
from sqlmodel.sql.expression import SelectOfScalar

from service.accounts.access import (
    ITEM_KINDS,
    hidden_subjects,
    identifying_strings,
    visible_clause,
    visible_item,
)
from service.accounts.members import Principal
from service.accounts.permissions import Permission
from service.core.entry import decode_entry
from service.core.merkle import leaf_hash
from service.custody.sequencer import DEPLOYMENT
from service.db.models import CustodyEntry, CustodySubject, SignedCheckpoint
from service.documentation.incidents import WITHHELD
from service.evidence.reading import get_evidence

if TYPE_CHECKING:
    from service.runtime import Runtime


@dataclass(frozen=True, slots=True, kw_only=True)
class ShownEntry:
    """A custody entry as one reader may see it.

    `leaf` is None when the entry names something hidden from the reader: `fields` then
    has every value naming it replaced by "[withheld]", and `leaf_hash` (RFC 9162
    §2.1.1) with the inclusion proof still shows the entry is in the log.
    """

    index: int
    leaf: bytes | None
    leaf_hash: bytes
    fields: dict[str, object]

    @property
    def withheld(self) -> bool:
        return self.leaf is None


@dataclass(frozen=True, slots=True, kw_only=True)
class ProvenEntry(ShownEntry):
    proof: list[bytes]


def evidence_custody(
    runtime: Runtime, principal: Principal, evidence_id: str
) -> tuple[SignedCheckpoint, list[ProvenEntry]]:
    """Every entry concerning an item, each with its proof against the latest checkpoint."""
    get_evidence(runtime, principal, evidence_id)
    checkpoint = runtime.log.latest_checkpoint(runtime.database)
    with runtime.database.session() as session:
        entries = session.exec(
            select(CustodyEntry)
            .join(CustodySubject, col(CustodySubject.entry_index) == col(CustodyEntry.index))
            .where(CustodySubject.subject == f"evidence:{evidence_id}")
            .where(col(CustodyEntry.index) < checkpoint.size)
            .order_by(col(CustodyEntry.index))
        ).all()
        proven = _prove(runtime, session, principal, entries, checkpoint.size)
    return checkpoint, proven


def shown_entries(
    session: Session, principal: Principal, entries: Sequence[CustodyEntry]
) -> list[ShownEntry]:
    """The entries as the caller may see them, hidden items withheld."""
    named: dict[int, list[str]] = {}
    for index, subject in session.exec(
        select(CustodySubject.entry_index, CustodySubject.subject).where(
            col(CustodySubject.entry_index).in_([e.index for e in entries])
        )
    ):
        named.setdefault(index, []).append(subject)
    hidden = hidden_subjects(session, principal, {s for v in named.values() for s in v})
    shown = []
    for entry in entries:
        withheld = hidden.intersection(named.get(entry.index, []))
        fields = decode_entry(entry.leaf)
        if withheld:
            secrets = identifying_strings(session, withheld)
            fields = _withhold(fields, secrets)
        shown.append(
            ShownEntry(
                index=entry.index,
                leaf=None if withheld else entry.leaf,
                leaf_hash=leaf_hash(entry.leaf),
                fields=fields,
            )
        )
    return shown


def _withhold(value: object, secrets: set[str]) -> Any:
    """`value` with every string that names one of `secrets` replaced by WITHHELD."""
    if isinstance(value, str):
        return WITHHELD if any(secret in value for secret in secrets) else value
    if isinstance(value, dict):
        return {key: _withhold(item, secrets) for key, item in value.items()}
    if isinstance(value, list):
        return [_withhold(item, secrets) for item in value]
    return value


def _prove(
    runtime: Runtime,
    session: Session,
    principal: Principal,
    entries: Sequence[CustodyEntry],
    tree_size: int,
) -> list[ProvenEntry]:
    """Each entry as the caller may see it, with its inclusion proof in the tree of `tree_size`."""
    return [
        ProvenEntry(
            index=shown.index,
            leaf=shown.leaf,
            leaf_hash=shown.leaf_hash,
            fields=shown.fields,
            proof=runtime.log.inclusion_proof(session, index=shown.index, tree_size=tree_size),
        )
        for shown in shown_entries(session, principal, entries)
    ]


@dataclass(frozen=True, slots=True, kw_only=True)
class EntryFilter:
    """Which of the organisation's entries an audit export holds."""

    start: int = 0
    since: datetime | None = None
    until: datetime | None = None
    subject: str | None = None


def _visible_entries(principal: Principal, wanted: EntryFilter) -> SelectOfScalar[CustodyEntry]:
    """The caller's organisation's entries, minus those naming only items hidden from it,
    and the deployment's own (key rotations, unused indexes), which concern every reader.

    An entry that names a hidden item and a visible one is kept (and shown withheld).
    """
    subject = col(CustodySubject.subject)
    hidden = exists().where(
        col(CustodySubject.entry_index) == col(CustodyEntry.index),
        not_(visible_clause(principal, subject)),
    )
    visible_item = exists().where(
        col(CustodySubject.entry_index) == col(CustodyEntry.index),
        or_(*(subject.startswith(f"{kind}:") for kind in ITEM_KINDS)),
        visible_clause(principal, subject),
    )
    query = (
        select(CustodyEntry)
        .where(col(CustodyEntry.organisation_id).in_([principal.organisation_id, DEPLOYMENT]))
        .where(or_(not_(hidden), visible_item))
        .where(col(CustodyEntry.index) >= wanted.start)
    )
    if wanted.since is not None:
        query = query.where(col(CustodyEntry.recorded_at) >= wanted.since)
    if wanted.until is not None:
        query = query.where(col(CustodyEntry.recorded_at) < wanted.until)
    if wanted.subject is not None:
        about = exists().where(
            col(CustodySubject.entry_index) == col(CustodyEntry.index),
            col(CustodySubject.subject) == wanted.subject,
        )
        query = query.where(about)
    return query.order_by(col(CustodyEntry.index))


def list_entries(
    runtime: Runtime, principal: Principal, *, start: int, limit: int
) -> list[ShownEntry]:
    """The organisation's own log entries from index `start` on, in log order.

    Entries only about restricted items the caller holds no grant on are left out;
    those naming one beside a visible item are shown with it withheld.
    """
    principal.require(Permission.CUSTODY_READ)
    with runtime.database.snapshot() as session:
        # Only what the tree holds: on PostgreSQL entries commit out of index order, and
        # a page that showed 11 before 10 was integrated would lead its reader past 10.
        size = runtime.log.size(session)
        query = _visible_entries(principal, EntryFilter(start=start))
        rows = session.exec(query.where(col(CustodyEntry.index) < size).limit(limit))
        return shown_entries(session, principal, list(rows))


def audit_trail(
    runtime: Runtime, principal: Principal, wanted: EntryFilter, *, batch: int = 500
) -> tuple[SignedCheckpoint, Iterator[ProvenEntry]]:
    """Entries for an audit export, each proven against one checkpoint, in batches."""
    principal.require(Permission.CUSTODY_READ)
    if wanted.subject is not None:
        kind, _, item_id = wanted.subject.partition(":")
        with runtime.database.session() as session:
            visible_item(session, principal, kind, item_id)
    checkpoint = runtime.log.latest_checkpoint(runtime.database)

    def entries() -> Iterator[ProvenEntry]:
        start = wanted.start
        while True:
            page = replace(wanted, start=start)
            with runtime.database.session() as session:
                rows = list(
                    session.exec(
                        _visible_entries(principal, page)
                        .where(col(CustodyEntry.index) < checkpoint.size)
                        .limit(batch)
                    )
                )
                proven = _prove(runtime, session, principal, rows, checkpoint.size)
            yield from proven
            if len(rows) < batch:
                return
            start = rows[-1].index + 1

    return checkpoint, entries()
