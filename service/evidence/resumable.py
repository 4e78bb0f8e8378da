"""Resumable uploads (tus 1.0): a file sent in as many requests as the network allows.

State lives in the database (`resumable_upload`, `resumable_part`) and in the store, so
any process may take the next request, after a restart too.
- The upload's object key is fixed at creation (`upload_object_key`, per upload). Its
  bytes are written once, as pieces of one write at that key (an S3 multipart upload;
  `service.evidence.pieces`), never as copies to be read back and written again.
- A PATCH counts only once a conditional UPDATE moves the upload's offset from where
  the chunk started to where it ends, so of two requests at one offset one counts; the
  other's pieces are never listed, and the store drops them with the write.
- A body cut short keeps what arrived (tus core: the next PATCH starts at the new
  offset), unless it came with an Upload-Checksum, which a partial chunk cannot match.
- When the last byte arrives, the pieces are joined where they are, and the object goes
  through the same recording step (dedupe, locking, custody entry) as POST
  /v1/evidence, under an intent whose id is the upload's. Its digests are the running
  ones the receiving process kept, or, if PATCHes landed on other processes, are read
  back from the store once.
- An upload untouched for `upload_expiry_seconds` expires: its write and the bytes it
  held aside are removed by the worker's housekeeping or by `locker fsck --repair`.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import structlog
from sqlalchemy import case, update
from sqlmodel import Session, col, delete, select

from service.accounts.members import Principal
from service.accounts.permissions import Permission
from service.db.models import Evidence, ResumablePart, ResumableUpload, Submission, UploadIntent
from service.errors import (
    ChecksumMismatch,
    Conflict,
    Error,
    Gone,
    InvalidInput,
    NotFound,
    ObjectMissing,
    StorageError,
    TooLarge,
    describe,
)
from service.evidence.intake import check_submission
from service.evidence.intents import abandon_intent, discard_quietly, heartbeat
from service.evidence.pieces import (
    Destination,
    DigestCache,
    HeldPart,
    Received,
    piece_bytes,
    receive,
)
from service.evidence.pipe import RunningDigests, StagedUpload
from service.evidence.recording import (
    IngestResult,
    UploadMetadata,
    check_incident,
    record_upload,
    upload_object_key,
    uploader,
)
from service.metrics import UPLOAD_READ_BACK_BYTES
from service.storage import ObjectStore, Piece, StagedObject, UnfinishedWrite
from service.storage.base import STAGING_PREFIX

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


def _start_writing(runtime: Runtime, upload_id: str) -> list[HeldPart]:
    """Count this PATCH among the upload's writers and mark the upload as written into;
    the upload's bytes held aside, which this PATCH makes pieces of first."""
    now = datetime.now(UTC)
    stale = now - timedelta(seconds=runtime.settings.upload_idle_timeout_seconds)
    writers = col(ResumableUpload.writers)
    since = col(ResumableUpload.writing_since)
    # A stale mark is a dead process's: its count goes with it.
    counted = case((since.is_(None) | (since < stale), 1), else_=writers + 1)
    with runtime.database.session() as session:
        session.execute(
            update(ResumableUpload)
            .where(col(ResumableUpload.id) == upload_id)
            .values(writers=counted, writing_since=now)
        )
        return _held_parts_in(session, upload_id)


def _still_writing(runtime: Runtime, upload_id: str) -> None:
    _update_upload(runtime, upload_id, writing_since=datetime.now(UTC))


def _end_writing(runtime: Runtime, upload_id: str) -> None:
    """This PATCH has ended without moving the offset (`_advance` ends the others)."""
    _update_upload(runtime, upload_id, **_ended_writing())


def _ended_writing() -> dict[str, object]:
    """One writer fewer; the mark goes once no other PATCH is writing."""
    writers = col(ResumableUpload.writers)
    return {
        "writers": case((writers > 1, writers - 1), else_=0),
        "writing_since": case((writers > 1, col(ResumableUpload.writing_since)), else_=None),
    }


def _update_upload(runtime: Runtime, upload_id: str, **values: object) -> None:
    with runtime.database.session() as session:
        session.execute(
            update(ResumableUpload).where(col(ResumableUpload.id) == upload_id).values(**values)
        )


