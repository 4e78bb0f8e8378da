"""The operator's full audit: every object, leaf, node, checkpoint and record, recomputed.

`fsck` reads the database and the object store directly and trusts neither: each
finding names what was expected and what was found. With `repair`, it settles upload
intents a crash left pending, removes unlocked bytes and unfinished writes no upload
will finish, and records orphan objects (it never deletes a locked or unknown one).

It runs beside a running locker: an upload in flight refreshes its intent's heartbeat
and its bytes keep arriving, so only what has been silent for longer than the idle
timeout (LOCKER_UPLOAD_IDLE_TIMEOUT_SECONDS) counts as a crash's leftover.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from sqlmodel import Session, col, func, select

from service.core import merkle
from service.core.checkpoint import open_checkpoint, parse_verifier_keys
from service.core.digests import ContentDigests, Digest
from service.core.entry import ENTRY_FORMAT_V1, decode_entry, entry_subjects
from service.core.timestamp import TimestampInvalid, verify_timestamp
from service.custody.rotation import key_history
from service.db.models import (
    CheckpointTimestamp,
    CustodyEntry,
    CustodySubject,
    Evidence,
    EvidenceQuarantine,
    Export,
    LogHead,
    OrphanObject,
    ResumableUpload,
    SignedCheckpoint,
    Submission,
    TreeNode,
    UploadIntent,
)
from service.errors import Error
from service.evidence.intents import settle_pending, stale_after
from service.evidence.reading import verify_object
from service.evidence.recording import upload_object_key
from service.evidence.resumable import (
    expire_uploads,
    expired_uploads,
    open_upload_keys,
    part_keys,
    settle_completions,
)
from service.exports.bundles import export_prefix
from service.operations.record_checks import member_findings, record_findings
from service.storage import StagedObject, StoredObject
from service.storage.base import STAGING_PREFIX

if TYPE_CHECKING:
    from service.runtime import Runtime


@dataclass(slots=True)
class Report:
    """What fsck checked and what it found wrong."""

    findings: list[str] = field(default_factory=list)
    repairs: list[str] = field(default_factory=list)
    checked: dict[str, int] = field(default_factory=dict)

    @property
    def healthy(self) -> bool:
        return not self.findings


def fsck(runtime: Runtime, *, repair: bool = False) -> Report:
    """Audit everything; with `repair`, settle pending intents and record orphans."""
    report = Report()
    if repair:
        # Only intents silent past the idle timeout: the others belong to live requests.
        report.repairs += settle_completions(runtime)
        report.repairs += settle_pending(runtime, stale_only=True)
        report.repairs += [f"removed expired upload {u}" for u in expire_uploads(runtime)]
    # One snapshot for every check: fsck may run while the locker appends.
    with runtime.database.snapshot() as session:
        leaf_hashes = _check_leaves(session, report)
        _check_nodes(session, leaf_hashes, report)
        _check_checkpoints(runtime, session, leaf_hashes, report)
        _check_timestamps(runtime, session, report)
        evidence = list(session.exec(select(Evidence).order_by(col(Evidence.ingest_index))))
        entries = {e.index: e for e in session.exec(select(CustodyEntry))}
        _check_records(session, entries, evidence, report)
        findings, checked = record_findings(session, entries)
        report.findings += findings
        report.checked["documentation records"] = checked
        findings, checked = member_findings(session, entries)
        report.findings += findings
        report.checked["named members"] = checked
        intents = _upload_keys(session)
        live_since = datetime.now(UTC) - stale_after(runtime.settings)
        pending = [i for i in intents.values() if i.status == "pending"]
        stale = [i for i in pending if not _live(i, live_since)]
        report.checked["uploads in flight"] = len(pending) - len(stale)
        report.findings += [
            f"upload intent {i.id} is still pending, silent since "
            f"{_aware(i.heartbeat_at or i.created_at):%Y-%m-%dT%H:%M:%SZ} (--repair settles it)"
            for i in stale
        ]
        report.findings += _quarantined(session)
        report.findings += [
            f"upload {u.id} expired with {u.received} of {u.length} bytes (--repair removes it)"
            for u in expired_uploads(session, datetime.now(UTC))
        ]
    _check_objects(runtime, evidence, report, repair=repair)
    # What the store holds is listed first and the uploads read afresh after: re-hashing
    # may take hours, and an upload whose bytes are listed recorded its intent before
    # its first byte, so every listed upload's state is known, and known as of now.
    _check_orphans(runtime, evidence, report, repair=repair)
    _check_staging(runtime, report, repair=repair)
    _check_unfinished(runtime, report, repair=repair)
    return report


@dataclass(frozen=True, slots=True)
class _Uploads:
    """Uploads as of now: intents by the key they write to, and whether any upload
    (an intent beating, or a tus PATCH's write mark) is in flight."""

    by_key: dict[str, UploadIntent]
    in_flight: bool
    live_since: datetime


def _uploads_now(runtime: Runtime) -> _Uploads:
    live_since = datetime.now(UTC) - stale_after(runtime.settings)
    with runtime.database.session() as session:
        by_key = _upload_keys(session)
        marks = session.exec(
            select(func.count()).where(col(ResumableUpload.writing_since) >= live_since)
        ).one()
    in_flight = marks > 0 or any(_live(i, live_since) for i in by_key.values())
    return _Uploads(by_key=by_key, in_flight=in_flight, live_since=live_since)


def _upload_keys(session: Session) -> dict[str, UploadIntent]:
    """Every upload intent, by the key its upload writes to."""
    return {
        upload_object_key(i.organisation_id, i.id): i for i in session.exec(select(UploadIntent))
    }


def _live(intent: UploadIntent, since: datetime) -> bool:
    """A pending intent whose request beat its heartbeat lately is an upload in flight."""
    return intent.status == "pending" and _aware(intent.heartbeat_at or intent.created_at) >= since


def _quarantined(session: Session) -> list[str]:
    """Every item whose stored bytes a download found changed: restore its object."""
    rows = session.exec(select(EvidenceQuarantine).order_by(col(EvidenceQuarantine.custody_index)))
    return [
        f"evidence {q.evidence_id} is quarantined since entry {q.custody_index} "
        f"({q.detected_at:%Y-%m-%dT%H:%M:%SZ}): {q.reason}"
        for q in rows
    ]


def _indexed_subjects(session: Session) -> dict[int, set[str]]:
    indexed: dict[int, set[str]] = {}
    for row in session.exec(select(CustodySubject)):
        indexed.setdefault(row.entry_index, set()).add(row.subject)
    return indexed


def _check_leaves(session: Session, report: Report) -> list[bytes]:
    hashes: list[bytes] = []
    indexed = _indexed_subjects(session)
    # Entries past the tree's size are committed and await the sequencer (a live log).
    size = session.exec(select(LogHead.size)).one()
    waiting = session.exec(select(func.count()).where(col(CustodyEntry.index) >= size)).one()
    report.checked["log entries awaiting integration"] = waiting
    in_tree = select(CustodyEntry).where(col(CustodyEntry.index) < size)
    for entry in session.exec(in_tree.order_by(col(CustodyEntry.index))):
        if entry.index != len(hashes):
            report.findings.append(f"log: entry {len(hashes)} is missing (next is {entry.index})")
        try:
            fields = decode_entry(entry.leaf)
            if fields["index"] != entry.index:
                report.findings.append(
                    f"log entry {entry.index}: leaf says index {fields['index']}"
                )
            # The subject index is unsigned: it must name exactly what the leaf signs.
            signed = set(entry_subjects(fields))
            if fields["format"] != ENTRY_FORMAT_V1 and indexed.get(entry.index, set()) != signed:
                got = sorted(indexed.get(entry.index, set()))
                report.findings.append(
                    f"log entry {entry.index}: subject index {got}, leaf signs {sorted(signed)}"
                )
        except Error as exc:
            report.findings.append(f"log entry {entry.index}: {exc.diagnostics()}")
        hashes.append(merkle.leaf_hash(entry.leaf))
    report.checked["log entries"] = len(hashes)
    return hashes


def _check_nodes(session: Session, leaf_hashes: list[bytes], report: Report) -> None:
    expected: dict[merkle.NodeId, bytes] = {}
    for index, leaf_hash in enumerate(leaf_hashes):
        siblings = {n: expected[n] for n in merkle.append_siblings(index)}
        expected.update(merkle.hashes_for_append(index, leaf_hash, siblings))
    stored = {merkle.NodeId(n.level, n.index): n.hash for n in session.exec(select(TreeNode))}
    for node_id in sorted(expected.keys() | stored.keys()):
        want, got = expected.get(node_id), stored.get(node_id)
        if want != got:
            report.findings.append(
                f"tree node level {node_id.level} index {node_id.index}: expected "
                f"{want.hex() if want else 'none'}, stored {got.hex() if got else 'none'}"
            )
    report.checked["tree nodes"] = len(stored)


def _check_checkpoints(
    runtime: Runtime, session: Session, leaf_hashes: list[bytes], report: Report
) -> None:
    checkpoints = session.exec(select(SignedCheckpoint).order_by(col(SignedCheckpoint.size)))
    # Every key the log has had (one, unless it was rotated) may have signed a checkpoint.
    history = key_history(session, runtime.log.verifier.to_text())
    verifier = parse_verifier_keys("\n".join(history))
    count = 0
    for stored in checkpoints:
        count += 1
        try:
            checkpoint = open_checkpoint(stored.note, verifier, origin=runtime.log.origin)
        except Error as exc:
            report.findings.append(f"checkpoint {stored.size}: {exc.diagnostics()}")
            continue
        if checkpoint.size > len(leaf_hashes):
            report.findings.append(
                f"checkpoint {stored.size}: signed over {checkpoint.size} entries, "
                f"the log holds {len(leaf_hashes)}"
            )
            continue
        root = merkle.root_from_leaf_hashes(leaf_hashes[: checkpoint.size])
        if root != checkpoint.root_hash or checkpoint.size != stored.size:
            report.findings.append(
                f"checkpoint {stored.size}: signed root {checkpoint.root_hash.hex()}, "
                f"recomputed root {root.hex()}"
            )
    report.checked["checkpoints"] = count


def _check_timestamps(runtime: Runtime, session: Session, report: Report) -> None:
    """Each stored RFC 3161 token still attests its checkpoint's exact note bytes."""
    count = 0
    for token in session.exec(select(CheckpointTimestamp)):
        count += 1
        where = f"timestamp of checkpoint {token.checkpoint_size} by {token.tsa_url}"
        authority = runtime.tsa.authority(token.tsa_url) if runtime.tsa else None
        roots = authority.roots if authority else ()
        checkpoint = session.get(SignedCheckpoint, token.checkpoint_size)
        if checkpoint is None:
            report.findings.append(f"{where}: the checkpoint is missing")
            continue
        try:
            attested = verify_timestamp(token.response, checkpoint.note.encode(), roots=roots)
        except TimestampInvalid as exc:
            if roots:  # without the authority's CA only the imprint could be checked, and it was
                report.findings.append(f"{where}: {exc.diagnostics()}")
            continue
        except Error as exc:
            report.findings.append(f"{where}: {exc.diagnostics()}")
            continue
        if attested.time != token.attested_at or attested.sha256 != token.sha256:
            report.findings.append(f"{where}: the stored time or digest differs from the token")
    report.checked["checkpoint timestamps"] = count


def _check_records(
    session: Session,
    entries: dict[int, CustodyEntry],
    evidence: list[Evidence],
    report: Report,
) -> None:
    for item in evidence:
        _check_entry(
            entries.get(item.ingest_index),
            item,
            "evidence.ingested",
            report,
            extra={"sha512": item.sha512, "size": item.size},
        )
    by_id = {item.id: item for item in evidence}
    for sub in session.exec(select(Submission)):
        submitted = by_id.get(sub.evidence_id)
        if submitted is None:
            report.findings.append(f"submission {sub.id}: its evidence record is missing")
            continue
        _check_entry(entries.get(sub.custody_index), submitted, None, report, extra={})
    report.checked["evidence records"] = len(evidence)


def _check_entry(
    entry: CustodyEntry | None,
    item: Evidence,
    action: str | None,
    report: Report,
    *,
    extra: dict[str, object],
) -> None:
    where = f"evidence {item.id}"
    if entry is None:
        report.findings.append(f"{where}: its custody entry is missing")
        return
    try:
        fields = decode_entry(entry.leaf)
    except Error:
        return  # already reported with the leaves
    want = {
        "subject": f"evidence:{item.id}",
        "sha256": item.sha256,
        "organisation": item.organisation_id,
        **extra,
    }
    if action is not None:
        want["action"] = action
    for name, value in want.items():
        if fields.get(name) != value:
            report.findings.append(
                f"{where}: record has {name}={value!r}, entry {entry.index} has "
                f"{fields.get(name)!r}"
            )


def _check_objects(
    runtime: Runtime, evidence: list[Evidence], report: Report, *, repair: bool
) -> None:
    for item in evidence:
        expected = ContentDigests(
            sha256=Digest(algorithm="sha256", hex=item.sha256),
            sha512=Digest(algorithm="sha512", hex=item.sha512),
            size=item.size,
        )
        try:
            verify_object(runtime.store, item.object_key, item.object_version, expected=expected)
            _check_lock(runtime, item, report, repair=repair)
        except Error as exc:
            report.findings.append(f"evidence {item.id}: {exc.diagnostics()}")
    report.checked["objects re-hashed"] = len(evidence)


def _aware(moment: datetime) -> datetime:
    # Times are stored in UTC; SQLite gives them back without their zone.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _check_lock(runtime: Runtime, item: Evidence, report: Report, *, repair: bool) -> None:
    """Evidence on a store with Object Lock must be locked for the retention period."""
    if not runtime.store.enforces_retention:
        return
    wanted = _aware(item.received_at) + timedelta(days=runtime.settings.retention_days)
    until = runtime.store.retention_until(item.object_key, item.object_version)
    # A day of slack: the lock is set a moment after the record's time is taken.
    if until is not None and until >= wanted - timedelta(days=1):
        return
    if repair and wanted > datetime.now(UTC):
        runtime.store.lock(item.object_key, item.object_version, retain_until=wanted)
        report.repairs.append(f"evidence {item.id}: locked its object until {wanted:%Y-%m-%d}")
        return
    held = f"only until {until:%Y-%m-%d}" if until is not None else "not at all"
    report.findings.append(f"evidence {item.id}: its object is locked {held}")


def _check_orphans(
    runtime: Runtime, evidence: list[Evidence], report: Report, *, repair: bool
) -> None:
    """Objects no record explains. Unlocked bytes an upload wrote and will never record
    (it was abandoned, or its bytes proved a duplicate) are removed by `repair`; any
    other unexplained object is recorded and kept."""
    known = {item.object_key for item in evidence}
    with runtime.database.session() as session:
        known |= set(session.exec(select(OrphanObject.object_key)))
        known |= {k for k in session.exec(select(Export.object_key)) if k is not None}
        exports = session.exec(select(Export.organisation_id, Export.id)).all()
    # An export's build attempts each store a bundle below its prefix; one that died
    # after storing is explained by its export, not an orphan.
    attempts = tuple(export_prefix(organisation, export) for organisation, export in exports)
    listed = list(runtime.store.iter_objects())
    intents = _uploads_now(runtime).by_key
    orphans: list[StoredObject] = []
    for stored in listed:
        if stored.key in known or (attempts and stored.key.startswith(attempts)):
            continue
        intent = intents.get(stored.key)
        if intent is not None and intent.status == "pending":
            continue  # its to settle: finished, or abandoned and removed
        if intent is not None and runtime.store.enforces_retention:
            _check_leftover(runtime, stored, intent, report, repair=repair)
        else:
            # A filesystem cannot tell unlocked bytes from evidence: kept, as an orphan.
            orphans.append(stored)
    for orphan in orphans:
        report.findings.append(f"object {orphan.key}: stored but no evidence record explains it")
    if repair and orphans:
        _record_orphans(runtime, orphans, report)


def _check_leftover(
    runtime: Runtime, stored: StoredObject, intent: UploadIntent, report: Report, *, repair: bool
) -> None:
    """The object an upload wrote to S3 but no record uses: removed if still unlocked."""
    store = runtime.store
    if store.retention_until(stored.key, stored.version_id):
        if intent.status == "done":
            # Two uploads of the same new bytes raced and both locked theirs: the second
            # became a re-submission, its object a kept duplicate, not a fault.
            report.checked["locked duplicates of a race"] = (
                report.checked.get("locked duplicates of a race", 0) + 1
            )
        else:
            report.findings.append(
                f"object {stored.key}: locked, but upload intent {intent.id} was "
                f"{intent.status} ({intent.outcome}); kept until its retention ends"
            )
        return
    what = f"object {stored.key}: unlocked bytes of upload intent {intent.id} ({intent.status})"
    if not repair:
        report.findings.append(f"{what}, never recorded (--repair removes them)")
        return
    key, version = stored.key, stored.version_id
    store.discard(
        StagedObject(staging_key=key, size=stored.size, target_key=key, version_id=version)
    )
    report.repairs.append(f"removed {what}")


def _record_orphans(runtime: Runtime, orphans: list[StoredObject], report: Report) -> None:
    with runtime.database.session() as session:
        for orphan in orphans:
            if session.get(OrphanObject, orphan.key) is None:
                session.add(
                    OrphanObject(
                        object_key=orphan.key,
                        object_version=orphan.version_id,
                        size=orphan.size,
                        found_at=datetime.now(UTC),
                        note="found by fsck; kept, never deleted",
                    )
                )
                report.repairs.append(f"recorded orphan object {orphan.key}")


def _check_staging(runtime: Runtime, report: Report, *, repair: bool) -> None:
    """Staging bytes no pending upload or resumable upload's part owns: left by a crash
    or a failed clean-up, unless written so lately that a request may still own them."""
    listed = list(runtime.store.iter_staged())
    with runtime.database.session() as session:
        owned = set(
            session.exec(select(UploadIntent.staging_key).where(UploadIntent.status == "pending"))
        )
        owned.update(part_keys(session))
    uploads = _uploads_now(runtime)
    for staged in listed:
        if staged.staging_key in owned:
            continue
        # A staging file or part being written belongs to no record yet: while any upload
        # is in flight, only bytes silent since before it are a crash's (the next run
        # settles the rest).
        if uploads.in_flight or (
            staged.written_at is not None and _aware(staged.written_at) >= uploads.live_since
        ):
            report.checked["staging objects being written"] = (
                report.checked.get("staging objects being written", 0) + 1
            )
            continue
        if repair:
            runtime.store.discard(staged)
            report.repairs.append(f"discarded {staged.staging_key} (no upload owns it)")
        else:
            report.findings.append(
                f"{staged.staging_key}: staged bytes of an upload that never finished"
            )


def _check_unfinished(runtime: Runtime, report: Report, *, repair: bool) -> None:
    """Writes begun and never finished (S3 multipart uploads, folders of pieces): a live
    upload's while its bytes keep arriving or its intent keeps beating, a resumable
    upload's until it expires (its client may be away for hours), a crashed one's
    otherwise (their parts take space, unseen by any listing of objects, until they are
    aborted)."""
    listed = list(runtime.store.iter_unfinished())
    uploads = _uploads_now(runtime)
    with runtime.database.session() as session:
        resumable = open_upload_keys(session, datetime.now(UTC))
    live_since, live = uploads.live_since, 0
    for unfinished in listed:
        intent = uploads.by_key.get(unfinished.key)
        scratch = unfinished.key.startswith(STAGING_PREFIX)
        if (
            _aware(unfinished.active_at) >= live_since
            or (intent is not None and _live(intent, live_since))
            or (scratch and uploads.in_flight)
            or unfinished.key in resumable
        ):
            live += 1
            continue
        what = (
            f"unfinished write to {unfinished.key} (upload {unfinished.upload_id}), "
            f"silent since {_aware(unfinished.active_at):%Y-%m-%dT%H:%M:%SZ}"
        )
        if repair:
            runtime.store.abort(unfinished)
            report.repairs.append(f"aborted {what}")
        else:
            report.findings.append(f"{what} (--repair aborts it)")
    report.checked["unfinished writes in progress"] = live
