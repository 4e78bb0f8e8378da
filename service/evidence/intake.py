"""Ingesting evidence: one streaming pass from the request to the object store.

Order of writes (so nothing is ever half-recorded):
1. an upload intent is recorded (pending) before any byte is stored;
2. the bytes stream once into a staging object while SHA-256, SHA-512 and the size are
   computed on the way, in bounded memory;
3. the intent records the digests; the staged bytes become the content-addressed,
   retention-locked object;
4. one transaction appends the custody entry, writes the evidence record and marks the
   intent done; only then does the client get its answer.
A crash between steps leaves a pending intent that `locker fsck --repair` settles.
"""

from __future__ import annotations

import asyncio
import json
import queue
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import structlog
from pydantic import Field, ValidationError
from sqlmodel import Session, select

from service.accounts.access import restrict_in_session, visible_incident
from service.accounts.members import Principal
from service.accounts.permissions import Permission, Role
from service.core.canonical import canonical_sha256
from service.core.digests import ContentDigester, ContentDigests, sha256_hex_valid
from service.db import rerun_if_raced
from service.db.models import Evidence, Submission, UploadIntent, User
from service.documentation.documents import AssertedMetadata
from service.documentation.links import is_linked, link_in_session
from service.errors import (
    CONTROL_CHARACTERS,
    NUL_REFUSED,
    Error,
    InvalidInput,
    NotFound,
    ObjectExists,
    StorageError,
    TooLarge,
    validation_message,
)
from service.evidence.descriptions import asserted_dict, asserted_digest, describe_at_ingest
from service.evidence.media_types import sniff_media_type
from service.evidence.reading import verify_object
from service.storage import StagedObject

if TYPE_CHECKING:
    from service.runtime import Runtime

_log = structlog.get_logger("locker.intake")

_MAX_FIELD_BYTES = 64 * 1024
_FIELDS = frozenset({"metadata", "sha256"})
_PIPE_CHUNK = 1024 * 1024
# Chunks in flight between the request and the storage thread (memory stays bounded).
_PIPE_DEPTH = 8
_SNIFF_BYTES = 8192


@dataclass(frozen=True, slots=True)
class PartStart:
    """A multipart part begins: its form name and, for files, the client's filename."""

    name: str
    filename: str | None


@dataclass(frozen=True, slots=True)
class PartData:
    data: bytes


@dataclass(frozen=True, slots=True)
class PartEnd:
    pass


FormEvent = PartStart | PartData | PartEnd


class UploadMetadata(AssertedMetadata):
    """The metadata part: the collector's assertions, plus where the item goes."""

    incident_id: str | None = Field(default=None, max_length=36)
    restricted: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class IngestResult:
    evidence: Evidence
    submission: Submission
    duplicate: bool


@dataclass(slots=True)
class _Staged:
    staged: StagedObject
    digests: ContentDigests
    head: bytes


class _Pipe:
    """A bounded hand-over of chunks from the event loop to the storage thread."""

    _END = object()

    def __init__(self) -> None:
        self._queue: queue.Queue[object] = queue.Queue(maxsize=_PIPE_DEPTH)
        self.consumer_failed = threading.Event()
        self._ended = False  # the consumer has seen the end (or the abort) already

    async def put(self, item: object) -> None:
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            await asyncio.to_thread(self._queue.put, item)

    async def close(self, error: BaseException | None = None) -> None:
        await self.put(error if error is not None else self._END)

    def __iter__(self) -> Iterator[bytes]:
        while True:
            item = self._queue.get()
            if item is self._END or isinstance(item, BaseException):
                self._ended = True
                if isinstance(item, BaseException):
                    raise item
                return
            assert isinstance(item, bytes)
            yield item

    def drain(self) -> None:
        """After the consumer failed: swallow what the producer still sends."""
        self.consumer_failed.set()
        while not self._ended:
            item = self._queue.get()
            self._ended = item is self._END or isinstance(item, BaseException)


def _stage_in_thread(runtime: Runtime, pipe: _Pipe, expected_key: str | None) -> _Staged:
    digester = ContentDigester()
    head = bytearray()

    def digesting() -> Iterator[bytes]:
        for chunk in pipe:
            digester.update(chunk)
            if len(head) < _SNIFF_BYTES:
                head.extend(chunk[: _SNIFF_BYTES - len(head)])
            yield chunk

    try:
        staged = runtime.store.stage(digesting(), expected_key=expected_key)
    except BaseException:
        pipe.drain()
        raise
    return _Staged(staged=staged, digests=digester.finish(), head=bytes(head))


async def _part_chunks(events: AsyncIterator[FormEvent]) -> AsyncIterator[bytes]:
    """The data of the current part, up to its end."""
    async for event in events:
        if isinstance(event, PartData):
            yield event.data
        elif isinstance(event, PartEnd):
            return
        else:
            raise InvalidInput("malformed multipart body: a part started inside another")
    raise InvalidInput("malformed multipart body: truncated part")