def _aware(moment: datetime) -> datetime:
    """SQLite returns naive datetimes; every time stored here is UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True, kw_only=True)
class Appended:
    """The upload after a PATCH, and its evidence record if that PATCH completed it."""

    upload: ResumableUpload
    result: IngestResult | None


@dataclass(frozen=True, slots=True, kw_only=True)
class PatchBody:
    """A PATCH's body: its chunks; its declared length (Content-Length), if any, so its
    pieces can stream to the store while they arrive; and `cut()`, which tells once the
    chunks have ended whether the client went away first."""

    chunks: AsyncIterator[bytes]
    length: int | None
    cut: Callable[[], bool]


# This process's running digests of the uploads it received bytes for (see pieces.py).
_digests = DigestCache()


async def append_chunk(
    runtime: Runtime,
    principal: Principal,
    upload_id: str,
    *,
    offset: int,
    body: PatchBody,
    checksum: bytes | None,
) -> Appended:
    """Store a PATCH body at `offset`; when it is the last byte, record the evidence.

    A body the client cut short is kept as far as it arrived (unless a checksum was
    sent) and the upload waits for the next PATCH at the new offset.
    """
    # A cut request may still be counting what it delivered: refuse a wrong offset now,
    # before the body crosses the network again.
    upload = await settled_state(runtime, principal, upload_id)
    _check_offset(upload, offset)
    digests = _digests.take(upload_id, offset) or (RunningDigests() if offset == 0 else None)
    # A chunk that is not kept (refused by its checksum, or failed by the store) leaves
    # the digests as they were before it, for the next PATCH at this offset.
    before = digests.copy() if digests is not None else None
    held = await asyncio.to_thread(_start_writing, runtime, upload_id)
    counted = False
    try:
        # The mark beats while the body streams: fsck and waiting requests tell a live
        # PATCH, however long, from a dead process's.
        try:
            async with heartbeat(runtime, upload_id, touch=_still_writing):
                received = await receive(
                    await _destination(runtime, upload),
                    _bounded(body.chunks, upload.length - offset),
                    offset=offset,
                    length=upload.length,
                    body_length=body.length,
                    held=held,
                    digests=digests,
                    want_sha256=checksum is not None,
                )
        except BaseException:
            if before is not None:
                _digests.keep(upload_id, before)
            raise
        if checksum is not None and (body.cut() or received.sha256 != checksum):
            await asyncio.to_thread(_drop_held, runtime, received.held)
            if before is not None:
                _digests.keep(upload_id, before)
            if body.cut():
                return Appended(upload=upload, result=None)
            raise ChecksumMismatch(
                f"Upload-Checksum: the chunk at offset {offset} has sha256 "
                f"{base64.b64encode(received.sha256 or b'').decode()}, not the one sent"
            )
        upload = await asyncio.to_thread(_advance, runtime, upload_id, offset, held, received)
        counted = True
    finally:
        if not counted:
            await asyncio.shield(asyncio.to_thread(_end_writing, runtime, upload_id))
    if received.digests is not None:
        _digests.keep(upload_id, received.digests)
    if upload.received < upload.length or upload.status != "completing":
        return Appended(upload=upload, result=None)
    known = _digests.take(upload_id, upload.length)
    result = await _complete(runtime, principal, upload, known)
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


def _key(upload: ResumableUpload) -> str:
    """The upload's object key, fixed when the upload is created."""
    return upload_object_key(upload.organisation_id, upload.id)


async def _destination(runtime: Runtime, upload: ResumableUpload) -> Destination:
    write_id = upload.write_id
    if write_id is None:
        write_id = await asyncio.to_thread(_begin_write, runtime, upload)
    return Destination(
        store=runtime.store,
        key=_key(upload),
        write_id=write_id,
        next_number=functools.partial(asyncio.to_thread, _next_piece, runtime, upload.id),
        piece_bytes=piece_bytes(upload.length),
    )


def _removed(upload_id: str) -> Gone:
    """The upload was terminated or expired while this request worked on it."""
    return Gone(f"upload {upload_id} was removed meanwhile (terminated or expired)")


