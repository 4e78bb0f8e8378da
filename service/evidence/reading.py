"""Reading evidence: records, content (each access a custody event) and custody trails."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import exists, not_
from sqlmodel import Session, col, select
from sqlmodel.sql.expression import SelectOfScalar

from service.accounts.access import has_grant, visible_clause, visible_evidence, visible_item
from service.accounts.members import Principal
from service.accounts.permissions import Permission
from service.core.digests import ContentDigests, digest_stream
from service.db.models import (
    CustodyEntry,
    CustodySubject,
    Evidence,
    EvidenceQuarantine,
    SignedCheckpoint,
    Submission,
)
from service.errors import DigestMismatch
from service.evidence.integrity import (
    Expected,
    VerifiedChunks,
    log_mismatch,
    record_integrity_failure,
)
from service.storage import ObjectStore

if TYPE_CHECKING:
    from service.runtime import Runtime


@dataclass(frozen=True, slots=True, kw_only=True)
class EvidenceView:
    evidence: Evidence
    submissions: list[Submission]
    quarantine: EvidenceQuarantine | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ProvenEntry:
    entry: CustodyEntry
    proof: list[bytes]


def get_evidence(runtime: Runtime, principal: Principal, evidence_id: str) -> EvidenceView:
    """The evidence record if the caller may see it, or NotFound."""
    with runtime.database.session() as session:
        evidence = visible_evidence(session, principal, evidence_id)
        submissions = session.exec(
            select(Submission)
            .where(Submission.evidence_id == evidence_id)
            .order_by(col(Submission.custody_index))
        ).all()
        quarantine = session.get(EvidenceQuarantine, evidence_id)
    return EvidenceView(evidence=evidence, submissions=list(submissions), quarantine=quarantine)


def open_content(
    runtime: Runtime, principal: Principal, evidence_id: str
) -> tuple[Evidence, Iterator[bytes]]:
    """Open the exact stored version, record the access in the log, then stream.

    Reading the bytes needs the content permission, or (for an auditor) a grant on
    the item itself. The stream checks the bytes against the record as they pass
    (see `VerifiedChunks`): changed bytes abort the download and quarantine the item.
    """
    subject = f"evidence:{evidence_id}"
    with runtime.database.session() as session:
        evidence = visible_evidence(session, principal, evidence_id)
        if not has_grant(session, principal, subject):
            principal.require(Permission.EVIDENCE_CONTENT, subject=subject)
    chunks = logged_read(
        runtime,
        evidence.object_key,
        evidence.object_version,
        lambda session: runtime.log.append(
            session,
            organisation_id=principal.organisation_id,
            actor=principal.actor,
            action="evidence.content_accessed",
            subjects=[subject],
            details={"sha256": evidence.sha256},
        ),
        expected=Expected(sha256=evidence.sha256, sha512=evidence.sha512, size=evidence.size),
        on_mismatch=lambda difference: record_integrity_failure(
            runtime, evidence, actor=principal.actor, difference=difference
        ),
    )
    return evidence, chunks


def logged_read(
    runtime: Runtime,
    key: str,
    version: str | None,
    record: Callable[[Session], object],
    *,
    expected: Expected,
    on_mismatch: Callable[[str], None] = log_mismatch,
) -> VerifiedChunks:
    """Open a stored object, then `record` the read in its own transaction.

    In that order: a read the store cannot serve is no access, and the log must not say
    bytes were handed out when they were not. The stream is checked against `expected`
    while it is read; `on_mismatch` records a difference before the stream aborts.
    """
    chunks = runtime.store.open(key, version)
    try:
        with runtime.database.session() as session:
            record(session)
    except BaseException:
        chunks.close()  # release the connection or file now, not when collected
        raise
    return VerifiedChunks(chunks, expected=expected, what=f"object {key}", on_mismatch=on_mismatch)


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
        proven = _prove(runtime, session, entries, checkpoint.size)
    return checkpoint, proven


def _prove(
    runtime: Runtime, session: Session, entries: Iterable[CustodyEntry], tree_size: int
) -> list[ProvenEntry]:
    """Each entry with its inclusion proof in the tree of `tree_size`."""
    return [
        ProvenEntry(
            entry=entry,
            proof=runtime.log.inclusion_proof(session, index=entry.index, tree_size=tree_size),
        )
        for entry in entries
    ]


@dataclass(frozen=True, slots=True, kw_only=True)
class EntryFilter:
    """Which of the organisation's entries an audit export holds."""

    start: int = 0
    since: datetime | None = None
    until: datetime | None = None
    subject: str | None = None


def _visible_entries(principal: Principal, wanted: EntryFilter) -> SelectOfScalar[CustodyEntry]:
    """The caller's organisation's entries, minus those about items hidden from it."""
    hidden = exists().where(
        col(CustodySubject.entry_index) == col(CustodyEntry.index),
        not_(visible_clause(principal, col(CustodySubject.subject))),
    )
    query = (
        select(CustodyEntry)
        .where(CustodyEntry.organisation_id == principal.organisation_id)
        .where(not_(hidden))
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
) -> list[CustodyEntry]:
    """The organisation's own log entries from index `start` on, in log order.

    Entries about restricted items the caller holds no grant on are left out.
    """
    principal.require(Permission.CUSTODY_READ)
    with runtime.database.session() as session:
        return list(
            session.exec(_visible_entries(principal, EntryFilter(start=start)).limit(limit))
        )


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
                proven = _prove(runtime, session, rows, checkpoint.size)
            yield from proven
            if len(rows) < batch:
                return
            start = rows[-1].index + 1

    return checkpoint, entries()


def verify_object(
    store: ObjectStore, key: str, version_id: str | None, *, expected: ContentDigests
) -> None:
    """Re-read a stored object and check it hashes to what we expect."""
    actual = digest_stream(store.open(key, version_id))
    for name in ("sha256", "sha512"):
        want, got = getattr(expected, name), getattr(actual, name)
        if want != got:
            raise DigestMismatch(f"object {key}", expected=str(want), actual=str(got))
    if expected.size != actual.size:
        raise DigestMismatch(
            f"object {key} size", expected=str(expected.size), actual=str(actual.size)
        )


def prove_inclusion(
    runtime: Runtime, principal: Principal, *, index: int, tree_size: int
) -> list[bytes]:
    """RFC 9162 inclusion proof for entry `index` in the tree of `tree_size`."""
    principal.require(Permission.CUSTODY_READ)
    with runtime.database.session() as session:
        return runtime.log.inclusion_proof(session, index=index, tree_size=tree_size)


def prove_consistency(
    runtime: Runtime, principal: Principal, *, first: int, second: int
) -> list[bytes]:
    """RFC 9162 consistency proof between the trees of sizes `first` and `second`."""
    principal.require(Permission.CUSTODY_READ)
    with runtime.database.session() as session:
        return runtime.log.consistency_proof(session, first=first, second=second)
