"""The object store on S3 with Object Lock: the store a court can rely on.

Committed objects are locked in COMPLIANCE mode: until the retain-until date no
credential, not even the bucket owner's, can delete or overwrite that version.
The bucket is versioned (Object Lock requires it), so a plain delete or a later
write only adds a version or a delete marker; this store always reads the
ORIGINAL (oldest) version of a key, so nothing written later can shadow evidence.

We check the lock rather than trust it: SeaweedFS 4.48 accepts retention headers
on CopyObject yet stores the copy unlocked, so `commit` reads the retention back
and sets it explicitly if missing, and `verify_lock` proves at start-up that a
locked version really cannot be deleted.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, BinaryIO, cast

import certifi
import structlog
import urllib3
import urllib3.exceptions
from minio import Minio
from minio.commonconfig import COMPLIANCE, ComposeSource, CopySource
from minio.error import MinioException, S3Error
from minio.retention import Retention

from service.errors import LockNotEnforced, ObjectExists, ObjectMissing, StorageError
from service.storage.base import (
    PROBE_PREFIX,
    STAGING_PREFIX,
    ClosingChunks,
    StagedObject,
    StoredObject,
    check_key,
    check_retain_until,
    check_span,
    check_staging_key,
    new_staging_key,
)

_log = structlog.get_logger("locker.storage")

# 8 MiB parts, two in flight: SeaweedFS works on one while we hash and sign the next.
# 8 MiB is the smallest power of two that fits a 64 GiB upload in S3's 10,000 parts.
_PART_SIZE = 8 * 1024 * 1024
_PARALLEL_PARTS = 2
_MAX_COPY_SIZE = 5 * 1024**3  # S3's limit for a single CopyObject; beyond it, multipart copy
_PROBE_KEY = f"{PROBE_PREFIX}object-lock"
_PROBE_RETENTION = timedelta(days=1)
_PROBE_MARGIN = timedelta(hours=1)
_MISSING_CODES = frozenset({"NoSuchKey", "NoSuchVersion"})
# What servers answer for "this object has no retention" (AWS, and SeaweedFS's name).
_NO_RETENTION_CODES = frozenset(
    {"NoSuchObjectLockConfiguration", "ObjectLockConfigurationNotFoundError"}
)
_TRANSPORT_ERRORS = (MinioException, urllib3.exceptions.HTTPError, OSError)
# minio's default client waits 300 s per socket operation and retries five times, so
# a stalled server held a request for half an hour. These bound each connect and each
# read or write on the socket, not a whole request: a multi-gigabyte upload streams for
# as long as bytes keep moving. 120 s leaves room for a server's slowest single answer
# (completing a multipart upload or a 5 GiB server-side copy).
_TIMEOUT = urllib3.Timeout(connect=10, read=120)
# A few tries with backoff (0 s, 1 s, 2 s) for refused connections and 5xx answers;
# urllib3 re-sends after a read failure only for its idempotent methods (not POST).
_RETRY = urllib3.Retry(total=3, backoff_factor=0.5, status_forcelist=(500, 502, 503, 504))
# Connections kept per host: one per worker thread of the server's pool (anyio's 40).
_POOL_SIZE = 40


class S3Store:
    """`ObjectStore` on one S3 bucket with versioning and Object Lock (COMPLIANCE)."""

    enforces_retention = True

    def __init__(
        self,
        *,
        endpoint: str,
        access_key: str,
        secret_key: str,
        bucket: str,
        secure: bool,
        region: str | None = None,
    ) -> None:
        http = urllib3.PoolManager(
            timeout=_TIMEOUT,
            retries=_RETRY,
            maxsize=_POOL_SIZE,
            cert_reqs="CERT_REQUIRED",
            # As minio does: SSL_CERT_FILE names a private CA, else the public ones.
            ca_certs=os.environ.get("SSL_CERT_FILE") or certifi.where(),
        )
        self._client = Minio(
            endpoint,
            access_key=access_key,
            secret_key=secret_key,
            secure=secure,
            region=region,
            http_client=http,
        )
        self._bucket = bucket
        self._region = region

    @property
    def bucket(self) -> str:
        """The bucket this store writes to."""
        return self._bucket

    def ensure_bucket(self) -> None:
        """Create the bucket with Object Lock if missing; refuse one without it."""
        bucket = self._bucket
        with _provider_errors(f"bucket {bucket}"):
            if not self._client.bucket_exists(bucket):
                self._make_bucket()
            versioning = self._client.get_bucket_versioning(bucket).status
            locked = self._has_lock_configuration()
        if versioning != "Enabled" or not locked:
            raise StorageError(
                f"bucket {bucket} exists without Object Lock (versioning: {versioning}, "
                f"lock configuration: {'yes' if locked else 'no'}); use a bucket created "
                "with Object Lock enabled"
            )

    def verify_lock(self) -> None:
        """Prove the server refuses to delete a COMPLIANCE-locked version.

        Uses one probe object per bucket ("probe/object-lock"), created once and
        reused, its retention extended when it nears expiry, so start-ups do not
        pile up undeletable objects. Raises LockNotEnforced if the delete succeeds.
        """
        now = datetime.now(UTC)
        version = self._original(_PROBE_KEY)
        if version is None:
            version = self._put_probe(now + _PROBE_RETENTION)
        self._lock(_PROBE_KEY, version.version_id, now + _PROBE_MARGIN, now + _PROBE_RETENTION)
        try:
            self._client.remove_object(self._bucket, _PROBE_KEY, version_id=version.version_id)
        except S3Error:
            pass  # Refused, as it must be; confirmed below.
        except _TRANSPORT_ERRORS as error:
            raise StorageError(f"lock probe delete failed: {type(error).__name__}") from None
        if self._original(_PROBE_KEY) != version:
            raise LockNotEnforced(
                f"bucket {self._bucket}: a COMPLIANCE-locked version was deleted; "
                "this server does not enforce Object Lock"
            )

    def stage(self, chunks: Iterable[bytes], *, expected_key: str | None = None) -> StagedObject:
        """Multipart-upload the chunks (8 MiB parts) to a fresh staging key.

        With a free `expected_key`, write there directly instead (unlocked until
        `commit`): a server-side copy costs as much as the upload itself.
        """
        direct = expected_key is not None and self._original(check_key(expected_key)) is None
        key = expected_key if direct and expected_key is not None else new_staging_key()
        reader = _ChunkReader(chunks)
        try:
            # minio only calls read(n). Two parts in flight (not minio's default of
            # three) overlap hashing with sending and keep memory to a few parts.
            result = self._client.put_object(
                self._bucket,
                key,
                cast(BinaryIO, reader),
                length=-1,
                part_size=_PART_SIZE,
                num_parallel_uploads=_PARALLEL_PARTS,
            )
        except _TRANSPORT_ERRORS as error:
            if reader.failure is not None:
                raise reader.failure from None
            raise _as_storage_error(error, f"staging {key}") from None
        if direct:
            return StagedObject(
                staging_key=key, size=reader.size, target_key=key, version_id=result.version_id
            )
        return StagedObject(staging_key=key, size=reader.size)

    def commit(self, staged: StagedObject, key: str, *, retain_until: datetime) -> StoredObject:
        """Server-side copy the staged object to `key`, lock it, then drop the staging copy.

        Raises ObjectExists if `key` holds an object already, including when a
        concurrent commit won the race (its version, not ours, is the original).
        """
        source = check_staging_key(staged)
        until = _ceil_to_second(check_retain_until(retain_until))
        if staged.target_key is not None and staged.version_id is not None:
            return self._commit_in_place(staged.target_key, staged.version_id, key, until)
        if self.head(key) is not None:
            raise ObjectExists(f"object {key} already exists")
        version = self._copy(source, key, size=staged.size, until=until)
        self._lock(key, version, until, until)
        original = self._original(key)
        if original is None or original.version_id != version:
            raise ObjectExists(f"object {key} was committed concurrently")
        self._discard_quietly(staged)
        return original

    def _commit_in_place(
        self, target: str, version: str, key: str, until: datetime
    ) -> StoredObject:
        """Lock a version written straight to its final key; check it is the original."""
        if target != key:
            raise StorageError(f"staged for {target}, not for {key}")
        first = self._original(key)
        if first is not None and first.version_id != version:
            # Someone stored these bytes first; ours is left unlocked for `discard`.
            raise ObjectExists(f"object {key} was committed concurrently")
        self._lock(key, version, until, until)
        original = self._original(key)
        if original is None or original.version_id != version:
            # Someone stored these bytes first; ours stays as a later, locked version.
            raise ObjectExists(f"object {key} was committed concurrently")
        return original

    def discard(self, staged: StagedObject) -> None:
        """Permanently delete every version of the staging key (it has no retention)."""
        source = check_staging_key(staged)
        if staged.target_key is not None and staged.version_id is not None:
            with _provider_errors(f"discarding {source} version {staged.version_id}"):
                self._client.remove_object(self._bucket, source, version_id=staged.version_id)
            return
        with _provider_errors(f"discarding {source}"):
            for version in self._versions(source):
                self._client.remove_object(self._bucket, source, version_id=version.version_id)

    def head(self, key: str) -> StoredObject | None:
        """The original version at `key`; later versions and delete markers are ignored."""
        return self._original(check_key(key))

    def open(self, key: str, version_id: str | None) -> ClosingChunks:
        """Stream that version (the original if None), releasing the connection at the end."""
        return self._get(key, version_id, start=0, length=0)

    def open_range(
        self, key: str, version_id: str | None, *, start: int, length: int
    ) -> ClosingChunks:
        """Stream part of that version with the store's own ranged GET (HTTP Range)."""
        check_span(start, length)
        return self._get(key, version_id, start=start, length=length)

    def _get(self, key: str, version_id: str | None, *, start: int, length: int) -> ClosingChunks:
        # minio reads `length=0` as "to the end"; the version is always named, never "latest".
        version = version_id or self._required(key).version_id
        with _provider_errors(f"reading {key} version {version}"):
            response = self._client.get_object(
                self._bucket, check_key(key), offset=start, length=length, version_id=version
            )

        def release() -> None:
            response.close()
            response.release_conn()

        return ClosingChunks(
            read=lambda size: response.read(size, decode_content=False),
            close=release,
            errors=(urllib3.exceptions.HTTPError, OSError),
            what=f"{key} version {version}",
        )

    def open_staged(self, staged: StagedObject) -> ClosingChunks:
        """Stream a staged object (its only version: staging keys are never rewritten)."""
        key = check_staging_key(staged)
        version = staged.version_id if staged.target_key is not None else None
        with _provider_errors(f"reading staged {key}"):
            response = self._client.get_object(self._bucket, key, version_id=version)

        def release() -> None:
            response.close()
            response.release_conn()

        return ClosingChunks(
            read=lambda size: response.read(size, decode_content=False),
            close=release,
            errors=(urllib3.exceptions.HTTPError, OSError),
            what=f"staged {key}",
        )

    def iter_objects(self) -> Iterator[StoredObject]:
        """The original version of every committed key, in key order.

        Holds one entry per key in memory: servers differ in how they order a
        version listing (SeaweedFS lists delete markers apart from their key).
        """
        originals: dict[str, tuple[Any, int, Any]] = {}
        with _provider_errors("listing objects"):
            for index, version in enumerate(self._list(prefix=None)):
                name = version.object_name
                if version.is_delete_marker or name.startswith((STAGING_PREFIX, PROBE_PREFIX)):
                    continue
                if name not in originals or _older(version, index, originals[name]):
                    originals[name] = (version.last_modified, index, version)
        for name in sorted(originals):
            yield _stored(originals[name][2])

    def iter_staged(self) -> Iterator[StagedObject]:
        """Every staging key holding data, including ones hidden behind a delete marker."""
        with _provider_errors("listing staging objects"):
            seen: set[str] = set()
            for version in self._list(prefix=STAGING_PREFIX):
                if version.is_delete_marker or version.object_name in seen:
                    continue
                seen.add(version.object_name)
                yield StagedObject(staging_key=version.object_name, size=version.size)

    def lock(self, key: str, version_id: str | None, *, retain_until: datetime) -> None:
        """COMPLIANCE-lock that version until at least `retain_until` (never shortened)."""
        until = _ceil_to_second(check_retain_until(retain_until))
        version = version_id or self._required(key).version_id
        self._lock(check_key(key), version, until, until)

    def retention_until(self, key: str, version_id: str | None) -> datetime | None:
        """The COMPLIANCE retain-until date of that version (the original if None), or None.

        GOVERNANCE retention is reported as None: privileged callers can bypass it.
        """
        version = version_id or self._required(key).version_id
        retention = self._retention(check_key(key), version)
        if retention is None or retention.mode != COMPLIANCE:
            return None
        date: datetime = retention.retain_until_date
        return date

    # -- internals ---------------------------------------------------------------

    def _make_bucket(self) -> None:
        try:
            self._client.make_bucket(self._bucket, location=self._region, object_lock=True)
        except S3Error as error:
            # Another process created it first: the checks that follow still apply.
            if error.code != "BucketAlreadyOwnedByYou":
                raise

    def _has_lock_configuration(self) -> bool:
        try:
            self._client.get_object_lock_config(self._bucket)
        except S3Error as error:
            if error.code in _NO_RETENTION_CODES:
                return False
            raise
        return True

    def _put_probe(self, until: datetime) -> StoredObject:
        with _provider_errors(f"writing {_PROBE_KEY}"):
            retention = Retention(COMPLIANCE, _ceil_to_second(until))
            content = b"object lock probe\n"
            self._client.put_object(
                self._bucket, _PROBE_KEY, io.BytesIO(content), len(content), retention=retention
            )
        written = self._original(_PROBE_KEY)
        if written is None:
            raise StorageError(f"bucket {self._bucket}: {_PROBE_KEY} vanished after writing")
        return written

    def _copy(self, source: str, key: str, *, size: int, until: datetime) -> str:
        """Server-side copy with COMPLIANCE retention requested; returns the new version id."""
        retention = Retention(COMPLIANCE, until)
        with _provider_errors(f"committing {source} to {key}"):
            if size > _MAX_COPY_SIZE:
                # An explicit range makes minio copy in parts of at most 5 GiB.
                sources = [ComposeSource(self._bucket, source, offset=0, length=size)]
                written = self._client.compose_object(
                    self._bucket, key, sources, retention=retention
                )
            else:
                copy_source = CopySource(self._bucket, source)
                written = self._client.copy_object(
                    self._bucket, key, copy_source, retention=retention
                )
        if not written.version_id:
            raise StorageError(f"bucket {self._bucket} is not versioned: {key} has no version")
        return str(written.version_id)

    def _lock(self, key: str, version: str | None, at_least: datetime, extend_to: datetime) -> None:
        """Make sure `version` is COMPLIANCE-locked until `at_least`, setting it if not.

        Some servers silently drop retention sent with a copy, so read it back.
        """
        if _locked_until(self._retention(key, version), at_least):
            return
        extend_to = _ceil_to_second(extend_to)
        with _provider_errors(f"locking {key} version {version}"):
            self._client.set_object_retention(
                self._bucket, key, Retention(COMPLIANCE, extend_to), version_id=version
            )
        if not _locked_until(self._retention(key, version), at_least):
            raise LockNotEnforced(f"{key} version {version}: retention was accepted but not set")

    def _retention(self, key: str, version: str | None) -> Retention | None:
        with _provider_errors(f"reading retention of {key} version {version}"):
            try:
                return self._client.get_object_retention(self._bucket, key, version_id=version)
            except S3Error as error:
                if error.code in _NO_RETENTION_CODES:
                    return None
                raise

    def _original(self, key: str) -> StoredObject | None:
        """The oldest data version of exactly `key` (no key check: used for the probe)."""
        with _provider_errors(f"looking up {key}"):
            versions = [v for v in self._versions(key) if not v.is_delete_marker]
        if not versions:
            return None
        # S3 lists a key's versions newest first; last_modified breaks ties only to the second.
        oldest = min(range(len(versions)), key=lambda i: (versions[i].last_modified, -i))
        return _stored(versions[oldest])

    def _required(self, key: str) -> StoredObject:
        found = self.head(key)
        if found is None:
            raise ObjectMissing(f"object {key} is not in the store")
        return found

    def _versions(self, key: str) -> list[Any]:
        """Every version and delete marker of exactly `key`."""
        return [v for v in self._list(prefix=key) if v.object_name == key]

    def _list(self, *, prefix: str | None) -> Iterator[Any]:
        return self._client.list_objects(  # type: ignore[no-any-return]
            self._bucket, prefix=prefix, recursive=True, include_version=True
        )

    def _discard_quietly(self, staged: StagedObject) -> None:
        """Drop the staging copy after a commit; a failure here must not undo the commit."""
        try:
            self.discard(staged)
        except StorageError as error:
            # The leftover is harmless and visible: `iter_staged` lists it for cleanup.
            _log.warning(
                "staging copy left after commit",
                staging_key=staged.staging_key,
                error=error.diagnostics(),
            )


