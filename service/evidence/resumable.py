"""Resumable uploads (tus 1.0): a file sent in as many requests as the network allows.

State lives in the database (`resumable_upload`, `resumable_part`) and in the store,
never in a process: any process may take the next request, after a restart too.
- Each PATCH streams its body into a staging object of its own (a part), hashing it on
  the way; the part counts only once a conditional UPDATE moves the upload's offset from
  where the chunk started to where it ends, so two requests at one offset cannot both
  count (the loser's part is dropped and it gets 409).
- A body cut short keeps what arrived (tus core: the next PATCH starts at the new
  offset), unless it came with an Upload-Checksum, which a partial chunk cannot match.
- When the last byte arrives, the parts are streamed in order through the ordinary
  intake (`ingest_stream`): one intent, the same pipe (SHA-256, SHA-512, retention) and
  the same recording step (dedupe, locking, custody entry) as POST /v1/evidence. The
  parts are then dropped. Re-reading them costs one pass over the file (see
  docs/benchmarks.md); in return no hash state has to survive between requests.
- An upload untouched for `upload_expiry_seconds` expires: its parts are removed by
  the worker's housekeeping or by `locker fsck --repair` (`expire_uploads`).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import structlog
from sqlalchemy import update
from sqlmodel import Session, col, delete, select

from service.accounts.members import Principal
from service.accounts.permissions import Permission
from service.db.models import ResumablePart, ResumableUpload
from service.errors import (
    ChecksumMismatch,
    Conflict,
    Gone,
    InvalidInput,
    NotFound,
    StorageError,
    TooLarge,
    describe,
)
from service.evidence.intake import check_submission, ingest_stream
from service.evidence.intents import heartbeat
from service.evidence.pipe import StagedUpload, stage_file
from service.evidence.recording import IngestResult, UploadMetadata, check_incident
from service.storage import StagedObject

if TYPE_CHECKING:
    from service.runtime import Runtime

_log = structlog.get_logger("locker.resumable")


def create_upload(
    runtime: Runtime, principal: Principal, *, length: int, submitted: dict[str, str]
) -> ResumableUpload:
    """Creation: check everything that comes with the file (`submitted`: filename,
    and optionally metadata JSON and the declared sha256), then record the upload."""
    principal.require(Permission.EVIDENCE_UPLOAD)
    limit = runtime.settings.max_upload_bytes
    if length > limit:
        raise TooLarge(f"Upload-Length {length} exceeds the upload limit of {limit} bytes")
    if length == 0:
        raise InvalidInput("file: empty file")
    filename, metadata, claimed = check_submission(
        submitted.get("filename", ""), submitted.get("metadata"), submitted.get("sha256")
    )
    now = datetime.now(UTC)
    upload = ResumableUpload(
        id=str(uuid.uuid4()),
        organisation_id=principal.organisation_id,
        user_id=principal.user_id,
        length=length,
        received=0,
        filename=filename,
        metadata_json=metadata.model_dump_json(exclude_unset=True),
        claimed_sha256=claimed,
        expires_at=now + _expiry(runtime),
        created_at=now,
        updated_at=now,
    )
    with runtime.database.session() as session:
        check_incident(session, principal, metadata)
        session.add(upload)
    return upload


def _expiry(runtime: Runtime) -> timedelta:
    return timedelta(seconds=runtime.settings.upload_expiry_seconds)


def upload_state(runtime: Runtime, principal: Principal, upload_id: str) -> ResumableUpload:
    """The caller's upload: 404 if unknown or someone else's, 410 if expired or failed."""
    principal.require(Permission.EVIDENCE_UPLOAD)
    with runtime.database.session() as session:
        upload = session.get(ResumableUpload, upload_id)
    if upload is None or upload.user_id != principal.user_id:
        raise NotFound(f"no upload {upload_id}")
    if upload.status == "failed":
        raise Gone(f"upload {upload_id} failed: {upload.outcome}")
    if upload.status != "done" and _aware(upload.expires_at) <= datetime.now(UTC):
        raise Gone(f"upload {upload_id} expired at {_aware(upload.expires_at):%Y-%m-%dT%H:%M:%SZ}")
    return upload


async def settled_state(runtime: Runtime, principal: Principal, upload_id: str) -> ResumableUpload:
    """`upload_state` once no PATCH is writing into the upload, or after `_WRITE_WAIT`.

    A client whose connection was cut asks at once where to go on; the request that was
    cut may still be storing and counting what arrived. Waiting for it (a moment, as a
    rule) answers with the offset that includes those bytes. A mark older than the idle
    timeout is a dead process's, and a write still going after `_WRITE_WAIT` is a live
    one's: the answer is then the offset counted so far.
    """
    deadline, poll = time.monotonic() + _WRITE_WAIT.total_seconds(), _WRITE_POLL_S
    stale = timedelta(seconds=runtime.settings.upload_idle_timeout_seconds)
    while True:
        upload = await asyncio.to_thread(upload_state, runtime, principal, upload_id)
        since = upload.writing_since
        if since is None or _aware(since) < datetime.now(UTC) - stale:
            return upload
        if time.monotonic() >= deadline:
            return upload
        await asyncio.sleep(poll)
        poll = min(poll * 2, _WRITE_POLL_MAX_S)


_WRITE_WAIT = timedelta(seconds=10)
_WRITE_POLL_S = 0.05  # the first look again; then twice as long each time, up to:
_WRITE_POLL_MAX_S = 0.8


def _still_writing(runtime: Runtime, upload_id: str) -> None:
    # Set, not only refreshed: a second PATCH that ended meanwhile cleared the mark.
    _mark_writing(runtime, upload_id, datetime.now(UTC))


def _mark_writing(runtime: Runtime, upload_id: str, since: datetime | None) -> None:
    with runtime.database.session() as session:
        session.execute(
            update(ResumableUpload)
            .where(col(ResumableUpload.id) == upload_id)
            .values(writing_since=since)
        )


def _aware(moment: datetime) -> datetime:
    """SQLite returns naive datetimes; every time stored here is UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True, kw_only=True)