async def _stage_file(
    runtime: Runtime, chunks: AsyncIterator[bytes], limit: int, expected_key: str | None
) -> _Staged:
    pipe = _Pipe()
    staging = asyncio.ensure_future(
        asyncio.to_thread(_stage_in_thread, runtime, pipe, expected_key)
    )
    size, buffer = 0, bytearray()
    try:
        async for chunk in chunks:
            size += len(chunk)
            if size > limit:
                raise TooLarge(f"file exceeds the upload limit of {limit} bytes")
            buffer += chunk
            if len(buffer) >= _PIPE_CHUNK:
                if pipe.consumer_failed.is_set():
                    break
                await pipe.put(bytes(buffer))
                buffer.clear()
        if buffer:
            await pipe.put(bytes(buffer))
    except BaseException as exc:
        await pipe.close(_Aborted(str(exc)))
        await asyncio.gather(staging, return_exceptions=True)
        raise
    await pipe.close()
    return await staging


class _Aborted(Error):
    """Tells the storage thread to abandon the staging object."""


async def _read_field(chunks: AsyncIterator[bytes], name: str) -> str:
    value = bytearray()
    async for chunk in chunks:
        value += chunk
        if len(value) > _MAX_FIELD_BYTES:
            raise InvalidInput(f"{name}: part exceeds {_MAX_FIELD_BYTES} bytes")
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput(f"{name}: not valid UTF-8") from None


def _parse_metadata(text: str | None) -> UploadMetadata:
    """The metadata part, checked in full before a byte is stored: whatever is accepted
    here must also be accepted when the intent is finished after the object is locked."""
    if text is None or not text.strip():
        return UploadMetadata()
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"metadata: malformed JSON: {exc.msg} at char {exc.pos}") from None
    except RecursionError:
        value = None  # refused as too deep just below
    if not isinstance(value, dict):
        raise InvalidInput("metadata: must be a JSON object" if value is not None else _TOO_DEEP)
    _check_json_text(value, depth=0)
    try:
        metadata = UploadMetadata.model_validate(value)
        # The intent keeps it as JSON and finishing reads it back: prove that works now.
        return UploadMetadata.model_validate_json(metadata.model_dump_json(exclude_unset=True))
    except ValidationError as exc:
        raise InvalidInput(validation_message(exc.errors(), prefix="metadata")) from None


_MAX_METADATA_DEPTH = 32
_TOO_DEEP = f"metadata: nested deeper than {_MAX_METADATA_DEPTH} levels"


def _check_json_text(value: object, *, depth: int) -> None:
    """Refuse nesting deeper than we read back, and NUL, which no database text holds."""
    if depth > _MAX_METADATA_DEPTH:
        raise InvalidInput(_TOO_DEEP)
    if isinstance(value, str):
        if "\x00" in value:
            raise InvalidInput(f"metadata: {NUL_REFUSED}")
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_json_text(key, depth=depth + 1)
            _check_json_text(item, depth=depth + 1)
    elif isinstance(value, list):
        for item in value:
            _check_json_text(item, depth=depth + 1)


def _parse_claimed_sha256(text: str | None) -> str | None:
    if text is None:
        return None
    claimed = text.strip().lower().removeprefix("sha256:")
    if not sha256_hex_valid(claimed):
        raise InvalidInput("sha256: must be 64 hexadecimal characters")
    return claimed


def _check_filename(filename: str) -> str:
    if not filename:
        raise InvalidInput("file: the part needs a filename")
    if len(filename) > 1024 or CONTROL_CHARACTERS.search(filename):
        raise InvalidInput("file: filename is too long or holds control characters")
    return filename


async def ingest(
    runtime: Runtime, principal: Principal, form: AsyncIterator[FormEvent]
) -> IngestResult:
    """Consume a multipart upload (parts file, metadata, sha256) and record it."""
    principal.require(Permission.EVIDENCE_UPLOAD)
    fields: dict[str, str] = {}
    intent_id: str | None = None
    staged: _Staged | None = None
    try:
        async for event in form:
            if not isinstance(event, PartStart):
                raise InvalidInput("malformed multipart body")
            if event.name != "file":
                if event.name not in _FIELDS:
                    # A misspelt "sha256" must not silently skip the digest check.
                    raise InvalidInput(
                        f"unknown part {event.name[:64]!r}: expected file, metadata or sha256"
                    )
                if event.name in fields:
                    raise InvalidInput(f"{event.name}: given twice")
                fields[event.name] = await _read_field(_part_chunks(form), event.name)
                continue
            if staged is not None or intent_id is not None:
                raise InvalidInput("file: only one file per upload")
            filename = _check_filename(event.filename or "")
            # Validate what already arrived before storing a byte.
            _parse_metadata(fields.get("metadata"))
            claimed = _parse_claimed_sha256(fields.get("sha256"))
            intent_id, expected_key = await asyncio.to_thread(
                _open_intent, runtime, principal, filename, claimed
            )
            staged = await _stage_file(
                runtime, _part_chunks(form), runtime.settings.max_upload_bytes, expected_key
            )
        if staged is None or intent_id is None:
            raise InvalidInput("file: the upload has no file part")
        return await asyncio.to_thread(_record, runtime, principal, intent_id, staged, fields)
    except BaseException as exc:
        if intent_id is not None:
            await asyncio.shield(
                asyncio.to_thread(
                    abandon_intent,
                    runtime,
                    intent_id,
                    _reason(exc),
                    staged.staged if staged else None,
                )
            )
        raise


