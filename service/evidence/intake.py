"""Ingesting evidence: one streaming pass from the request to the object store.

Order of writes (so nothing is ever half-recorded):
1. an upload intent is recorded (pending) before any byte is stored, and with it the
   key its object will have (`upload_object_key`: per organisation and upload);
2. the bytes stream once to that key, still unlocked, while SHA-256, SHA-512 and the
   size are computed on the way, in bounded memory;
3. the intent records the digests; once they are checked the object is locked in place
   (no copy); bytes the organisation holds already are removed instead (content
   addressing lives in the database: one evidence record per organisation and digest);
4. one transaction appends the custody entry, writes the evidence record and marks the
   intent done; only then does the client get its answer.
A crash between steps leaves a pending intent; while the request runs it refreshes the
intent's heartbeat, and an intent whose heartbeat stopped is settled by the workers or
by `locker fsck --repair` (`service.evidence.intents`).

Steps 1 and 2 are here (the streaming itself in `service.evidence.pipe`); steps 3 and 4
in `service.evidence.recording`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import structlog
from pydantic import ValidationError

from service.accounts.members import Principal
from service.accounts.permissions import Permission
from service.core.digests import sha256_hex_valid
from service.db.models import UploadIntent
from service.errors import (
    CONTROL_CHARACTERS,
    NUL_REFUSED,
    InvalidInput,
    describe,
    validation_message,
)
from service.evidence.intents import abandon_intent, heartbeat
from service.evidence.pipe import StagedUpload, stage_file
from service.evidence.recording import (
    IngestResult,
    UploadMetadata,
    record_upload,
    upload_object_key,
)
from service.metrics import INGEST_DURATION, UPLOAD_BYTES, UPLOADS, store_kind

if TYPE_CHECKING:
    from service.runtime import Runtime

_log = structlog.get_logger("locker.intake")

_MAX_FIELD_BYTES = 64 * 1024
_FIELDS = frozenset({"metadata", "sha256"})


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
    started, store, outcome = time.perf_counter(), store_kind(runtime.store), "failed"
    try:
        result = await _ingest(runtime, principal, form)
        outcome = "duplicate" if result.duplicate else "stored"
        UPLOAD_BYTES.labels(store).inc(0 if result.duplicate else result.evidence.size)
        return result
    finally:
        UPLOADS.labels(store, outcome).inc()
        INGEST_DURATION.labels(outcome).observe(time.perf_counter() - started)


async def _ingest(
    runtime: Runtime, principal: Principal, form: AsyncIterator[FormEvent]
) -> IngestResult:
    principal.require(Permission.EVIDENCE_UPLOAD)
    async with contextlib.AsyncExitStack() as beating:
        return await _consume(runtime, principal, form, _Upload(beating=beating))


async def _consume(
    runtime: Runtime, principal: Principal, form: AsyncIterator[FormEvent], upload: _Upload
) -> IngestResult:
    try:
        async for event in form:
            if not isinstance(event, PartStart):
                raise InvalidInput("malformed multipart body")
            if event.name == "file":
                await _receive_file(runtime, principal, upload, event, form)
            else:
                await _receive_field(upload, event, form)
        if upload.intent_id is None or upload.staged is None:
            raise InvalidInput("file: the upload has no file part")
        return await asyncio.to_thread(
            record_upload,
            runtime,
            principal,
            upload.intent_id,
            upload.staged,
            metadata=_parse_metadata(upload.fields.get("metadata")),
            claimed=_parse_claimed_sha256(upload.fields.get("sha256")),
        )
    except BaseException as exc:
        if upload.intent_id is not None:
            staged = upload.staged.staged if upload.staged else None
            await asyncio.shield(
                asyncio.to_thread(abandon_intent, runtime, upload.intent_id, describe(exc), staged)
            )
        raise


def check_submission(
    filename: str, metadata_text: str | None, claimed_text: str | None
) -> tuple[str, UploadMetadata, str | None]:
    """What comes with a file (name, metadata JSON, declared SHA-256), checked exactly as
    a form upload's parts are, before a byte is stored."""
    return (
        _check_filename(filename),
        _parse_metadata(metadata_text),
        _parse_claimed_sha256(claimed_text),
    )


@dataclass(slots=True)
class _Upload:
    """What an upload has received so far."""

    # Holds the intent's heartbeat, from the intent's creation to the upload's end.
    beating: contextlib.AsyncExitStack
    fields: dict[str, str] = field(default_factory=dict)
    intent_id: str | None = None
    staged: StagedUpload | None = None


async def _receive_field(upload: _Upload, event: PartStart, form: AsyncIterator[FormEvent]) -> None:
    if event.name not in _FIELDS:
        # A misspelt "sha256" must not silently skip the digest check.
        raise InvalidInput(f"unknown part {event.name[:64]!r}: expected file, metadata or sha256")
    if event.name in upload.fields:
        raise InvalidInput(f"{event.name}: given twice")
    upload.fields[event.name] = await _read_field(_part_chunks(form), event.name)


async def _receive_file(
    runtime: Runtime,
    principal: Principal,
    upload: _Upload,
    event: PartStart,
    form: AsyncIterator[FormEvent],
) -> None:
    """Steps 1 and 2: record the intent, then stream the part into a staging object."""
    if upload.intent_id is not None:
        raise InvalidInput("file: only one file per upload")
    filename = _check_filename(event.filename or "")
    # Validate what already arrived before storing a byte.
    _parse_metadata(upload.fields.get("metadata"))
    claimed = _parse_claimed_sha256(upload.fields.get("sha256"))
    intent_id, key = await asyncio.to_thread(_open_intent, runtime, principal, filename, claimed)
    upload.intent_id = intent_id
    await upload.beating.enter_async_context(heartbeat(runtime, intent_id))
    upload.staged = await stage_file(
        runtime.store,
        _part_chunks(form),
        limit=runtime.settings.max_upload_bytes,
        key=key,
    )


def _open_intent(
    runtime: Runtime, principal: Principal, filename: str, claimed: str | None
) -> tuple[str, str]:
    """Record the intent and the key its bytes are written to, before the first byte."""
    now, intent_id = datetime.now(UTC), str(uuid.uuid4())
    key = upload_object_key(principal.organisation_id, intent_id)
    intent = UploadIntent(
        id=intent_id,
        organisation_id=principal.organisation_id,
        user_id=principal.user_id,
        filename=filename,
        metadata_json="{}",
        claimed_sha256=claimed,
        staging_key=key,
        created_at=now,
        heartbeat_at=now,
    )
    with runtime.database.session() as session:
        session.add(intent)
    return intent_id, key