def _begin_write(runtime: Runtime, upload: ResumableUpload) -> str:
    """Begin the upload's write at its key, once: of two requests that begin it at the
    same moment, the second drops its own and uses the first's."""
    key = _key(upload)
    write_id = runtime.store.begin_pieces(key)
    with runtime.database.session() as session:
        won = session.exec(
            update(ResumableUpload)
            .where(col(ResumableUpload.id) == upload.id)
            .where(col(ResumableUpload.write_id).is_(None))
            .values(write_id=write_id)
        ).rowcount
        first = session.get(ResumableUpload, upload.id)
    if won == 1:
        return write_id
    runtime.store.abort(UnfinishedWrite(key=key, upload_id=write_id, active_at=datetime.now(UTC)))
    if first is None or first.write_id is None:
        raise NotFound(f"no upload {upload.id}")
    return first.write_id


def _next_piece(runtime: Runtime, upload_id: str) -> int:
    """A piece number no other request of this upload will ever use."""
    with runtime.database.session() as session:
        number = session.exec(
            update(ResumableUpload)
            .where(col(ResumableUpload.id) == upload_id)
            .values(next_piece=col(ResumableUpload.next_piece) + 1)
            .returning(col(ResumableUpload.next_piece))
        ).scalar_one_or_none()
    if number is None:
        raise _removed(upload_id)
    return int(number) - 1


def _held_parts_in(session: Session, upload_id: str) -> list[HeldPart]:
    """The upload's counted bytes held aside (they come right before its offset)."""
    rows = session.exec(
        select(ResumablePart)
        .where(ResumablePart.upload_id == upload_id)
        .where(col(ResumablePart.staging_key).is_not(None))
        .order_by(col(ResumablePart.start))
    ).all()
    return [
        HeldPart(start=row.start, staged=StagedObject(staging_key=row.staging_key, size=row.size))
        for row in rows
        if row.staging_key is not None
    ]


def _drop_held(runtime: Runtime, held: HeldPart | None) -> None:
    if held is not None:
        runtime.store.discard(held.staged)


def _advance(
    runtime: Runtime,
    upload_id: str,
    offset: int,
    held: Sequence[HeldPart],
    received: Received,
) -> ResumableUpload:
    """Count the PATCH: move the offset from `offset` to its end, if nobody else did.

    The offset moves only by a conditional UPDATE naming where the chunk started, so of
    two requests at one offset exactly one counts; the other's pieces stay unlisted
    (the store drops them) and it gets 409. In the same transaction the bytes held
    aside that this PATCH made pieces of give way to its pieces and its own tail, and
    this PATCH stops counting among the upload's writers. Reaching the end also claims
    the completion for this request (status completing).
    """
    now = datetime.now(UTC)
    with runtime.database.session() as session:
        upload = session.get(ResumableUpload, upload_id)
        if upload is None:
            raise _removed(upload_id)
        end = offset + received.size
        moved = session.exec(
            update(ResumableUpload)
            .where(col(ResumableUpload.id) == upload_id)
            .where(col(ResumableUpload.received) == offset)
            .where(col(ResumableUpload.status) == "receiving")
            .values(
                received=end,
                status="completing" if end == upload.length else "receiving",
                updated_at=now,
                expires_at=now + _expiry(runtime),
                **_ended_writing(),
            )
        )
        if moved.rowcount == 1:
            _replace_parts(session, upload_id, held, received)
            session.refresh(upload)
    if moved.rowcount != 1:
        _drop_held(runtime, received.held)
        raise Conflict(f"Upload-Offset {offset}: another request moved the upload's offset first")
    for part in held:
        discard_quietly(runtime, upload_id, part.staged)
    return upload


