"""Reading evidence: records, content (each access a custody event), proofs.

Custody trails as each reader may see them are in service.evidence.trails.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from sqlmodel import Session, col, select

from service.accounts.access import has_grant, visible_evidence
from service.accounts.members import Principal
from service.accounts.permissions import Permission
from service.core.digests import ContentDigests, digest_stream
from service.core.entry import decode_entry
from service.db.models import (
    CustodyEntry,
    CustodySubject,
    Evidence,
    EvidenceQuarantine,
    Submission,
)
from service.errors import DigestMismatch
from service.evidence.integrity import (
    Expected,
    VerifiedChunks,
    log_mismatch,
    record_integrity_failure,
)
from service.evidence.ranges import ByteRange, RangeRequest, entity_tag
from service.storage import ObjectStore

if TYPE_CHECKING:
    from service.runtime import Runtime


@dataclass(frozen=True, slots=True, kw_only=True)
class EvidenceView:
    evidence: Evidence
    submissions: list[Submission]
    quarantine: EvidenceQuarantine | None = None


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


@dataclass(frozen=True, slots=True, kw_only=True)
class ContentRead:
    """Bytes on their way out, and the part of the object they are (None: all of it)."""

    chunks: Iterator[bytes]
    span: ByteRange | None


@dataclass(frozen=True, slots=True, kw_only=True)
class ReadEntry:
    """The custody entry a content read appends (see `record_read` for when)."""

    organisation_id: str
    actor: str
    action: str
    subjects: list[str]
    details: dict[str, object]


# A continuation range is covered by its download's logged read for this long.
RESUME_WINDOW = timedelta(hours=24)


def open_content(
    runtime: Runtime,
    principal: Principal,
    evidence_id: str,
    wanted: RangeRequest | None = None,
) -> tuple[Evidence, ContentRead]:
    """Open the exact stored version, record the access in the log, then stream.

    Reading the bytes needs the content permission, or (for an auditor) a grant on
    the item itself. A whole download is checked against the record as it passes (see
    `VerifiedChunks`): changed bytes abort it and quarantine the item. A range is read
    with the store's own ranged read of the same version and cannot be checked alone;
    a quarantined item's ranges are refused by serving it whole (which aborts).
    """
    subject = f"evidence:{evidence_id}"
    with runtime.database.session() as session:
        evidence = visible_evidence(session, principal, evidence_id)
        if not has_grant(session, principal, subject):
            principal.require(Permission.EVIDENCE_CONTENT, subject=subject)
        quarantined = session.get(EvidenceQuarantine, evidence_id) is not None
    span = None
    if wanted is not None and not quarantined:
        span = wanted.resolve(
            size=evidence.size,
            etag=entity_tag(evidence.sha256),
            last_modified=evidence.received_at,
        )
    entry = ReadEntry(
        organisation_id=principal.organisation_id,
        actor=principal.actor,
        action="evidence.content_accessed",
        subjects=[subject],
        details={"sha256": evidence.sha256},
    )
    chunks = logged_read(
        runtime,
        evidence.object_key,
        evidence.object_version,
        lambda session: record_read(runtime, session, entry, span=span),
        expected=Expected(sha256=evidence.sha256, sha512=evidence.sha512, size=evidence.size),
        span=span,
        on_mismatch=lambda difference: record_integrity_failure(
            runtime, evidence, actor=principal.actor, difference=difference
        ),
    )
    return evidence, ContentRead(chunks=chunks, span=span)


def record_read(
    runtime: Runtime, session: Session, entry: ReadEntry, *, span: ByteRange | None
) -> None:
    """Append the read's custody entry: once per download, not once per range.

    Logged: a whole read, and any range that starts at byte 0 (a download's first
    request). A range starting later continues a download; it is logged too unless the
    same actor's read of the same subject was logged within RESUME_WINDOW. So every
    byte handed out is covered by an entry naming its reader, a resumed download adds
    no entry, and a range nobody logged a read before is logged with its range.
    """
    details = dict(entry.details)
    if span is not None and not span.whole:
        if span.start > 0 and _read_recently(session, entry):
            return
        details["range"] = span.content_range()
    runtime.log.append(
        session,
        organisation_id=entry.organisation_id,
        actor=entry.actor,
        action=entry.action,
        subjects=entry.subjects,
        details=details,
    )


def _read_recently(session: Session, entry: ReadEntry) -> bool:
    since = datetime.now(UTC) - RESUME_WINDOW
    leaves = session.exec(
        select(CustodyEntry.leaf)
        .join(CustodySubject, col(CustodySubject.entry_index) == col(CustodyEntry.index))
        .where(
            CustodySubject.subject == entry.subjects[0],
            CustodyEntry.action == entry.action,
            col(CustodyEntry.recorded_at) >= since,
        )
    ).all()
    return any(decode_entry(leaf).get("actor") == entry.actor for leaf in leaves)


def logged_read(
    runtime: Runtime,
    key: str,
    version: str | None,
    record: Callable[[Session], object],
    *,
    expected: Expected,
    span: ByteRange | None = None,
    on_mismatch: Callable[[str], None] = log_mismatch,
) -> Iterator[bytes]:
    """Open a stored object (or `span` of it), then `record` the read in its own transaction.

    In that order: a read the store cannot serve is no access, and the log must not say
    bytes were handed out when they were not. A whole read is checked against
    `expected` while it is read; `on_mismatch` records a difference before the stream
    aborts. A partial read is not checked: the whole object's digests say nothing of a
    part (fsck re-hashes every object).
    """
    if span is None or span.whole:
        chunks = runtime.store.open(key, version)
    else:
        chunks = runtime.store.open_range(key, version, start=span.start, length=span.length)
    try:
        with runtime.database.session() as session:
            record(session)
    except BaseException:
        chunks.close()  # release the connection or file now, not when collected
        raise
    if span is not None and not span.whole:
        return chunks
    return VerifiedChunks(chunks, expected=expected, what=f"object {key}", on_mismatch=on_mismatch)


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