class Appended:
    """The upload after a PATCH, and its evidence record if that PATCH completed it."""

    upload: ResumableUpload
    result: IngestResult | None


async def append_chunk(
    runtime: Runtime,
    principal: Principal,
    upload_id: str,
    *,
    offset: int,
    chunks: AsyncIterator[bytes],
    checksum: bytes | None,
    body_cut: Callable[[], bool],
) -> Appended:
    """Store a PATCH body at `offset`; when it is the last byte, record the evidence.

    `body_cut()` tells, once `chunks` has ended, whether the client went away first:
    then what arrived is kept (unless a checksum was sent) and the upload waits for the
    next PATCH at the new offset.
    """
    # A cut request may still be counting what it delivered: refuse a wrong offset now,
    # before the body crosses the network again.
    upload = await settled_state(runtime, principal, upload_id)
    _check_offset(upload, offset)
    remaining = upload.length - offset
    await asyncio.to_thread(_mark_writing, runtime, upload_id, datetime.now(UTC))
    try:
        # The mark beats while the body streams: fsck and waiting requests tell a live
        # PATCH, however long, from a dead process's.
        async with heartbeat(runtime, upload_id, touch=_still_writing):
            staged = await stage_file(runtime.store, _bounded(chunks, remaining), limit=remaining)
        size = staged.digests.size
        if checksum is not None and (body_cut() or staged.digests.sha256.raw != checksum):
            await asyncio.to_thread(runtime.store.discard, staged.staged)
            if body_cut():
                return Appended(upload=upload, result=None)
            raise ChecksumMismatch(
                f"Upload-Checksum: the chunk at offset {offset} has sha256 "
                f"{staged.digests.sha256.b64}, not the one sent"
            )
        if size == 0:
            await asyncio.to_thread(runtime.store.discard, staged.staged)
        upload = await asyncio.to_thread(_advance, runtime, upload_id, offset, staged)
    finally:
        await asyncio.shield(asyncio.to_thread(_mark_writing, runtime, upload_id, None))
    if upload.received < upload.length or upload.status != "completing":
        return Appended(upload=upload, result=None)
    result = await _complete(runtime, principal, upload)
    return Appended(upload=result[0], result=result[1])


