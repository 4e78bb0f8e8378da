"""The object store on S3 with Object Lock: the store a court can rely on.

Committed objects are locked in COMPLIANCE mode: until the retain-until date no
credential, not even the bucket owner's, can delete or overwrite that version.
The bucket is versioned (Object Lock requires it), so a plain delete or a later
write only adds a version or a delete marker; this store always reads the
ORIGINAL (oldest) version of a key, so nothing written later can shadow evidence.

Objects are written unlocked at their final key and locked in place once the caller
has checked their digests (no server-side copy); an upload that dies leaves either an
unlocked version, which `discard` removes, or an unfinished multipart upload, which
`iter_unfinished` lists and `abort` drops.

We check the lock rather than trust it: some servers accept retention headers yet
store the object unlocked (SeaweedFS 4.48 did on CopyObject), so `commit` reads the
retention back after setting it, and `verify_lock` proves at start-up that a locked
version really cannot be deleted.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, BinaryIO, cast

import certifi
import structlog
import urllib3
import urllib3.exceptions
from minio import Minio
from minio.commonconfig import COMPLIANCE
from minio.datatypes import Part
from minio.error import MinioException, S3Error
from minio.retention import Retention

from service.errors import LockNotEnforced, ObjectExists, ObjectMissing, StorageError
from service.storage.base import (
    PROBE_PREFIX,
    STAGING_PREFIX,
    ClosingChunks,
    Piece,
    StagedObject,
    StoredObject,
    UnfinishedWrite,
    check_key,
    check_piece_number,
    check_retain_until,
    check_span,
    check_staging_key,
    exactly,
    new_staging_key,
)

_log = structlog.get_logger("locker.storage")

# 8 MiB parts, two in flight: SeaweedFS works on one while we hash and sign the next.
# 8 MiB is the smallest power of two that fits a 64 GiB upload in S3's 10,000 parts.
_PART_SIZE = 8 * 1024 * 1024
_PARALLEL_PARTS = 2
# S3 refuses to complete a multipart upload whose parts but the last are smaller.
_MIN_PART_SIZE = 5 * 1024 * 1024
_PROBE_KEY = f"{PROBE_PREFIX}object-lock"
_PROBE_RETENTION = timedelta(days=1)
_PROBE_MARGIN = timedelta(hours=1)
# NoSuchUpload: a write finished or aborted before.
_MISSING_CODES = frozenset({"NoSuchKey", "NoSuchVersion", "NoSuchUpload"})
# What servers answer for "this object has no retention" (AWS, and SeaweedFS's name).
_NO_RETENTION_CODES = frozenset(
    {"NoSuchObjectLockConfiguration", "ObjectLockConfigurationNotFoundError"}
)
# A presigned URL only needs to be valid when its request starts.
_PRESIGNED_LIFETIME = timedelta(minutes=15)
# A single part's ETag on S3 is the hex MD5 of its bytes (unless encrypted with KMS).
_MD5_ETAG = re.compile(r"[0-9a-f]{32}")
_TRANSPORT_ERRORS = (MinioException, urllib3.exceptions.HTTPError, OSError)
# minio's default client waits 300 s per socket operation and retries five times, so
# a stalled server held a request for half an hour. These bound each connect and each
# read or write on the socket, not a whole request: a multi-gigabyte upload streams for
# as long as bytes keep moving. 120 s leaves room for a server's slowest single answer
# (completing a multipart upload of many parts).
_TIMEOUT = urllib3.Timeout(connect=10, read=120)
# A few tries with backoff (0 s, 1 s, 2 s) for refused connections and 5xx answers;
# urllib3 re-sends after a read failure only for its idempotent methods (not POST).
_RETRY = urllib3.Retry(total=3, backoff_factor=0.5, status_forcelist=(500, 502, 503, 504))
# Connections kept per host: one per worker thread of the server's pool (anyio's 40).
_POOL_SIZE = 40


class S3Store:
    """`ObjectStore` on one S3 bucket with versioning and Object Lock (COMPLIANCE)."""

    enforces_retention = True
    min_piece_bytes = _MIN_PART_SIZE

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

    def stage(self, chunks: Iterable[bytes], *, key: str | None = None) -> StagedObject:
        """Multipart-upload the chunks (8 MiB parts) to `key`, unlocked until `commit`, or
        without a key to a fresh scratch key under staging/.

        The bytes go where they will stay: committing only locks that version.
        """
        target = check_key(key) if key is not None else None
        if target is not None and self._original(target) is not None:
            raise ObjectExists(f"object {target} already exists")
        written_to = target or new_staging_key()
        reader = _ChunkReader(chunks)
        try:
            # minio only calls read(n). Two parts in flight (not minio's default of
            # three) overlap hashing with sending and keep memory to a few parts.
            result = self._client.put_object(
                self._bucket,
                written_to,
                cast(BinaryIO, reader),
                length=-1,
                part_size=_PART_SIZE,
                num_parallel_uploads=_PARALLEL_PARTS,
            )
        except _TRANSPORT_ERRORS as error:
            if reader.failure is not None:
                raise reader.failure from None
            raise _as_storage_error(error, f"writing {written_to}") from None
        if target is None:
            return StagedObject(staging_key=written_to, size=reader.size)
        if not result.version_id:
            raise StorageError(f"bucket {self._bucket} is not versioned: {target} has no version")
        return StagedObject(
            staging_key=target, size=reader.size, target_key=target, version_id=result.version_id
        )

    def commit(self, staged: StagedObject, *, retain_until: datetime) -> StoredObject:
        """COMPLIANCE-lock the version written at its key, then check it is the key's
        original: a later version never counts, locked or not.

        Raises ObjectExists if another version came first (ours is then left unlocked
        for `discard`, or, had the race gone the other way, locked but never used).
        """
        until = _ceil_to_second(check_retain_until(retain_until))
        key, version = staged.target_key, staged.version_id
        if key is None or version is None or staged.staging_key != key:
            raise StorageError(f"{staged.staging_key} was not written for a key: nothing to lock")
        first = self._original(check_key(key))
        if first is not None and first.version_id != version:
            raise ObjectExists(f"object {key} already exists")
        self._lock(key, version, until, until)
        original = self._original(key)
        if original is None or original.version_id != version:
            raise ObjectExists(f"object {key} was written concurrently")
        return original

    def discard(self, staged: StagedObject) -> None:
        """Permanently delete staged bytes: that version, or without one every unlocked
        version at the key and every unfinished write to it."""
        source = check_staging_key(staged)
        with _provider_errors(f"discarding {source}"):
            if staged.version_id is not None:
                self._client.remove_object(self._bucket, source, version_id=staged.version_id)
                return
            for version in self._versions(source):
                if staged.target_key is not None and self._locked(source, version.version_id):
                    continue  # committed: only its retention's end may remove it
                self._client.remove_object(self._bucket, source, version_id=version.version_id)
        for unfinished in self._unfinished(prefix=source):
            if unfinished.key == source:
                self.abort(unfinished)

    def begin_pieces(self, key: str) -> str:
        """Create a multipart upload at `key`: each piece is one of its parts."""
        target = check_key(key)
        with _provider_errors(f"beginning a write to {target}"):
            upload_id: str = self._client._create_multipart_upload(self._bucket, target, {})
        return upload_id

    def put_piece(self, key: str, write_id: str, number: int, data: bytes) -> Piece:
        """Upload one part (its bytes signed with their SHA-256, as every write is)."""
        check_piece_number(number)
        with _provider_errors(f"writing piece {number} of {key}"):
            etag = self._client._upload_part(
                self._bucket, check_key(key), data, None, write_id, number
            )
        return Piece(number=number, size=len(data), tag=etag)

    def stream_piece(
        self, key: str, write_id: str, number: int, chunks: Iterable[bytes], *, size: int
    ) -> Piece:
        """Upload one part as its bytes arrive, through a presigned URL.

        The request leaves before its last byte is here, so its payload cannot be
        signed with its SHA-256 (a presigned URL sends `UNSIGNED-PAYLOAD`, as minio
        does for every write over HTTPS). What protects the bytes instead: the part's
        ETag is checked against the MD5 of what was sent, when the store answers with
        an MD5 (AWS and SeaweedFS do, unless the bucket encrypts with KMS keys); a
        mismatch is a StorageError, and the caller stores the piece again, signed.
        Not retried: the bytes cannot be sent twice.
        """
        target, what = check_key(key), f"writing piece {check_piece_number(number)} of {key}"
        digest = hashlib.md5(usedforsecurity=False)

        def sent() -> Iterator[bytes]:
            for chunk in exactly(chunks, size, what):
                digest.update(chunk)
                yield chunk

        with _provider_errors(what):
            url = self._client.get_presigned_url(
                "PUT",
                self._bucket,
                target,
                expires=_PRESIGNED_LIFETIME,
                extra_query_params={"partNumber": str(number), "uploadId": write_id},
            )
            response = self._client._http.urlopen(
                "PUT", url, body=sent(), headers={"Content-Length": str(size)}, retries=False
            )
        if response.status != 200:
            raise StorageError(f"{what}: S3 answered HTTP {response.status}")
        etag = str(response.headers.get("ETag", "")).strip('"')
        if _MD5_ETAG.fullmatch(etag) and etag != digest.hexdigest():
            raise StorageError(f"{what}: the store holds other bytes than were sent")
        return Piece(number=number, size=size, tag=etag)

    def finish_pieces(self, key: str, write_id: str, pieces: Sequence[Piece]) -> StagedObject:
        """Complete the multipart upload with exactly `pieces`: the server joins them
        into one version at `key` (no copy through us) and drops any other part."""
        target = check_key(key)
        if self._original(target) is not None:
            raise ObjectExists(f"object {target} already exists")
        parts = [Part(part_number=piece.number, etag=piece.tag) for piece in pieces]
        with _provider_errors(f"finishing the write to {target}"):
            result = self._client._complete_multipart_upload(self._bucket, target, write_id, parts)
        if not result.version_id:
            raise StorageError(f"bucket {self._bucket} is not versioned: {target} has no version")
        size = sum(piece.size for piece in pieces)
        return StagedObject(
            staging_key=target, size=size, target_key=target, version_id=result.version_id
        )

    def iter_unfinished(self) -> Iterator[UnfinishedWrite]:
        """Every multipart upload begun in the bucket and neither completed nor aborted."""
        return self._unfinished(prefix=None)

    def abort(self, unfinished: UnfinishedWrite) -> None:
        """Abort the multipart upload; the server drops its parts."""
        with _provider_errors(f"aborting the unfinished write to {unfinished.key}"):
            try:
                self._client._abort_multipart_upload(
                    self._bucket, unfinished.key, unfinished.upload_id
                )
            except S3Error as error:
                if error.code != "NoSuchUpload":  # finished or aborted meanwhile
                    raise

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
                yield StagedObject(
                    staging_key=version.object_name,
                    size=version.size,
                    written_at=version.last_modified,
                )

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

    def _lock(self, key: str, version: str | None, at_least: datetime, extend_to: datetime) -> None:
        """Make sure `version` is COMPLIANCE-locked until `at_least`, setting it if not.

        Some servers accept retention and do not keep it, so read it back.
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

    def _locked(self, key: str, version: str | None) -> bool:
        retention = self._retention(key, version)
        return retention is not None and retention.mode == COMPLIANCE

    def _unfinished(self, *, prefix: str | None) -> Iterator[UnfinishedWrite]:
        """Multipart uploads in progress, each with when its newest part arrived.

        minio's public API has no call for ListMultipartUploads, ListParts or
        AbortMultipartUpload; its own internal ones are used, pinned by the lock file.
        """
        key_marker = upload_marker = None
        while True:
            with _provider_errors("listing unfinished writes"):
                listing = self._client._list_multipart_uploads(
                    self._bucket,
                    prefix=prefix,
                    key_marker=key_marker,
                    upload_id_marker=upload_marker,
                )
            for upload in listing.uploads:
                if upload.upload_id is None:
                    continue  # a malformed listing entry names nothing to abort
                yield UnfinishedWrite(
                    key=upload.object_name,
                    upload_id=upload.upload_id,
                    active_at=self._last_part_at(upload),
                )
            if not listing.is_truncated:
                return
            key_marker, upload_marker = listing.next_key_marker, listing.next_upload_id_marker

    def _last_part_at(self, upload: Any) -> datetime:
        """When the upload last received a part (its start, before the first part)."""
        latest: datetime = upload.initiated_time or datetime.now(UTC)
        marker: str | None = None
        while True:  # a page holds at most 1,000 parts: a large upload has many more
            with _provider_errors(f"listing the parts of {upload.object_name}"):
                try:
                    page = self._client._list_parts(
                        self._bucket,
                        upload.object_name,
                        upload.upload_id,
                        part_number_marker=marker,
                    )
                except S3Error as error:
                    if error.code != "NoSuchUpload":
                        raise
                    return latest  # completed or aborted meanwhile
            for part in page.parts:
                if part.last_modified is not None and part.last_modified > latest:
                    latest = part.last_modified
            if not page.is_truncated or not page.next_part_number_marker:
                return latest
            marker = page.next_part_number_marker


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
