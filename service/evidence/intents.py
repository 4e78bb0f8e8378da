"""Upload intents a failure left pending: told apart from uploads in flight, then settled.

An upload records its intent before it stores a byte and closes it in the transaction
that records the evidence (`service.evidence.intake`). A crash, or a database outage that
fails both the recording and the clean-up, leaves the intent pending. Settling it is the
same whoever does it, `locker fsck --repair` or a worker's periodic reconciliation:
- its bytes are stored and still hash to the digests the intent recorded: the upload is
  finished (custody entry, evidence record, submission) exactly as its request would
  have finished it;
  (locked first, if the crash came before the lock);
- otherwise it is marked abandoned with the reason and its unlocked bytes are dropped:
  the uploader was never told it succeeded.

Live or stale: while a request handles an upload (waiting for a staging turn, streaming,
storing, recording) it refreshes the intent's `heartbeat_at` every quarter of
LOCKER_UPLOAD_IDLE_TIMEOUT_SECONDS. An intent whose last heartbeat (or, without one, its
creation) is older than the whole idle timeout, four missed heartbeats, belongs to no
running request; only such intents are settled while the locker runs. Should a request
stalled that long (a database outage longer than the idle timeout) wake after its intent
was settled, it fails with 409 and records nothing: finishing, noting digests and
abandoning each lock the intent's row and act only on a pending intent.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import structlog
from sqlalchemy import func, update
from sqlmodel import col, select

from service.core.digests import ContentDigests, Digest
from service.db.models import ResumableUpload, UploadIntent
from service.errors import Conflict, Error, ObjectMissing, StorageError, describe
from service.evidence.reading import verify_object
from service.evidence.recording import find_evidence, finish_intent, upload_object_key
from service.storage import StagedObject
from service.storage.base import STAGING_PREFIX

if TYPE_CHECKING:
    from service.runtime import Runtime
    from service.settings import Settings

_log = structlog.get_logger("locker.intents")


def heartbeat_seconds(settings: Settings) -> float:
    """How often a running upload refreshes its intent."""
    return settings.upload_idle_timeout_seconds / 4


def stale_after(settings: Settings) -> timedelta:
    """How long an intent goes without a heartbeat before no request is handling it."""
    return timedelta(seconds=settings.upload_idle_timeout_seconds)


def touch(runtime: Runtime, intent_id: str) -> None:
    """Record that a request is still handling this upload (only while it is pending)."""
    with runtime.database.session() as session:
        session.execute(
            update(UploadIntent)
            .where(col(UploadIntent.id) == intent_id)
            .where(col(UploadIntent.status) == "pending")
            .values(heartbeat_at=datetime.now(UTC))
        )


@contextlib.asynccontextmanager
async def heartbeat(
    runtime: Runtime, intent_id: str, *, touch: Callable[[Runtime, str], None] = touch
) -> AsyncIterator[None]:
    """Refresh the intent's heartbeat (or, with `touch`, another row's) until the block
    ends."""
    beating = asyncio.ensure_future(_beat(runtime, intent_id, touch))
    try:
        yield
    finally:
        beating.cancel()
        await asyncio.gather(beating, return_exceptions=True)


async def _beat(runtime: Runtime, intent_id: str, touch: Callable[[Runtime, str], None]) -> None:
    interval = heartbeat_seconds(runtime.settings)
    while True:
        await asyncio.sleep(interval)
        try:
            await asyncio.to_thread(touch, runtime, intent_id)
        except Exception as exc:  # an outage: the upload itself will fail or go on
            _log.warning("upload heartbeat failed", intent=intent_id, error=describe(exc))


def settle_pending(runtime: Runtime, *, stale_only: bool) -> list[str]:
    """Settle pending intents (with `stale_only`, those no request is handling);
    returns one line per intent settled."""
    now = datetime.now(UTC)
    # A resumable upload's intent is settled with its upload (`settle_completions`):
    # until it expires, its client may come back, and its bytes are not lost.
    open_upload = (
        select(ResumableUpload.id)
        .where(col(ResumableUpload.id) == col(UploadIntent.id))
        .where(col(ResumableUpload.status).in_(("receiving", "completing")))
        .where(col(ResumableUpload.expires_at) > now)
    )
    query = (
        select(UploadIntent).where(UploadIntent.status == "pending").where(~open_upload.exists())
    )
    if stale_only:
        cutoff = now - stale_after(runtime.settings)
        last_sign = func.coalesce(col(UploadIntent.heartbeat_at), col(UploadIntent.created_at))
        query = query.where(last_sign < cutoff)
    with runtime.database.session() as session:
        pending = session.exec(query.order_by(col(UploadIntent.created_at))).all()
    settled = [settle_intent(runtime, intent) for intent in pending]
    return [line for line in settled if line is not None]


def settle_intent(runtime: Runtime, intent: UploadIntent) -> str | None:
    """Finish the intent if its bytes are stored and verify, else abandon it.

    None when there was nothing to do now: another process settled it first, or the
    store could not be read (an outage is no reason to give up stored bytes; the intent
    stays pending for the next try, and fsck lists it meanwhile).
    """
    expected = _recorded_digests(intent)
    key = intent.object_key or _own_key(intent)
    if expected is not None and key is not None:
        try:
            version = intent.object_version if intent.object_key else _written(runtime, key)
            verify_object(runtime.store, key, version, expected=expected)
            held = find_evidence(runtime, intent.organisation_id, expected.sha256.hex)
            if held is not None and not intent.object_key and not _locked(runtime, key, version):
                # Not locked yet, and the organisation holds these bytes: as the request
                # would have, remove ours while they can go, and record a re-submission.
                runtime.store.discard(
                    StagedObject(staging_key=key, size=0, target_key=key, version_id=version)
                )
                finish_intent(runtime, intent.id, object_key="", object_version=None)
                return f"finished upload intent {intent.id} (a re-submission)"
            # The crash may have come before the lock: evidence is never left deletable.
            runtime.store.lock(key, version, retain_until=runtime.retain_until())
            finish_intent(runtime, intent.id, object_key=key, object_version=version)
            return f"finished upload intent {intent.id}"
        except Conflict:
            return None
        except StorageError as exc:
            if not isinstance(exc, ObjectMissing):
                _log.warning("upload intent left pending", intent=intent.id, error=describe(exc))
                return None
            reason = exc.diagnostics()
        except Error as exc:
            reason = exc.diagnostics()
    else:
        # Never stored whole, so never acknowledged: the uploader was told it failed.
        reason = _NOT_STORED
    if not abandon_intent(runtime, intent.id, reason, _staged_bytes(intent)):
        return None
    return f"abandoned upload intent {intent.id}: {reason}"


def _recorded_digests(intent: UploadIntent) -> ContentDigests | None:
    """What the intent says its stored bytes hash to, once it knows."""
    if intent.sha256 is None or intent.sha512 is None or intent.size is None:
        return None
    return ContentDigests(
        sha256=Digest(algorithm="sha256", hex=intent.sha256),
        sha512=Digest(algorithm="sha512", hex=intent.sha512),
        size=intent.size,
    )


def abandon_intent(
    runtime: Runtime, intent_id: str, reason: str, staged: StagedObject | None = None
) -> bool:
    """Close a pending intent with the reason, then drop its staging bytes if given;
    False if it was no longer pending (settled meanwhile: nothing is done).

    The intent is closed first: a store that fails the clean-up too (it is often the
    store that failed the upload) must neither hide the upload's own error nor leave
    the intent pending. Unremoved staging bytes are never evidence; fsck lists them.
    """
    try:
        closed = _close(runtime, intent_id, reason)
    except BaseException:
        # The database failed too (an outage): the intent stays pending for the workers,
        # who cannot know where these bytes are. Bytes still in staging were never
        # committed anywhere, so they go now; bytes at their final key stay for them.
        if staged is not None and staged.target_key is None:
            discard_quietly(runtime, intent_id, staged)
        raise
    if closed and staged is not None:
        discard_quietly(runtime, intent_id, staged)
    return closed


def _close(runtime: Runtime, intent_id: str, reason: str) -> bool:
    with runtime.database.session() as session:
        intent = session.get(UploadIntent, intent_id, with_for_update=True)
        if intent is None or intent.status != "pending":
            return False
        intent.status, intent.outcome = "abandoned", reason[:1024]
        intent.finished_at = datetime.now(UTC)
        session.add(intent)
    return True


def discard_quietly(runtime: Runtime, intent_id: str, staged: StagedObject) -> None:
    """Drop bytes no record needs; if the store fails, fsck finds them later."""
    try:
        runtime.store.discard(staged)
    except StorageError as exc:
        _log.warning("staging bytes left", intent=intent_id, error=exc.diagnostics())


_NOT_STORED = "interrupted before its bytes were stored"


def _own_key(intent: UploadIntent) -> str | None:
    """The key the intent's upload wrote to; None for an intent older than per-upload
    keys (its key was content-addressed and may hold someone else's evidence)."""
    own = upload_object_key(intent.organisation_id, intent.id)
    staging_key = intent.staging_key
    if staging_key is None or staging_key == own or staging_key.startswith(STAGING_PREFIX):
        return own
    return None


def _locked(runtime: Runtime, key: str, version: str | None) -> bool:
    store = runtime.store
    return store.enforces_retention and store.retention_until(key, version) is not None


def _written(runtime: Runtime, key: str) -> str | None:
    """The version written at `key`; ObjectMissing if the upload never got that far."""
    found = runtime.store.head(key)
    if found is None:
        raise ObjectMissing(_NOT_STORED)
    return found.version_id


def _staged_bytes(intent: UploadIntent) -> StagedObject | None:
    """Where an unfinished upload's bytes may be: its own key (any unlocked version and
    unfinished write there), or a staging file; None for an intent older than per-upload
    keys, whose key may hold someone else's evidence."""
    key = _own_key(intent)
    if key is None:
        return None
    return StagedObject(staging_key=intent.staging_key or key, size=0, target_key=key)
