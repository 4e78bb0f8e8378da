"""Recording a staged upload: its digests on the intent, its object locked, then one
transaction for the custody entry, the evidence record, the submission and the intent.

Steps 3 and 4 of the order of writes in `service.evidence.intake`. Everything here runs
in a worker thread. `finish_intent` is also how `locker fsck --repair` completes an
upload a crash left pending once its object is stored.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from pydantic import Field
from sqlmodel import Session, col, select

from service.accounts.access import (
    restrict_in_session,
    subject_column,
    visible_clause,
    visible_incident,
)
from service.accounts.members import Principal
from service.accounts.permissions import Permission, Role
from service.core.canonical import canonical_sha256
from service.custody import AppendedEntry
from service.db import rerun_if_raced
from service.db.models import Evidence, Submission, UploadIntent, User
from service.documentation.documents import AssertedMetadata
from service.documentation.links import is_linked, link_in_session
from service.errors import Conflict, InvalidInput, NotFound
from service.evidence.descriptions import asserted_dict, asserted_digest, describe_at_ingest
from service.evidence.media_types import sniff_media_type
from service.evidence.pipe import StagedUpload

if TYPE_CHECKING:
    from service.runtime import Runtime


class UploadMetadata(AssertedMetadata):
    """The metadata part: the collector's assertions, plus where the item goes."""

    incident_id: str | None = Field(default=None, max_length=36)
    restricted: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class IngestResult:
    """The recorded item, this submission of it, and whether the item was held already."""

    evidence: Evidence
    submission: Submission
    duplicate: bool


def upload_object_key(organisation_id: str, intent_id: str) -> str:
    """Where the bytes of one upload are written, fixed before the first of them.

    Per upload, not per content: no two uploads ever write to one key, so an object is
    locked where it was written and nothing is copied. Items stored before this scheme
    live at `org/<organisation>/sha256/<digest>`; every record names its own key.
    """
    return f"org/{organisation_id}/evidence/{intent_id}"


def record_upload(
    runtime: Runtime,
    principal: Principal,
    intent_id: str,
    staged: StagedUpload,
    *,
    metadata: UploadMetadata,
    claimed: str | None,
) -> IngestResult:
    """Check the staged bytes against the claimed digest, note the digests on the
    intent, lock the object in place (or remove it, if the organisation holds these
    bytes already) and finish the intent."""
    digests = staged.digests
    if digests.size == 0:
        raise InvalidInput("file: empty file")
    if claimed is not None and claimed != digests.sha256.hex:
        raise InvalidInput(
            f"sha256: mismatch: you sent {claimed}, the server received {digests.sha256.hex}"
        )
    _note_digests(runtime, principal, intent_id, staged, metadata=metadata, claimed=claimed)
    if find_evidence(runtime, principal.organisation_id, digests.sha256.hex) is not None:
        runtime.store.discard(staged.staged)
        return finish_intent(runtime, intent_id, object_key="", object_version=None)
    stored = runtime.store.commit(staged.staged, retain_until=runtime.retain_until())
    key, version = stored.key, stored.version_id
    # Remember where the bytes are before recording them: if we crash now, fsck
    # --repair finishes this intent from here.
    with runtime.database.session() as session:
        intent = _pending_intent(session, intent_id)
        intent.object_key, intent.object_version = key, version
        session.add(intent)
    return finish_intent(runtime, intent_id, object_key=key, object_version=version)


def _note_digests(
    runtime: Runtime,
    principal: Principal,
    intent_id: str,
    staged: StagedUpload,
    *,
    metadata: UploadMetadata,
    claimed: str | None,
) -> None:
    """Step 3's first half: the intent records what arrived, before anything is locked."""
    digests = staged.digests
    with runtime.database.session() as session:
        check_incident(session, principal, metadata)
        intent = _pending_intent(session, intent_id)
        intent.sha256, intent.sha512 = digests.sha256.hex, digests.sha512.hex
        intent.size, intent.media_type = digests.size, sniff_media_type(staged.head)
        intent.staging_key, intent.claimed_sha256 = staged.staged.staging_key, claimed
        intent.metadata_json = metadata.model_dump_json(exclude_unset=True)
        session.add(intent)