def _check_offset(upload: ResumableUpload, offset: int) -> None:
    if upload.status == "done":
        raise Conflict(f"upload {upload.id} is complete: evidence {upload.evidence_id}")
    if upload.status == "completing":
        raise Conflict(f"upload {upload.id} is being recorded; ask again with HEAD")
    if offset != upload.received:
        raise Conflict(
            f"Upload-Offset {offset} does not match the upload's offset {upload.received}"
        )


async def _bounded(chunks: AsyncIterator[bytes], remaining: int) -> AsyncIterator[bytes]:
    """The body, refused (413) as soon as it runs past the declared Upload-Length."""
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > remaining:
            raise TooLarge(f"the chunk runs past Upload-Length: {remaining} bytes remained")
        yield chunk


def _advance(
    runtime: Runtime, upload_id: str, offset: int, staged: StagedUpload
) -> ResumableUpload:
    """Count the part: move the offset from `offset` to its end, if nobody else did.

    The offset moves only by a conditional UPDATE naming where the chunk started, so of
    two requests at one offset exactly one counts; the other's part is dropped (409).
    Reaching the end also claims the completion for this request (status completing).
    """
    size = staged.digests.size
    now = datetime.now(UTC)
    with runtime.database.session() as session:
        upload = session.get(ResumableUpload, upload_id)
        assert upload is not None
        end = offset + size
        status = "completing" if end == upload.length else "receiving"
        moved = session.exec(
            update(ResumableUpload)
            .where(col(ResumableUpload.id) == upload_id)
            .where(col(ResumableUpload.received) == offset)
            .where(col(ResumableUpload.status) == "receiving")
            .values(
                received=end,
                status=status,
                updated_at=now,
                expires_at=now + _expiry(runtime),
            )
        )
        if moved.rowcount == 1 and size > 0:
            session.add(
                ResumablePart(
                    upload_id=upload_id,
                    start=offset,
                    size=size,
                    staging_key=staged.staged.staging_key,
                )
            )
    if moved.rowcount != 1:
        if size > 0:
            runtime.store.discard(staged.staged)
        raise Conflict(f"Upload-Offset {offset}: another request moved the upload's offset first")
    with runtime.database.session() as session:
        fresh = session.get(ResumableUpload, upload_id)
        assert fresh is not None
        return fresh


async def _complete(
    runtime: Runtime, principal: Principal, upload: ResumableUpload
) -> tuple[ResumableUpload, IngestResult]:
    """The last byte is stored: record the evidence through the ordinary intake."""
    try:
        result = await ingest_stream(
            runtime,
            principal,
            _parts(runtime, upload),
            filename=upload.filename,
            metadata=UploadMetadata.model_validate_json(upload.metadata_json),
            claimed=upload.claimed_sha256,
        )
    except InvalidInput as exc:
        # Refused for good (a different SHA-256, an incident gone): nothing was recorded.
        await asyncio.shield(asyncio.to_thread(_close, runtime, upload.id, "failed", describe(exc)))
        raise
    except BaseException:
        # The store or database failed: the parts are intact, a PATCH at the end retries.
        await asyncio.shield(asyncio.to_thread(_reopen, runtime, upload.id))
        raise
    done = await asyncio.shield(asyncio.to_thread(_finish, runtime, upload.id, result))
    return done, result


async def _parts(runtime: Runtime, upload: ResumableUpload) -> AsyncIterator[bytes]:
    """The upload's bytes, part after part, each checked to be where and as long as recorded."""
    with runtime.database.session() as session:
        parts = list(
            session.exec(
                select(ResumablePart)
                .where(ResumablePart.upload_id == upload.id)
                .order_by(col(ResumablePart.start))
            )
        )
    position = 0
    for part in parts:
        if part.start != position:
            raise StorageError(f"upload {upload.id}: part at {part.start}, expected {position}")
        chunks = await asyncio.to_thread(runtime.store.open_staged, _staged(part))
        try:
            while (chunk := await asyncio.to_thread(next, chunks, b"")) != b"":
                position += len(chunk)
                yield chunk
        finally:
            chunks.close()
        if position != part.start + part.size:
            raise StorageError(f"upload {upload.id}: part at {part.start} holds the wrong size")
    if position != upload.length:
        raise StorageError(f"upload {upload.id}: parts hold {position} of {upload.length} bytes")