def _reason(exc: BaseException) -> str:
    return exc.diagnostics() if isinstance(exc, Error) else f"{type(exc).__name__}: {exc}"


def _object_key(organisation_id: str, sha256_hex: str) -> str:
    """Where an organisation's object with this content lives (content-addressed)."""
    return f"org/{organisation_id}/sha256/{sha256_hex}"


def _open_intent(
    runtime: Runtime, principal: Principal, filename: str, claimed: str | None
) -> tuple[str, str | None]:
    """Record the intent; with a field digest of new content, also where to write it.

    Knowing the digest before the bytes lets the store write them straight to their
    content-addressed key (still unlocked, and checked before it is committed).
    """
    expected_key = None
    if claimed is not None and _find_evidence(runtime, principal.organisation_id, claimed) is None:
        expected_key = _object_key(principal.organisation_id, claimed)
    intent = UploadIntent(
        id=str(uuid.uuid4()),
        organisation_id=principal.organisation_id,
        user_id=principal.user_id,
        filename=filename,
        metadata_json="{}",
        claimed_sha256=claimed,
        staging_key=expected_key,
        created_at=datetime.now(UTC),
    )
    with runtime.database.session() as session:
        session.add(intent)
    return intent.id, expected_key


def abandon_intent(
    runtime: Runtime, intent_id: str, reason: str, staged: StagedObject | None = None
) -> None:
    """Close a pending intent with the reason, then drop its staging bytes if given.

    The intent is closed first: a store that fails the clean-up too (it is often the
    store that failed the upload) must neither hide the upload's own error nor leave
    the intent pending. Unremoved staging bytes are never evidence; fsck lists them.
    """
    with runtime.database.session() as session:
        intent = session.get(UploadIntent, intent_id)
        if intent is None or intent.status != "pending":
            return
        intent.status, intent.outcome = "abandoned", reason[:1024]
        intent.finished_at = datetime.now(UTC)
        session.add(intent)
    if staged is not None:
        try:
            runtime.store.discard(staged)
        except StorageError as exc:
            _log.warning("staging bytes left", intent=intent_id, error=exc.diagnostics())


def _record(
    runtime: Runtime, principal: Principal, intent_id: str, staged: _Staged, fields: dict[str, str]
) -> IngestResult:
    metadata = _parse_metadata(fields.get("metadata"))
    claimed = _parse_claimed_sha256(fields.get("sha256"))
    digests = staged.digests
    if digests.size == 0:
        raise InvalidInput("file: empty file")
    if claimed is not None and claimed != digests.sha256.hex:
        raise InvalidInput(
            f"sha256: mismatch: you sent {claimed}, the server received {digests.sha256.hex}"
        )
    media_type = sniff_media_type(staged.head)
    key = _object_key(principal.organisation_id, digests.sha256.hex)
    with runtime.database.session() as session:
        if metadata.incident_id is not None:
            try:
                visible_incident(session, principal, metadata.incident_id)
            except NotFound:
                raise InvalidInput(
                    f"metadata.incident_id: no incident {metadata.incident_id}"
                ) from None
        intent = session.get(UploadIntent, intent_id)
        assert intent is not None
        intent.sha256, intent.sha512 = digests.sha256.hex, digests.sha512.hex
        intent.size, intent.media_type = digests.size, media_type
        intent.staging_key, intent.claimed_sha256 = staged.staged.staging_key, claimed
        intent.metadata_json = metadata.model_dump_json(exclude_unset=True)
        session.add(intent)
    if _find_evidence(runtime, principal.organisation_id, digests.sha256.hex) is None:
        key, version = _commit_object(runtime, staged, key)
        # Remember where the bytes are before recording them: if we crash now, fsck
        # --repair finishes this intent from here.
        with runtime.database.session() as session:
            intent = session.get(UploadIntent, intent_id)
            assert intent is not None
            intent.object_key, intent.object_version = key, version
            session.add(intent)
    else:
        runtime.store.discard(staged.staged)
        key, version = "", None
    return finish_intent(runtime, intent_id, object_key=key, object_version=version)