def _replace_parts(
    session: Session, upload_id: str, held: Sequence[HeldPart], received: Received
) -> None:
    if held:
        session.exec(
            delete(ResumablePart)
            .where(col(ResumablePart.upload_id) == upload_id)
            .where(col(ResumablePart.start).in_([part.start for part in held]))
        )
    for placed in received.pieces:
        piece = placed.piece
        session.add(
            ResumablePart(
                upload_id=upload_id,
                start=placed.start,
                size=piece.size,
                number=piece.number,
                tag=piece.tag,
            )
        )
    if received.held is not None:
        tail = received.held
        session.add(
            ResumablePart(
                upload_id=upload_id,
                start=tail.start,
                size=tail.staged.size,
                staging_key=tail.staged.staging_key,
            )
        )


async def _complete(
    runtime: Runtime, principal: Principal, upload: ResumableUpload, known: RunningDigests | None
) -> tuple[ResumableUpload, IngestResult | None]:
    """The last byte is stored: join the pieces at the upload's key and record them.

    The upload's intent (its id is the upload's) is recorded first, so a crash from
    here on is settled like any upload's. A failure that leaves the bytes where they
    are (an outage) leaves the intent pending and the upload open: a PATCH at the end
    takes the intent over and tries again, or the workers complete it in its place
    (`settle_completions`). Bytes refused for good (a different SHA-256, an incident
    gone, no bytes ever stored) fail it.
    """
    intent = await asyncio.to_thread(_completion_intent, runtime, principal, upload)
    if intent.status == "done":
        return await asyncio.to_thread(_finish_settled, runtime, upload.id, intent), None
    if intent.status != "pending":
        reason = f"recording failed: {intent.outcome}"
        await asyncio.to_thread(_close, runtime, upload.id, "failed", reason)
        raise Gone(f"upload {upload.id} failed: {reason}")
    staged: StagedObject | None = None
    try:
        async with heartbeat(runtime, intent.id):
            staged = await asyncio.to_thread(_joined, runtime, upload, intent)
            digested = await _digested(runtime, upload, staged, known)
            result = await asyncio.to_thread(
                record_upload,
                runtime,
                principal,
                intent.id,
                digested,
                metadata=UploadMetadata.model_validate_json(upload.metadata_json),
                claimed=upload.claimed_sha256,
            )
    except (InvalidInput, ObjectMissing) as exc:
        reason = describe(exc)
        key = _key(upload)
        bytes_at_key = staged or StagedObject(staging_key=key, size=0, target_key=key)
        await asyncio.shield(
            asyncio.to_thread(abandon_intent, runtime, intent.id, reason, bytes_at_key)
        )
        await asyncio.shield(asyncio.to_thread(_close, runtime, upload.id, "failed", reason))
        raise
    except BaseException:
        await asyncio.shield(asyncio.to_thread(_reopen, runtime, upload.id))
        raise
    done = await asyncio.shield(asyncio.to_thread(_finish, runtime, upload.id, result))
    return done, result


def _completion_intent(
    runtime: Runtime, principal: Principal, upload: ResumableUpload
) -> UploadIntent:
    """The upload's intent, recorded now, or taken over from an earlier try."""
    now = datetime.now(UTC)
    with runtime.database.session() as session:
        intent = session.get(UploadIntent, upload.id, with_for_update=True)
        if intent is None:
            intent = UploadIntent(
                id=upload.id,
                organisation_id=principal.organisation_id,
                user_id=principal.user_id,
                filename=upload.filename,
                metadata_json="{}",
                claimed_sha256=upload.claimed_sha256,
                staging_key=_key(upload),
                created_at=now,
                heartbeat_at=now,
            )
        elif intent.status == "pending":
            intent.heartbeat_at = now
        session.add(intent)
    return intent


def _joined(runtime: Runtime, upload: ResumableUpload, intent: UploadIntent) -> StagedObject:
    """The upload's object, its pieces joined at its key (by an earlier try, maybe)."""
    key, store = _key(upload), runtime.store
    if intent.staging_key is not None and intent.staging_key != key:
        # Joined before, into a staging file (a filesystem store), named on the intent.
        return StagedObject(staging_key=intent.staging_key, size=upload.length, target_key=key)
    joined = _object_at(store, key)
    if joined is not None:
        return joined
    if upload.write_id is None:
        raise ObjectMissing(f"upload {upload.id}: no bytes were ever stored")
    try:
        staged = store.finish_pieces(key, upload.write_id, _pieces(runtime, upload))
    except ObjectMissing:
        # An earlier try may have joined them after all (its answer lost to a timeout,
        # or it died): the object is then at the key. Pieces never go missing for good
        # while the upload is open, so anything else is an outage, retried later.
        joined = _object_at(store, key)
        if joined is None:
            raise StorageError(f"upload {upload.id}: its pieces are not in the store") from None
        return joined
    if staged.staging_key != key:
        with runtime.database.session() as session:
            session.execute(
                update(UploadIntent)
                .where(col(UploadIntent.id) == intent.id)
                .values(staging_key=staged.staging_key)
            )
    return staged


