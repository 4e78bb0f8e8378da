"""Reading evidence: records, content (each access a custody event), proofs.

Custody trails as each reader may see them are in service.evidence.trails.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlmodel import Session, col, select

from service.accounts.access import has_grant, visible_evidence
from service.accounts.members import Principal
from service.accounts.permissions import Permission
from service.core.digests import ContentDigests, digest_stream
from service.db.models import (
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