def _staged(part: ResumablePart) -> StagedObject:
    return StagedObject(staging_key=part.staging_key, size=part.size)


def _finish(runtime: Runtime, upload_id: str, result: IngestResult) -> ResumableUpload:
    with runtime.database.session() as session:
        upload = session.get(ResumableUpload, upload_id)
        assert upload is not None
        upload.status, upload.evidence_id = "done", result.evidence.id
        upload.custody_index, upload.duplicate = result.submission.custody_index, result.duplicate
        upload.updated_at = datetime.now(UTC)
        session.add(upload)
    _drop_parts(runtime, upload_id)
    return upload


def _reopen(runtime: Runtime, upload_id: str) -> None:
    with runtime.database.session() as session:
        upload = session.get(ResumableUpload, upload_id)
        if upload is not None and upload.status == "completing":
            upload.status = "receiving"
            session.add(upload)


def _close(runtime: Runtime, upload_id: str, status: str, outcome: str) -> None:
    """End the upload as failed, dropping its parts; HEAD and PATCH then answer 410."""
    with runtime.database.session() as session:
        upload = session.get(ResumableUpload, upload_id)
        if upload is not None:
            upload.status, upload.outcome = status, outcome[:1024]
            upload.updated_at = datetime.now(UTC)
            session.add(upload)
    _drop_parts(runtime, upload_id)


def _drop_parts(runtime: Runtime, upload_id: str) -> None:
    """Discard the parts' staging objects, then their rows. A part the store fails to
    drop keeps its row, so fsck and the next expiry round still find it."""
    with runtime.database.session() as session:
        parts = list(
            session.exec(select(ResumablePart).where(ResumablePart.upload_id == upload_id))
        )
    for part in parts:
        try:
            runtime.store.discard(_staged(part))
        except StorageError as exc:
            _log.warning("upload part left", upload=upload_id, error=exc.diagnostics())
            continue
        with runtime.database.session() as session:
            session.exec(
                delete(ResumablePart)
                .where(col(ResumablePart.upload_id) == upload_id)
                .where(col(ResumablePart.start) == part.start)
            )


def terminate_upload(runtime: Runtime, principal: Principal, upload_id: str) -> None:
    """Termination: forget the upload and drop its parts (recorded evidence stays)."""
    upload = upload_state(runtime, principal, upload_id)
    if upload.status == "completing":
        raise Conflict(f"upload {upload_id} is being recorded; it can no longer be terminated")
    _remove(runtime, upload_id)


def _remove(runtime: Runtime, upload_id: str) -> bool:
    _drop_parts(runtime, upload_id)
    with runtime.database.session() as session:
        left = session.exec(
            select(ResumablePart).where(ResumablePart.upload_id == upload_id)
        ).first()
        if left is not None:
            return False
        session.exec(delete(ResumableUpload).where(col(ResumableUpload.id) == upload_id))
    return True


def expired_uploads(session: Session, now: datetime) -> list[ResumableUpload]:
    """Uploads past their expiry (done ones too: only their answer is kept that long)."""
    return list(
        session.exec(
            select(ResumableUpload)
            .where(col(ResumableUpload.expires_at) <= now)
            .order_by(col(ResumableUpload.expires_at))
        )
    )


def expire_uploads(runtime: Runtime, now: datetime | None = None) -> list[str]:
    """Remove every expired upload and its parts; the ids removed."""
    moment = now or datetime.now(UTC)
    with runtime.database.session() as session:
        expired = expired_uploads(session, moment)
    removed = [upload.id for upload in expired if _remove(runtime, upload.id)]
    if removed:
        _log.info("expired uploads removed", uploads=len(removed))
    return removed


def part_keys(session: Session) -> Iterator[str]:
    """The staging keys that uploads in progress own (fsck must not call them strays)."""
    yield from session.exec(select(ResumablePart.staging_key))
