"""The object-store contract every backend satisfies, and the rules they share.

An object is written once, at a key fixed before its first byte, and hashed on the
way; once its digests are known and checked, the caller locks it in place, where it
becomes permanent. Nothing is ever copied inside the store: a server-side copy of a
multi-gigabyte video costs as much as its upload. Bytes that prove unwanted (a
duplicate, a digest mismatch, a failure) are still unlocked and are removed.

Keys are checked here, once, so that neither backend ever turns a malformed or hostile
name into a path or into a key in a reserved namespace.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from service.errors import StorageError

CHUNK_SIZE = 1024 * 1024
"""Bytes per chunk when streaming an object out of the store."""

STAGING_PREFIX = "staging/"
MAX_PIECES = 10_000
"""The most pieces a write may have (S3's limit on the parts of a multipart upload)."""
PROBE_PREFIX = "probe/"
# Committed keys may not live in the namespaces the store uses for itself, or
# `iter_objects` would hide them and `discard` could remove them.
_RESERVED_PREFIXES = (STAGING_PREFIX, PROBE_PREFIX)
_KEY_PATTERN = re.compile(r"[A-Za-z0-9._-]+(?:/[A-Za-z0-9._-]+)*")
_MAX_KEY_LENGTH = 512
_STAGING_PATTERN = re.compile(r"staging/[0-9a-f]{32}")


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredObject:
    """A committed, immutable object; `version_id` is the S3 version (None on disk)."""

    key: str
    version_id: str | None
    size: int


@dataclass(frozen=True, slots=True, kw_only=True)
class StagedObject:
    """Bytes written but not yet committed: no retention, safe to discard.

    `target_key` is the key the bytes were written for (`stage(..., key=...)`), where
    `commit` locks them in place; None for a scratch object (bytes a resumable upload
    holds aside), which is read back and dropped, never committed. `staging_key` is where the bytes
    are now: the target key itself on S3 (with `version_id`, the unlocked version), a
    file under staging/ on a filesystem. `written_at` is known for listed objects.
    """

    staging_key: str
    size: int
    target_key: str | None = None
    version_id: str | None = None
    written_at: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class UnfinishedWrite:
    """A write the store began and never finished (an S3 multipart upload): invisible
    as an object, yet its parts take space until it is completed or aborted.

    `active_at` is when bytes last arrived for it: a live upload keeps it recent.
    """

    key: str
    upload_id: str
    active_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class Piece:
    """One stored piece of a write assembled from pieces (a resumable upload's): its
    number orders it, `tag` is what the store needs to name it when the write ends."""

    number: int
    size: int
    tag: str


class ObjectStore(Protocol):
    """Write-once object storage. Methods block: run them in a worker thread.

    Every failure of the underlying provider is raised as `StorageError` (or
    `ObjectMissing` when the object or version is not there).
    """

    # Whether `retention_until` is a promise the store keeps (Object Lock) or always None.
    enforces_retention: bool

    def stage(self, chunks: Iterable[bytes], *, key: str | None = None) -> StagedObject:
        """Write a stream of unknown length, in bounded memory, for `key` (unlocked until
        `commit`), or without a key to a fresh scratch object.

        Raises `ObjectExists` if `key` already holds an object: keys are never reused.
        """
        ...

    def commit(self, staged: StagedObject, *, retain_until: datetime) -> StoredObject:
        """Lock the staged bytes in place at their key: no copy.

        Raises `ObjectExists` if the key already holds another object (it is never
        overwritten); the staged bytes are then left for the caller to discard.
        """
        ...

    def discard(self, staged: StagedObject) -> None:
        """Remove staged bytes that are still unlocked; removing ones already gone is not
        an error. Without `version_id`, every unlocked version at a target key and every
        unfinished write to it go (an abandoned upload known only by its key)."""
        ...

    # Every piece but the last of a write assembled from pieces holds at least this many.
    min_piece_bytes: int

    def begin_pieces(self, key: str) -> str:
        """Begin a write to `key` that arrives in pieces, over many requests and
        processes; returns its id. It is an unfinished write until `finish_pieces`."""
        ...

    def put_piece(self, key: str, write_id: str, number: int, data: bytes) -> Piece:
        """Store one piece (1 <= number <= `MAX_PIECES`). A number is used once: the
        caller allocates them, so two requests never store different bytes under one."""
        ...

    def stream_piece(
        self, key: str, write_id: str, number: int, chunks: Iterable[bytes], *, size: int
    ) -> Piece:
        """Store one piece of exactly `size` bytes while they still arrive: the write
        begins before its last byte is here. If `chunks` fails or ends short, nothing
        is stored under `number` (the error propagates); a piece is then stored again,
        from bytes the caller kept, under another number."""
        ...

    def finish_pieces(self, key: str, write_id: str, pieces: Sequence[Piece]) -> StagedObject:
        """Join `pieces` (ascending numbers; others stored for this write are dropped)
        into the object at `key`, unlocked until `commit`, as `stage(..., key=key)` does.

        Raises `ObjectExists` if `key` already holds an object, `ObjectMissing` if the
        write is gone (finished or aborted before).
        """
        ...

    def iter_unfinished(self) -> Iterator[UnfinishedWrite]:
        """Every write begun and never finished: a live upload's, or a crashed one's."""
        ...

    def abort(self, unfinished: UnfinishedWrite) -> None:
        """Drop an unfinished write and the parts it stored."""
        ...

    def head(self, key: str) -> StoredObject | None:
        """The original object committed at `key`, or None."""
        ...

    def open_staged(self, staged: StagedObject) -> ClosingChunks:
        """Stream a staged object's bytes (a resumable upload's bytes held aside, or its
        joined object when its digests must be rebuilt); raises `ObjectMissing` at once
        if it is gone."""
        ...

    def open(self, key: str, version_id: str | None) -> ClosingChunks:
        """Stream exactly that version's bytes; raises `ObjectMissing` at once if absent.

        The caller closes the stream (or exhausts it) to release the file or connection.
        """
        ...

    def open_range(
        self, key: str, version_id: str | None, *, start: int, length: int
    ) -> ClosingChunks:
        """Stream `length` bytes of that version from byte `start` (a resumed download).

        Requires 0 <= start and 1 <= length and start + length <= the object's size
        (the caller knows the size from its record). Raises like `open`.
        """
        ...

    def iter_objects(self) -> Iterator[StoredObject]:
        """Every object at a key (never a staging one), for the operator's audit; on S3
        that includes an upload's bytes not yet locked (they sit at their key)."""
        ...

    def iter_staged(self) -> Iterator[StagedObject]:
        """Every staging object, including ones a crash left behind."""
        ...

    def retention_until(self, key: str, version_id: str | None) -> datetime | None:
        """The date until which the store refuses to delete the object, if it enforces one."""
        ...

    def lock(self, key: str, version_id: str | None, *, retain_until: datetime) -> None:
        """Make sure that committed version cannot be deleted before `retain_until`.

        For an object found already at its key (stored by an upload that never got
        recorded): adopting it as evidence must not leave it deletable.
        """
        ...


def check_key(key: str) -> str:
    """Return `key` if it is a safe committed-object key, else raise StorageError.

    Safe: relative, slash-separated segments of [A-Za-z0-9._-], no "." or ".."
    segment, outside the reserved prefixes. Such a key is also a safe relative path.
    """
    segments = key.split("/")
    if (
        len(key) > _MAX_KEY_LENGTH
        or not _KEY_PATTERN.fullmatch(key)
        or any(segment in (".", "..") for segment in segments)
        or key.startswith(_RESERVED_PREFIXES)
    ):
        raise StorageError(f"refused object key {key!r}: not a safe relative key")
    return key


def new_staging_key() -> str:
    """A fresh, unguessable staging key."""
    return f"{STAGING_PREFIX}{uuid.uuid4().hex}"


def check_staging_key(staged: StagedObject) -> str:
    """The staging key, if it is one this store could have made; else StorageError.

    Stops a forged StagedObject from making `discard` or `commit` touch other keys.
    """
    if staged.staging_key == staged.target_key:
        return check_key(staged.target_key)
    if not _STAGING_PATTERN.fullmatch(staged.staging_key):
        raise StorageError(f"refused staging key {staged.staging_key!r}")
    return staged.staging_key


def check_span(start: int, length: int) -> None:
    """Refuse a span `open_range` cannot mean: a negative start or an empty length."""
    if start < 0 or length < 1:
        raise ValueError(f"byte span must have start >= 0 and length >= 1, got {start}, {length}")


def check_piece_number(number: int) -> int:
    if not 1 <= number <= MAX_PIECES:
        raise StorageError(f"piece number {number} is outside 1..{MAX_PIECES}")
    return number


def exactly(chunks: Iterable[bytes], size: int, what: str) -> Iterator[bytes]:
    """`chunks`, refused (StorageError) once they run past `size` or end short of it: a
    write with a declared length must never be completed with other bytes."""
    sent = 0
    for chunk in chunks:
        sent += len(chunk)
        if sent > size:
            raise StorageError(f"{what}: more than the {size} bytes declared")
        yield chunk
    if sent != size:
        raise StorageError(f"{what}: {sent} of the {size} bytes declared")


def check_retain_until(retain_until: datetime) -> datetime:
    """Refuse a naive date: a retention date must name an instant, not a wall clock."""
    if retain_until.tzinfo is None or retain_until.utcoffset() is None:
        raise ValueError("retain_until must be timezone-aware")
    return retain_until


class ClosingChunks(Iterator[bytes]):
    """Chunks read from an open source, closed when exhausted, on `close()` or when dropped.

    A plain generator would leak the open file or HTTP connection if the consumer
    never starts it (its `finally` never runs); this class closes in all cases.
    Errors listed in `errors` become StorageError naming `what`.
    """

    def __init__(
        self,
        *,
        read: Callable[[int], bytes],
        close: Callable[[], None],
        errors: tuple[type[BaseException], ...],
        what: str,
    ) -> None:
        self._read = read
        self._close: Callable[[], None] | None = close
        self._errors = errors
        self._what = what

    def __iter__(self) -> ClosingChunks:
        return self

    def __next__(self) -> bytes:
        if self._close is None:
            raise StopIteration
        try:
            chunk = self._read(CHUNK_SIZE)
        except self._errors as error:
            self.close()
            raise StorageError(f"{self._what}: read failed ({type(error).__name__})") from None
        if not chunk:
            self.close()
            raise StopIteration
        return chunk

    def close(self) -> None:
        """Release the source; safe to call more than once."""
        close, self._close = self._close, None
        if close is not None:
            close()

    def __del__(self) -> None:
        self.close()
