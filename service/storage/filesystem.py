"""An object store on a local filesystem, for development and single-machine use.

Layout: `<root>/objects/<key>` for committed objects, `<root>/staging/<uuid>` for
uploads in progress, `<root>/pieces/<id>/` for a resumable upload's pieces (joined into
a staging file when the upload ends: a local disk has no multipart upload). Files are
created read-only (0o444) and committed with a hard link to the key they were written
for, which never replaces an existing file and copies nothing. A write in progress is
its staging file, or a folder of pieces (the only kind of unfinished write listed).

Retention is NOT enforced here: anyone with write access to the directory can
delete or replace an object. Immutability is only as strong as the operating
system's permissions; use the S3 store with Object Lock where that matters.
"""

from __future__ import annotations

import os
import re
import stat
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from service.errors import ObjectExists, ObjectMissing, StorageError
from service.storage.base import (
    CHUNK_SIZE,
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

_READ_ONLY = 0o444
_PRIVATE_DIR = 0o700
_ABSENT = (FileNotFoundError, NotADirectoryError, IsADirectoryError)
_KEY_FILE = "key"
_WRITE_ID = re.compile(r"[0-9a-f]{32}")


class FilesystemStore:
    """`ObjectStore` on a directory tree; no versions, no enforced retention."""

    enforces_retention = False
    min_piece_bytes = 1

    def __init__(self, root: Path) -> None:
        self._objects = root / "objects"
        self._staging = root / "staging"
        self._pieces = root / "pieces"
        try:
            for directory in (root, self._objects, self._staging, self._pieces):
                directory.mkdir(mode=_PRIVATE_DIR, parents=True, exist_ok=True)
        except OSError as error:
            raise StorageError(f"cannot create store at {root}: {error.strerror}") from None

    def stage(self, chunks: Iterable[bytes], *, key: str | None = None) -> StagedObject:
        """Write the chunks to a new read-only staging file, one chunk in memory at a
        time, for `key` (linked there by `commit`) or as a scratch file."""
        if key is not None and self.head(key) is not None:
            raise ObjectExists(f"object {key} already exists")
        staging_key = new_staging_key()
        path = self._staging_path(staging_key)
        size = _write_new_file(path, chunks, what=staging_key)
        return StagedObject(staging_key=staging_key, size=size, target_key=key)

    def commit(self, staged: StagedObject, *, retain_until: datetime) -> StoredObject:
        """Link the staged file at its key durably (fsync file, then directories).

        `retain_until` is checked but cannot be enforced on a plain filesystem.
        """
        check_retain_until(retain_until)
        key = staged.target_key
        if key is None:
            raise StorageError(f"{staged.staging_key} was not written for a key: nothing to lock")
        source = self._staging_path(check_staging_key(staged))
        target = self._object_path(key)
        if target.exists():
            raise ObjectExists(f"object {key} already exists")
        with _errors_about(f"committing {staged.staging_key} to {key}"):
            _fsync_path(source, os.O_RDONLY)
            os.chmod(source, _READ_ONLY)
            _make_dirs_durably(target.parent)
            try:
                # Unlike rename, link fails if the target exists: never overwrites.
                os.link(source, target)
            except FileExistsError:
                raise ObjectExists(f"object {key} already exists") from None
            _fsync_path(target.parent, os.O_DIRECTORY)
            source.unlink()
            _fsync_path(source.parent, os.O_DIRECTORY)
            size = target.stat().st_size
        return StoredObject(key=key, version_id=None, size=size)

    def discard(self, staged: StagedObject) -> None:
        """Delete the staging file, if it is still there (a committed file never is)."""
        if staged.staging_key == staged.target_key:
            # Known only by its key: its staging file is unnamed (fsck lists it); its
            # pieces, if it was arriving in pieces, go.
            for unfinished in self.iter_unfinished():
                if unfinished.key == staged.target_key:
                    self.abort(unfinished)
            return
        path = self._staging_path(check_staging_key(staged))
        with _errors_about(f"discarding {staged.staging_key}"):
            path.unlink(missing_ok=True)

    def head(self, key: str) -> StoredObject | None:
        """The file at `key`, or None."""
        path = self._object_path(key)
        try:
            status = path.stat()
        except _ABSENT:
            return None
        except OSError as error:
            raise StorageError(f"cannot stat object {key}: {error.strerror}") from None
        if not stat.S_ISREG(status.st_mode):
            return None
        return StoredObject(key=key, version_id=None, size=status.st_size)

    def open(self, key: str, version_id: str | None) -> ClosingChunks:
        """Stream the file at `key`; a version id cannot match here (no versions)."""
        file = self._open_file(key, version_id)
        return ClosingChunks(read=file.read, close=file.close, errors=(OSError,), what=key)

    def open_range(
        self, key: str, version_id: str | None, *, start: int, length: int
    ) -> ClosingChunks:
        """Stream `length` bytes of the file at `key` from byte `start`."""
        check_span(start, length)
        file = self._open_file(key, version_id)
        remaining = length

        def read(size: int) -> bytes:
            nonlocal remaining
            chunk = file.read(min(size, remaining))
            remaining -= len(chunk)
            return chunk

        try:
            file.seek(start)
        except OSError as error:
            file.close()
            raise StorageError(f"cannot seek in object {key}: {error.strerror}") from None
        return ClosingChunks(read=read, close=file.close, errors=(OSError,), what=key)

    def _open_file(self, key: str, version_id: str | None) -> BinaryIO:
        path = self._object_path(key)
        if version_id is not None:
            raise ObjectMissing(f"object {key}: the filesystem store has no version {version_id}")
        try:
            return path.open("rb")
        except _ABSENT:
            raise ObjectMissing(f"object {key} is not in the store") from None
        except OSError as error:
            raise StorageError(f"cannot open object {key}: {error.strerror}") from None

    def open_staged(self, staged: StagedObject) -> ClosingChunks:
        """Stream a staging file."""
        key = check_staging_key(staged)
        try:
            file = self._staging_path(key).open("rb")
        except _ABSENT:
            raise ObjectMissing(f"staged object {key} is not in the store") from None
        except OSError as error:
            raise StorageError(f"cannot open staged object {key}: {error.strerror}") from None
        return ClosingChunks(read=file.read, close=file.close, errors=(OSError,), what=key)

    def iter_objects(self) -> Iterator[StoredObject]:
        """Every file under objects/, in key order."""
        with _errors_about("listing objects"):
            for directory, subdirectories, files in os.walk(self._objects, onerror=_reraise):
                subdirectories.sort()
                for name in sorted(files):
                    path = Path(directory, name)
                    key = path.relative_to(self._objects).as_posix()
                    yield StoredObject(key=key, version_id=None, size=path.stat().st_size)

    def iter_staged(self) -> Iterator[StagedObject]:
        """Every file under staging/."""
        with _errors_about("listing staging files"):
            for path in sorted(self._staging.iterdir()):
                status = path.stat()
                yield StagedObject(
                    staging_key=f"{STAGING_PREFIX}{path.name}",
                    size=status.st_size,
                    written_at=datetime.fromtimestamp(status.st_mtime, UTC),
                )

    def begin_pieces(self, key: str) -> str:
        """A new folder of pieces, holding the key they are for."""
        write_id = uuid.uuid4().hex
        folder = self._pieces / write_id
        with _errors_about(f"beginning a write to {check_key(key)}"):
            folder.mkdir(mode=_PRIVATE_DIR)
            _write_new_file(folder / _KEY_FILE, [key.encode()], what=f"the key of {write_id}")
            _fsync_path(folder, os.O_DIRECTORY)
            _fsync_path(self._pieces, os.O_DIRECTORY)
        return write_id

    def put_piece(self, key: str, write_id: str, number: int, data: bytes) -> Piece:
        """Write one piece file, durably; a number already written is refused."""
        return self._write_piece(key, write_id, number, [data], size=len(data))

    def stream_piece(
        self, key: str, write_id: str, number: int, chunks: Iterable[bytes], *, size: int
    ) -> Piece:
        """Write one piece file as its bytes arrive; one that fails or ends short is removed."""
        return self._write_piece(key, write_id, number, chunks, size=size)

    def _write_piece(
        self, key: str, write_id: str, number: int, chunks: Iterable[bytes], *, size: int
    ) -> Piece:
        folder = self._piece_folder(key, write_id)
        path = folder / f"{check_piece_number(number):05d}"
        what = f"piece {number} of {key}"
        _write_new_file(path, exactly(chunks, size, what), what=what)  # refuses a rewrite
        with _errors_about(f"writing {what}"):
            _fsync_path(path, os.O_RDONLY)
            _fsync_path(folder, os.O_DIRECTORY)
        return Piece(number=number, size=size, tag=path.name)

    def finish_pieces(self, key: str, write_id: str, pieces: Sequence[Piece]) -> StagedObject:
        """Join the pieces into a staging file for `key` (one local copy), then drop them.

        The joined file is named after the write, and durable before the pieces go: a
        caller that dies before it hears the answer finds it by asking again.
        """
        staging_key = f"{STAGING_PREFIX}{write_id}" if _WRITE_ID.fullmatch(write_id) else ""
        path = self._staging_path(staging_key) if staging_key else None
        try:
            folder = self._piece_folder(key, write_id)
        except ObjectMissing:
            if path is not None and path.is_file():
                size = path.stat().st_size
                return StagedObject(staging_key=staging_key, size=size, target_key=key)
            raise
        assert path is not None  # _piece_folder checked the write id

        def joined() -> Iterator[bytes]:
            for piece in pieces:
                path = folder / f"{piece.number:05d}"
                with _errors_about(f"reading piece {piece.number} of {key}"):
                    if path.stat().st_size != piece.size:
                        raise StorageError(f"piece {piece.number} of {key} has the wrong size")
                    with path.open("rb") as file:
                        while chunk := file.read(CHUNK_SIZE):
                            yield chunk

        if self.head(key) is not None:
            raise ObjectExists(f"object {key} already exists")
        with _errors_about(f"joining the pieces of {key}"):
            path.unlink(missing_ok=True)  # a join that died halfway: its pieces are all here
        try:
            size = _write_new_file(path, joined(), what=staging_key)
            with _errors_about(f"joining the pieces of {key}"):
                _fsync_path(path, os.O_RDONLY)
                _fsync_path(path.parent, os.O_DIRECTORY)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        self.abort(UnfinishedWrite(key=key, upload_id=write_id, active_at=datetime.now(UTC)))
        return StagedObject(staging_key=staging_key, size=size, target_key=key)

    def iter_unfinished(self) -> Iterator[UnfinishedWrite]:
        """Every folder of pieces, with when its newest piece was written."""
        with _errors_about("listing unfinished writes"):
            for folder in sorted(self._pieces.iterdir()):
                try:
                    key = (folder / _KEY_FILE).read_text()
                    active = max(entry.stat().st_mtime for entry in folder.iterdir())
                except _ABSENT:
                    continue  # finished or aborted while listed
                yield UnfinishedWrite(
                    key=key, upload_id=folder.name, active_at=datetime.fromtimestamp(active, UTC)
                )

    def abort(self, unfinished: UnfinishedWrite) -> None:
        """Remove the folder of pieces (gone already is not an error)."""
        if not _WRITE_ID.fullmatch(unfinished.upload_id):
            raise StorageError(f"refused write id {unfinished.upload_id!r}")
        folder = self._pieces / unfinished.upload_id
        with _errors_about(f"aborting the write to {unfinished.key}"):
            if not folder.is_dir():
                return
            # The key file goes last: a folder left half-removed is still listed.
            for entry in sorted(folder.iterdir(), key=lambda entry: entry.name == _KEY_FILE):
                entry.unlink(missing_ok=True)
            folder.rmdir()

    def lock(self, key: str, version_id: str | None, *, retain_until: datetime) -> None:
        """Make the file read-only: all a filesystem can do (retention is not enforced)."""
        if self.head(key) is None or version_id is not None:
            raise ObjectMissing(f"object {key} is not in the store")
        path = self._object_path(key)
        with _errors_about(f"locking {key}"):
            path.chmod(0o444)

    def retention_until(self, key: str, version_id: str | None) -> datetime | None:
        """Always None: a filesystem cannot enforce retention."""
        if self.head(key) is None or version_id is not None:
            raise ObjectMissing(f"object {key} is not in the store")
        return None

    def _object_path(self, key: str) -> Path:
        return self._objects.joinpath(*check_key(key).split("/"))

    def _piece_folder(self, key: str, write_id: str) -> Path:
        """The folder of an open write to `key`; ObjectMissing if it is not open."""
        folder = self._pieces / write_id
        try:
            if not _WRITE_ID.fullmatch(write_id) or (folder / _KEY_FILE).read_text() != key:
                raise ObjectMissing(f"the write to {key} is no longer open")
        except _ABSENT:
            raise ObjectMissing(f"the write to {key} is no longer open") from None
        except OSError as error:
            raise StorageError(f"the write to {key}: {error.strerror}") from None
        return folder

    def _staging_path(self, staging_key: str) -> Path:
        return self._staging / staging_key.removeprefix(STAGING_PREFIX)


@contextmanager
def _errors_about(what: str) -> Iterator[None]:
    """Turn OSError into StorageError naming what we were doing (no traceback chain)."""
    try:
        yield
    except OSError as error:
        detail = error.strerror or type(error).__name__
        raise StorageError(f"{what}: {detail}") from None


def _write_new_file(path: Path, chunks: Iterable[bytes], *, what: str) -> int:
    """Create `path` read-only (it is never writable, even while being written) and fill it;
    a file this call created and could not fill is removed (one already there is not).

    Errors from `chunks` itself propagate unchanged; only file errors become StorageError.
    """
    size = 0
    with _errors_about(f"writing {what}"):
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _READ_ONLY)
        file = os.fdopen(descriptor, "wb")
    try:
        try:
            for chunk in chunks:
                with _errors_about(f"writing {what}"):
                    file.write(chunk)
                size += len(chunk)
        finally:
            with _errors_about(f"writing {what}"):
                file.close()
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return size


def _fsync_path(path: Path, flags: int) -> None:
    """fsync a file or directory (a directory's fsync makes its new entries durable)."""
    descriptor = os.open(path, flags)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _make_dirs_durably(directory: Path) -> None:
    """mkdir -p, fsyncing each new directory's parent so the entry survives a crash."""
    if directory.is_dir():
        return
    _make_dirs_durably(directory.parent)
    directory.mkdir(mode=_PRIVATE_DIR, exist_ok=True)
    _fsync_path(directory.parent, os.O_DIRECTORY)


def _reraise(error: OSError) -> None:
    raise error