def _object_at(store: ObjectStore, key: str) -> StagedObject | None:
    found = store.head(key)
    if found is None:
        return None
    return StagedObject(
        staging_key=key, size=found.size, target_key=key, version_id=found.version_id
    )


def _pieces(runtime: Runtime, upload: ResumableUpload) -> list[Piece]:
    """The upload's pieces in order, checked to hold its bytes end to end."""
    with runtime.database.session() as session:
        rows = session.exec(
            select(ResumablePart)
            .where(ResumablePart.upload_id == upload.id)
            .order_by(col(ResumablePart.start))
        ).all()
    position, pieces = 0, []
    for row in rows:
        if row.start != position or row.number is None or row.tag is None:
            raise StorageError(f"upload {upload.id}: no piece at {position}")
        pieces.append(Piece(number=row.number, size=row.size, tag=row.tag))
        position += row.size
    if position != upload.length:
        raise StorageError(f"upload {upload.id}: pieces hold {position} of {upload.length} bytes")
    return pieces


async def _digested(
    runtime: Runtime, upload: ResumableUpload, staged: StagedObject, known: RunningDigests | None
) -> StagedUpload:
    """The joined object with its digests: the running ones, if this process received
    every byte and the object is as long; else read back once (see docs/benchmarks.md
    for what that costs)."""
    if known is not None and known.size == upload.length == staged.size:
        return known.staged(staged)
    started = time.perf_counter()
    digested = await asyncio.to_thread(_read_back, runtime, staged, upload.length)
    UPLOAD_READ_BACK_BYTES.inc(upload.length)
    _log.info(
        "upload digested from the store",
        upload=upload.id,
        size=upload.length,
        seconds=round(time.perf_counter() - started, 3),
    )
    return digested


def _read_back(runtime: Runtime, staged: StagedObject, length: int) -> StagedUpload:
    digests = RunningDigests()
    for chunk in runtime.store.open_staged(staged):
        digests.update(memoryview(chunk))
    if digests.size != length:
        raise StorageError(f"{staged.target_key}: holds {digests.size} of {length} bytes")
    return digests.staged(staged)


def _finish(runtime: Runtime, upload_id: str, result: IngestResult) -> ResumableUpload:
    with runtime.database.session() as session:
        upload = session.get(ResumableUpload, upload_id)
        if upload is None:
            raise _removed(upload_id)
        upload.status, upload.evidence_id = "done", result.evidence.id
        upload.custody_index, upload.duplicate = result.submission.custody_index, result.duplicate
        upload.updated_at = datetime.now(UTC)
        session.add(upload)
        _forget_parts(session, upload_id)
    return upload


def _finish_settled(runtime: Runtime, upload_id: str, intent: UploadIntent) -> ResumableUpload:
    """An earlier try recorded the upload but failed before saying so: answer with that.

    The submission it made carries the intent's id; one recorded before submissions
    did is found by its bytes and uploader.
    """
    with runtime.database.session() as session:
        upload = session.get(ResumableUpload, upload_id)
        if upload is None:
            raise _removed(upload_id)
        submission = (
            session.get(Submission, intent.id)
            or session.exec(
                select(Submission)
                .join(Evidence, col(Evidence.id) == col(Submission.evidence_id))
                .where(Evidence.organisation_id == intent.organisation_id)
                .where(Evidence.sha256 == (intent.sha256 or ""))
                .where(Submission.submitted_by == intent.user_id)
                .order_by(col(Submission.custody_index).desc())
            ).first()
        )
        if submission is None:
            raise NotFound(f"upload {upload_id}: recorded, but its submission is not found")
        upload.status, upload.evidence_id = "done", submission.evidence_id
        upload.custody_index = submission.custody_index
        upload.duplicate = intent.object_key != _key(upload)
        upload.updated_at = datetime.now(UTC)
        session.add(upload)
        _forget_parts(session, upload_id)
    return upload