def _find_evidence(runtime: Runtime, organisation_id: str, sha256_hex: str) -> Evidence | None:
    with runtime.database.session() as session:
        return _evidence_by_digest(session, organisation_id, sha256_hex)


def _evidence_by_digest(session: Session, organisation_id: str, sha256_hex: str) -> Evidence | None:
    return session.exec(
        select(Evidence)
        .where(Evidence.organisation_id == organisation_id)
        .where(Evidence.sha256 == sha256_hex)
    ).first()


def _commit_object(runtime: Runtime, staged: _Staged, key: str) -> tuple[str, str | None]:
    try:
        stored = runtime.store.commit(staged.staged, key, retain_until=runtime.retain_until())
    except ObjectExists:
        # Same bytes stored by an upload that crashed before recording them: the key
        # is content-addressed, so the object there is ours once its digest checks out.
        runtime.store.discard(staged.staged)
        found = runtime.store.head(key)
        if found is None:
            raise
        verify_object(runtime.store, key, found.version_id, expected=staged.digests)
        # That upload may have died before locking it: evidence is never left deletable.
        runtime.store.lock(key, found.version_id, retain_until=runtime.retain_until())
        return key, found.version_id
    return stored.key, stored.version_id


@rerun_if_raced
def finish_intent(  # noqa: PLR0915 (one transaction: entry, record, submission)
    runtime: Runtime, intent_id: str, *, object_key: str, object_version: str | None
) -> IngestResult:
    """Record a stored upload: log entry, evidence record, submission, intent done.

    Shared by the upload path and by `locker fsck --repair`, which finishes intents a
    crash left pending. One transaction: all of it commits, or none of it. If a
    concurrent upload of the same bytes records the evidence first, the rerun makes
    ours a re-submission of it.
    """
    with runtime.database.session() as session:
        intent = session.get(UploadIntent, intent_id)
        if intent is None or intent.sha256 is None or intent.sha512 is None or intent.size is None:
            raise NotFound(f"no recorded upload intent {intent_id}")
        uploader = session.get(User, intent.user_id)
        assert uploader is not None
        principal = Principal(
            user_id=intent.user_id,
            organisation_id=intent.organisation_id,
            role=Role(uploader.role),
        )
        metadata = UploadMetadata.model_validate_json(intent.metadata_json)
        asserted = asserted_dict(metadata)
        submitted = {"filename": intent.filename, "metadata": json.loads(intent.metadata_json)}
        details: dict[str, object] = {
            "sha256": intent.sha256,
            "size": intent.size,
            "submission_sha256": canonical_sha256(submitted),
        }
        evidence = _evidence_by_digest(session, intent.organisation_id, intent.sha256)
        duplicate = evidence is not None
        if evidence is None:
            evidence_id = str(uuid.uuid4())
            details |= {
                "sha512": intent.sha512,
                "media_type": intent.media_type or "",
                "asserted_sha256": asserted_digest(asserted),
            }
            entry = runtime.log.append(
                session,
                organisation_id=intent.organisation_id,
                actor=principal.actor,
                action="evidence.ingested",
                subjects=[f"evidence:{evidence_id}"],
                details=details,
            )
            evidence = Evidence(
                id=evidence_id,
                organisation_id=intent.organisation_id,
                sha256=intent.sha256,
                sha512=intent.sha512,
                size=intent.size,
                media_type=intent.media_type or "application/octet-stream",
                object_key=object_key,
                object_version=object_version,
                received_at=entry.time,
                ingest_index=entry.index,
            )
            session.add(evidence)
            session.flush()
            describe_at_ingest(
                session,
                evidence,
                asserted,
                recorded_by=intent.user_id,
                custody_index=entry.index,
            )
        else:
            entry = runtime.log.append(
                session,
                organisation_id=intent.organisation_id,
                actor=principal.actor,
                action="evidence.resubmitted",
                subjects=[f"evidence:{evidence.id}"],
                details=details,
            )
        session.flush()
        submission = Submission(
            id=str(uuid.uuid4()),
            evidence_id=evidence.id,
            organisation_id=intent.organisation_id,
            submitted_by=intent.user_id,
            filename=intent.filename,
            metadata_json=intent.metadata_json,
            received_at=entry.time,
            custody_index=entry.index,
        )
        session.add(submission)
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
        intent.status, intent.finished_at = "done", datetime.now(UTC)
        intent.object_key, intent.object_version = (
            object_key or evidence.object_key,
            (object_version if object_key else evidence.object_version),
        )
        session.add(intent)
    return IngestResult(evidence=evidence, submission=submission, duplicate=duplicate)