class _ChunkReader:
    """A file-like `read(n)` over an iterable of chunks, holding at most n bytes.

    It fills each read completely (minio would otherwise concatenate many small
    reads into a part, copying quadratically) and remembers an exception raised
    by the source, so `stage` re-raises the caller's own error, not a storage one.
    """

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._pending = memoryview(b"")
        self.size = 0
        self.failure: BaseException | None = None

    def read(self, size: int) -> bytes:
        """Up to `size` bytes; fewer only at the end of the stream."""
        if size < 0:
            raise ValueError("refusing an unbounded read")
        # Views of the source chunks, joined once: each byte is copied a single time.
        pieces: list[memoryview] = []
        wanted = size
        while wanted > 0:
            if not self._pending:
                chunk = self._next_chunk()
                if chunk is None:
                    break
                self._pending = memoryview(chunk)
            take = min(wanted, len(self._pending))
            pieces.append(self._pending[:take])
            self._pending = self._pending[take:]
            wanted -= take
        data = b"".join(pieces)
        self.size += len(data)
        return data

    def _next_chunk(self) -> bytes | None:
        try:
            return next(self._chunks, None)
        except BaseException as error:
            self.failure = error
            raise


@contextmanager
def _provider_errors(what: str) -> Iterator[None]:
    """Re-raise provider errors as ours, naming the key but never the request's secrets."""
    try:
        yield
    except _TRANSPORT_ERRORS as error:
        raise _as_storage_error(error, what) from None


def _as_storage_error(error: BaseException, what: str) -> StorageError:
    if isinstance(error, S3Error):
        if error.code in _MISSING_CODES:
            return ObjectMissing(f"{what}: not in the store ({error.code})")
        return StorageError(f"{what}: S3 refused ({error.code})")
    return StorageError(f"{what}: {type(error).__name__}")


def _stored(version: Any) -> StoredObject:
    return StoredObject(key=version.object_name, version_id=version.version_id, size=version.size)


def _older(version: Any, index: int, current: tuple[Any, int, Any]) -> bool:
    """Listed later with the same or an earlier time means older (see `_original`)."""
    return bool((version.last_modified, -index) < (current[0], -current[1]))


def _locked_until(retention: Retention | None, at_least: datetime) -> bool:
    return (
        retention is not None
        and retention.mode == COMPLIANCE
        and retention.retain_until_date >= at_least.replace(microsecond=0)
    )


def _ceil_to_second(moment: datetime) -> datetime:
    """Servers keep retention dates to the second; round up so the lock never ends early."""
    whole = moment.replace(microsecond=0)
    return whole if whole == moment else whole + timedelta(seconds=1)