def _forget_parts(session: Session, upload_id: str) -> None:
    """The pieces are the object now (or were dropped with it): their rows go."""
    session.exec(delete(ResumablePart).where(col(ResumablePart.upload_id) == upload_id))


def _reopen(runtime: Runtime, upload_id: str) -> None:
    with runtime.database.session() as session:
        upload = session.get(ResumableUpload, upload_id)
        if upload is not None and upload.status == "completing":
            upload.status = "receiving"
            session.add(upload)


def settle_completions(runtime: Runtime) -> list[str]:
    """Complete the uploads whose last byte arrived but whose completion no process is
    doing (it died, or failed with an outage and no PATCH came again); one line each.

    Their clients may never ask again: a tus client that learns from HEAD that every
    byte arrived considers its work done. So the workers (and `locker fsck --repair`)
    complete such an upload as its last PATCH would have, for its uploader, once the
    upload and its intent have been silent past the idle timeout.
    """
    now = datetime.now(UTC)
    cutoff = now - timedelta(seconds=runtime.settings.upload_idle_timeout_seconds)
    with runtime.database.session() as session:
        stuck = session.exec(
            select(ResumableUpload.id)
            .where(col(ResumableUpload.status).in_(_OPEN))
            .where(col(ResumableUpload.received) == col(ResumableUpload.length))
            .where(col(ResumableUpload.expires_at) > now)
            .where(col(ResumableUpload.updated_at) < cutoff)
            .order_by(col(ResumableUpload.updated_at))
        ).all()
    lines = []
    for upload_id in stuck:
        claimed = _claim_stuck(runtime, upload_id, cutoff)
        if claimed is None:
            continue
        upload, principal = claimed
        try:
            # Exactly what the client's PATCH at the end (empty body) would do.
            done = asyncio.run(
                append_chunk(
                    runtime,
                    principal,
                    upload_id,
                    offset=upload.length,
                    body=PatchBody(chunks=_no_bytes(), length=0, cut=lambda: False),
                    checksum=None,
                )
            )
        except (InvalidInput, Gone, NotFound) as exc:
            lines.append(f"upload {upload_id} failed at completion: {describe(exc)}")
        except Error as exc:
            # An outage, its client came back first, or its uploader may no longer
            # upload: its bytes stay where they are, until it completes or expires.
            _log.warning("upload left to complete later", upload=upload_id, error=describe(exc))
        else:
            lines.append(f"completed upload {upload_id}: evidence {done.upload.evidence_id}")
    return lines


async def _no_bytes() -> AsyncIterator[bytes]:
    nothing: tuple[bytes, ...] = ()
    for chunk in nothing:
        yield chunk


_OPEN = ("receiving", "completing")


def _claim_stuck(
    runtime: Runtime, upload_id: str, cutoff: datetime
) -> tuple[ResumableUpload, Principal] | None:
    """Take the completion over if nobody has touched the upload or its intent since
    `cutoff`: the upload is open to a PATCH at its end again, and looks touched now, so
    no other worker takes it too."""
    with runtime.database.session() as session:
        upload = session.get(ResumableUpload, upload_id, with_for_update=True)
        if upload is None or upload.status not in _OPEN or upload.received != upload.length:
            return None
        marks = [upload.updated_at, upload.writing_since]
        intent = session.get(UploadIntent, upload_id)
        if intent is not None and intent.status == "pending":
            marks.append(intent.heartbeat_at or intent.created_at)
        if any(mark is not None and _aware(mark) >= cutoff for mark in marks):
            return None
        upload.status, upload.updated_at = "receiving", datetime.now(UTC)
        session.add(upload)
        principal = uploader(session, upload.organisation_id, upload.user_id)
    return upload, principal