def check_incident(session: Session, principal: Principal, metadata: UploadMetadata) -> None:
    """The incident the metadata links the upload to must be one the uploader sees."""
    if metadata.incident_id is None:
        return
    try:
        visible_incident(session, principal, metadata.incident_id)
    except NotFound:
        raise InvalidInput(f"metadata.incident_id: no incident {metadata.incident_id}") from None


def find_evidence(runtime: Runtime, organisation_id: str, sha256_hex: str) -> Evidence | None:
    """The organisation's item with this SHA-256, if it holds one."""
    with runtime.database.session() as session:
        return _evidence_by_digest(session, organisation_id, sha256_hex)


def _evidence_by_digest(session: Session, organisation_id: str, sha256_hex: str) -> Evidence | None:
    return session.exec(
        select(Evidence)
        .where(Evidence.organisation_id == organisation_id)
        .where(Evidence.sha256 == sha256_hex)
    ).first()


def _same_bytes(
    session: Session, principal: Principal, sha256_hex: str
) -> tuple[Evidence | None, list[Evidence]]:
    """The organisation's records of these bytes, read at once, and the first of them the
    uploader can see (None: dedupe only within what the uploader sees).

    One read, so a record committed meanwhile cannot be missed by one question and seen
    by the next: two uploads racing to make the first record both pick copy number 0,
    and the loser's rerun finds the winner's.
    """
    records = list(
        session.exec(
            select(Evidence)
            .where(Evidence.organisation_id == principal.organisation_id)
            .where(Evidence.sha256 == sha256_hex)
            .order_by(col(Evidence.copy_number))
        )
    )
    if not records:
        return None, []
    seen = set(
        session.exec(
            select(Evidence.id)
            .where(col(Evidence.id).in_([r.id for r in records]))
            .where(visible_clause(principal, subject_column("evidence", col(Evidence.id))))
        )
    )
    return next((r for r in records if r.id in seen), None), records


@rerun_if_raced
def finish_intent(
    runtime: Runtime, intent_id: str, *, object_key: str, object_version: str | None
) -> IngestResult:
    """Record a stored upload: log entry, evidence record, submission, intent done.

    Shared by the upload path and by `locker fsck --repair`, which finishes intents a
    crash left pending. One transaction: all of it commits, or none of it. If a
    concurrent upload of the same bytes records the evidence first, the rerun makes
    ours a re-submission of it.
    """
    with runtime.database.session() as session:
        upload = _recorded_upload(session, intent_id)
        intent = upload.intent
        # Dedupe only within what the uploader sees (docs/design.md, "Visibility").
        evidence, records = _same_bytes(session, upload.principal, upload.sha256)
        duplicate = evidence is not None
        if evidence is None:
            if records and not object_key:  # the same bytes, already stored and locked
                object_key, object_version = records[0].object_key, records[0].object_version
            copy = len(records)
            evidence, entry = _ingest_new(
                runtime, session, upload, (object_key, object_version), copy
            )
        else:
            details = _submission_details(upload)
            entry = _append(runtime, session, upload, "evidence.resubmitted", evidence.id, details)
        submission = _add_submission(session, intent, evidence, entry)
        _apply_upload_controls(runtime, session, upload, evidence, duplicate)
        intent.status, intent.finished_at = "done", datetime.now(UTC)
        intent.object_key, intent.object_version = (
            (object_key, object_version)
            if object_key
            else (evidence.object_key, evidence.object_version)
        )
        session.add(intent)
    return IngestResult(evidence=evidence, submission=submission, duplicate=duplicate)


@dataclass(frozen=True, slots=True, kw_only=True)
class _RecordedUpload:
    """A pending intent whose bytes are stored, with its uploader and metadata."""

    intent: UploadIntent
    principal: Principal
    metadata: UploadMetadata
    sha256: str
    sha512: str
    size: int


def _pending_intent(session: Session, intent_id: str) -> UploadIntent:
    """The intent, its row locked to the end of the transaction; Conflict unless pending.

    A worker settles an intent whose upload stopped sending heartbeats; should that
    upload's request wake up afterwards, whichever of the two comes second finds the
    intent settled and writes nothing (`service.evidence.intents`).
    """
    intent = session.get(UploadIntent, intent_id, with_for_update=True)
    if intent is None:
        raise NotFound(f"no upload intent {intent_id}")
    if intent.status != "pending":
        raise Conflict(f"upload intent {intent_id} was settled meanwhile ({intent.status})")
    return intent