def _close(runtime: Runtime, upload_id: str, status: str, outcome: str) -> None:
    """End the upload as failed, dropping its bytes; HEAD and PATCH then answer 410."""
    with runtime.database.session() as session:
        upload = session.get(ResumableUpload, upload_id)
        if upload is not None:
            upload.status, upload.outcome = status, outcome[:1024]
            upload.updated_at = datetime.now(UTC)
            session.add(upload)
    _drop_bytes(runtime, upload_id)


def _drop_bytes(runtime: Runtime, upload_id: str) -> bool:
    """Drop an unfinished upload's write at its key (its pieces) and the bytes it held
    aside, then their rows. Bytes the store fails to drop keep their rows, so fsck and
    the next expiry round still find them; False then. A recorded upload's object is
    evidence: only its rows go."""
    with runtime.database.session() as session:
        upload = session.get(ResumableUpload, upload_id)
        if upload is None:
            return True
        held = _held_parts_in(session, upload_id)
    try:
        if upload.status != "done" and upload.write_id is not None:
            key = _key(upload)
            runtime.store.discard(StagedObject(staging_key=key, size=0, target_key=key))
        for part in held:
            runtime.store.discard(part.staged)
    except StorageError as exc:
        _log.warning("upload bytes left", upload=upload_id, error=exc.diagnostics())
        return False
    with runtime.database.session() as session:
        _forget_parts(session, upload_id)
    return True


def terminate_upload(runtime: Runtime, principal: Principal, upload_id: str) -> None:
    """Termination: forget the upload and drop its bytes (recorded evidence stays)."""
    upload = upload_state(runtime, principal, upload_id)
    if upload.status != "done" and not _stop_receiving(runtime, upload_id):
        raise Conflict(f"upload {upload_id} is being recorded; it can no longer be terminated")
    _remove(runtime, upload_id)


def _stop_receiving(runtime: Runtime, upload_id: str) -> bool:
    """Close the upload to PATCHes first, so that a last PATCH cannot begin recording
    the bytes being dropped; False if one already did."""
    with runtime.database.session() as session:
        stopped = session.exec(
            update(ResumableUpload)
            .where(col(ResumableUpload.id) == upload_id)
            .where(col(ResumableUpload.status) == "receiving")
            .values(status="failed", outcome="terminated by its uploader")
        ).rowcount
    return bool(stopped == 1)


def _remove(runtime: Runtime, upload_id: str) -> bool:
    if not _drop_bytes(runtime, upload_id):
        return False
    with runtime.database.session() as session:
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
    """Remove every expired upload and its bytes; the ids removed."""
    moment = now or datetime.now(UTC)
    with runtime.database.session() as session:
        expired = expired_uploads(session, moment)
    # A PATCH that began just before the expiry is let finish (it moves the expiry on).
    live = moment - timedelta(seconds=runtime.settings.upload_idle_timeout_seconds)
    removed = [
        upload.id
        for upload in expired
        if (upload.writing_since is None or _aware(upload.writing_since) < live)
        and _remove(runtime, upload.id)
    ]
    if removed:
        _log.info("expired uploads removed", uploads=len(removed))
    return removed


def part_keys(session: Session) -> Iterator[str]:
    """The staging keys of bytes uploads in progress hold aside, and where a store
    without writes in pieces joins an open upload's (not strays to fsck)."""
    for key in session.exec(select(ResumablePart.staging_key)):
        if key is not None:
            yield key
    writes = session.exec(
        select(ResumableUpload.write_id).where(col(ResumableUpload.status).in_(_OPEN))
    )
    for write_id in writes:
        if write_id is not None:
            yield f"{STAGING_PREFIX}{write_id}"


def open_upload_keys(session: Session, now: datetime) -> set[str]:
    """The object keys of uploads still receiving: their unfinished writes are theirs,
    however long their client stays away, until they expire."""
    rows = session.exec(
        select(ResumableUpload.organisation_id, ResumableUpload.id)
        .where(col(ResumableUpload.status).in_(("receiving", "completing")))
        .where(col(ResumableUpload.expires_at) > now)
    )
    return {upload_object_key(organisation, upload_id) for organisation, upload_id in rows}