def _recorded_upload(session: Session, intent_id: str) -> _RecordedUpload:
    intent = _pending_intent(session, intent_id)
    if intent.sha256 is None or intent.sha512 is None or intent.size is None:
        raise NotFound(f"no recorded upload intent {intent_id}")
    return _RecordedUpload(
        intent=intent,
        principal=uploader(session, intent.organisation_id, intent.user_id),
        metadata=UploadMetadata.from_stored_json(intent.metadata_json),
        sha256=intent.sha256,
        sha512=intent.sha512,
        size=intent.size,
    )


def uploader(session: Session, organisation_id: str, user_id: str) -> Principal:
    """The uploader with their role of now: the workers may finish an upload much later."""
    user = session.get(User, user_id)
    assert user is not None
    return Principal(user_id=user_id, organisation_id=organisation_id, role=Role(user.role))


def _submission_details(upload: _RecordedUpload) -> dict[str, object]:
    """The custody details of every submission: the bytes and what came with them."""
    intent = upload.intent
    submitted = {"filename": intent.filename, "metadata": json.loads(intent.metadata_json)}
    return {
        "sha256": upload.sha256,
        "size": upload.size,
        "submission_sha256": canonical_sha256(submitted),
    }


def _ingest_new(
    runtime: Runtime,
    session: Session,
    upload: _RecordedUpload,
    stored: tuple[str, str | None],
    copy_number: int,
) -> tuple[Evidence, AppendedEntry]:
    """Log `evidence.ingested`, then write the evidence record and its description."""
    intent, evidence_id = upload.intent, str(uuid.uuid4())
    asserted = asserted_dict(upload.metadata)
    details = _submission_details(upload) | {
        "sha512": upload.sha512,
        "media_type": intent.media_type or "",
        "asserted_sha256": asserted_digest(asserted),
    }
    entry = _append(runtime, session, upload, "evidence.ingested", evidence_id, details)
    evidence = Evidence(
        id=evidence_id,
        organisation_id=intent.organisation_id,
        sha256=upload.sha256,
        sha512=upload.sha512,
        size=upload.size,
        media_type=intent.media_type or "application/octet-stream",
        object_key=stored[0],
        object_version=stored[1],
        received_at=entry.time,
        ingest_index=entry.index,
        copy_number=copy_number,
    )
    session.add(evidence)
    session.flush()
    describe_at_ingest(
        session, evidence, asserted, recorded_by=intent.user_id, custody_index=entry.index
    )
    return evidence, entry


def _append(
    runtime: Runtime,
    session: Session,
    upload: _RecordedUpload,
    action: str,
    evidence_id: str,
    details: dict[str, object],
) -> AppendedEntry:
    return runtime.log.append(
        session,
        organisation_id=upload.intent.organisation_id,
        actor=upload.principal.actor,
        action=action,
        subjects=[f"evidence:{evidence_id}"],
        details=details,
    )


def _add_submission(
    session: Session, intent: UploadIntent, evidence: Evidence, entry: AppendedEntry
) -> Submission:
    session.flush()
    submission = Submission(
        id=intent.id,  # one submission per intent: a retry of the upload finds its own
        evidence_id=evidence.id,
        organisation_id=intent.organisation_id,
        submitted_by=intent.user_id,
        filename=intent.filename,
        metadata_json=intent.metadata_json,
        received_at=entry.time,
        custody_index=entry.index,
    )
    session.add(submission)
    return submission


def _apply_upload_controls(
    runtime: Runtime, session: Session, upload: _RecordedUpload, evidence: Evidence, duplicate: bool
) -> None:
    """Link the item to the incident the metadata names, and restrict it if asked."""
    principal, metadata = upload.principal, upload.metadata
    if metadata.incident_id is not None:
        incident = visible_incident(session, principal, metadata.incident_id)
        if not is_linked(session, incident.id, evidence.id):
            link_in_session(
                runtime, session, principal, incident, evidence, reason="linked at upload"
            )
    if metadata.restricted:
        subject = f"evidence:{evidence.id}"
        if duplicate:
            # Not the uploader's new item: restricting it is the restrict permission's.
            principal.require(Permission.RESTRICT, subject=subject)
        restrict_in_session(runtime, session, principal, subject)
