"""The one contract every ObjectStore backend must satisfy (filesystem and S3)."""

from __future__ import annotations

import gc
import os
import tracemalloc
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta

import pytest

from service.errors import ObjectExists, ObjectMissing, StorageError
from service.storage import FilesystemStore, ObjectStore, S3Store, StagedObject, StoredObject

RETAIN_UNTIL = datetime.now(UTC) + timedelta(days=1)
KEY = "org/test/sha256/ab12"


def _odd_chunks(data: bytes) -> Iterator[bytes]:
    """Chunks of awkward, varying sizes (including empty ones) that straddle part limits."""
    sizes = [1, 0, 7919, 65_537, 1_048_573, 3_000_001]
    position = index = 0
    while position < len(data):
        size = sizes[index % len(sizes)]
        yield data[position : position + size]
        position += size
        index += 1


def _store(store: ObjectStore, data: bytes, key: str = KEY) -> StoredObject:
    return store.commit(store.stage([data], key=key), retain_until=RETAIN_UNTIL)


def _keys(staged: Iterable[StagedObject]) -> list[str]:
    return [s.staging_key for s in staged]


def _read(store: ObjectStore, key: str, version_id: str | None) -> bytes:
    return b"".join(store.open(key, version_id))


@pytest.mark.parametrize("size", [0, 1, 5 * 1024 * 1024 + 3], ids=["empty", "one-byte", "5MiB+3"])
def test_round_trip_is_byte_exact(object_store: ObjectStore, size: int) -> None:
    data = os.urandom(size)
    staged = object_store.stage(_odd_chunks(data), key=KEY)
    assert staged.size == size
    stored = object_store.commit(staged, retain_until=RETAIN_UNTIL)
    assert (stored.key, stored.size) == (KEY, size)
    assert _read(object_store, KEY, stored.version_id) == data


def test_multipart_stream_of_unknown_length(object_store: ObjectStore) -> None:
    """More than one 16 MiB part on S3: the stream is split, uploaded and joined intact."""
    data = os.urandom(17 * 1024 * 1024 + 11)
    stored = object_store.commit(
        object_store.stage(_odd_chunks(data), key=KEY), retain_until=RETAIN_UNTIL
    )
    assert stored.size == len(data)
    assert _read(object_store, KEY, stored.version_id) == data


def test_stage_uses_bounded_memory(object_store: ObjectStore) -> None:
    """A stream much larger than the memory allowed for it (S3: a few 16 MiB parts)."""
    chunk = os.urandom(1024 * 1024)
    tracemalloc.start()
    try:
        staged = object_store.stage(chunk for _ in range(96))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert staged.size == 96 * len(chunk)
    assert peak < 64 * 1024 * 1024


def test_open_streams_in_bounded_chunks(object_store: ObjectStore) -> None:
    stored = _store(object_store, os.urandom(3 * 1024 * 1024))
    sizes = [len(chunk) for chunk in object_store.open(KEY, stored.version_id)]
    assert len(sizes) >= 3 and max(sizes) <= 1024 * 1024


def test_open_closed_early_then_reopened(object_store: ObjectStore) -> None:
    data = os.urandom(3 * 1024 * 1024)
    stored = _store(object_store, data)
    chunks = object_store.open(KEY, stored.version_id)
    first = next(chunks)
    chunks.close()  # type: ignore[attr-defined]
    assert list(chunks) == []
    assert data.startswith(first)
    assert _read(object_store, KEY, stored.version_id) == data


def test_head_reports_the_committed_object(object_store: ObjectStore) -> None:
    stored = _store(object_store, b"evidence")
    assert object_store.head(KEY) == stored
    assert stored.size == len(b"evidence")
    assert object_store.head("org/test/sha256/other") is None


def test_a_taken_key_is_never_written_again(object_store: ObjectStore) -> None:
    original = _store(object_store, b"original")
    with pytest.raises(ObjectExists):
        object_store.stage([b"replacement"], key=KEY)
    assert object_store.head(KEY) == original
    assert _read(object_store, KEY, original.version_id) == b"original"
    assert _keys(object_store.iter_staged()) == []


def test_commit_leaves_nothing_staged(object_store: ObjectStore) -> None:
    staged = object_store.stage([b"x"], key=KEY)
    object_store.commit(staged, retain_until=RETAIN_UNTIL)
    assert _keys(object_store.iter_staged()) == []


def test_a_scratch_object_cannot_be_committed(object_store: ObjectStore) -> None:
    scratch = object_store.stage([b"a resumable upload's part"])
    with pytest.raises(StorageError, match="not written for a key"):
        object_store.commit(scratch, retain_until=RETAIN_UNTIL)
    assert list(object_store.iter_objects()) == []


def test_discard_removes_staged_object_and_is_idempotent(object_store: ObjectStore) -> None:
    kept, dropped = object_store.stage([b"kept"]), object_store.stage([b"dropped"], key=KEY)
    object_store.discard(dropped)
    object_store.discard(dropped)
    assert _keys(object_store.iter_staged()) == [kept.staging_key]
    with pytest.raises(StorageError):
        object_store.commit(dropped, retain_until=RETAIN_UNTIL)
    assert object_store.head(KEY) is None


def test_iter_objects_lists_committed_not_staged(object_store: ObjectStore) -> None:
    first = _store(object_store, b"one", "org/a/sha256/01")
    second = _store(object_store, b"two!", "org/b/sha256/02")
    object_store.stage([b"in flight"])
    assert sorted(object_store.iter_objects(), key=lambda o: o.key) == [first, second]


def test_iter_staged_lists_staged_objects(object_store: ObjectStore) -> None:
    before = datetime.now(UTC) - timedelta(seconds=2)
    staged = [object_store.stage([b"a" * n]) for n in (1, 2)]
    listed = sorted(object_store.iter_staged(), key=lambda s: s.size)
    assert [(s.staging_key, s.size) for s in listed] == [(s.staging_key, s.size) for s in staged]
    assert all(s.staging_key.startswith("staging/") for s in staged)
    # When each was written, so that fsck tells a live upload's from a crashed one's.
    assert all(s.written_at is not None and s.written_at >= before for s in listed)


def test_staged_bytes_read_back_exactly_until_discarded(object_store: ObjectStore) -> None:
    data = os.urandom(2 * 1024 * 1024 + 5)
    staged = object_store.stage(_odd_chunks(data))
    assert b"".join(object_store.open_staged(staged)) == data
    object_store.discard(staged)
    with pytest.raises(ObjectMissing):
        object_store.open_staged(staged)
    with pytest.raises(StorageError):
        object_store.open_staged(StagedObject(staging_key="org/test/sha256/ab12", size=1))


def test_open_missing_key_raises_object_missing(object_store: ObjectStore) -> None:
    with pytest.raises(ObjectMissing):
        object_store.open("org/test/sha256/absent", None)


def test_open_missing_version_raises_object_missing(object_store: ObjectStore) -> None:
    _store(object_store, b"evidence")
    with pytest.raises(ObjectMissing):
        object_store.open(KEY, "0123456789abcdef0123456789abcdef")


def test_source_errors_propagate_unchanged(object_store: ObjectStore) -> None:
    class ClientWentAway(Exception):
        pass

    def failing() -> Iterator[bytes]:
        yield b"partial"
        raise ClientWentAway

    with pytest.raises(ClientWentAway):
        object_store.stage(failing(), key=KEY)
    assert list(object_store.iter_staged()) == []
    assert object_store.head(KEY) is None
    assert list(object_store.iter_unfinished()) == []


@pytest.mark.parametrize(
    "key",
    [
        "../escape",
        "org/../../etc/passwd",
        "/etc/passwd",
        "org//double",
        "org/./dot",
        "org/trailing/",
        "",
        "org/spaced name",
        "org/back\\slash",
        "staging/reserved",
        "probe/object-lock",
    ],
)
def test_unsafe_keys_are_refused(object_store: ObjectStore, key: str) -> None:
    with pytest.raises(StorageError, match="refused object key"):
        object_store.stage([b"x"], key=key)
    with pytest.raises(StorageError, match="refused object key"):
        object_store.head(key)
    assert list(object_store.iter_objects()) == []


def test_forged_staging_key_is_refused(object_store: ObjectStore) -> None:
    _store(object_store, b"evidence")
    forged = StagedObject(staging_key=f"../objects/{KEY}", size=8)
    with pytest.raises(StorageError, match="refused staging key"):
        object_store.discard(forged)
    assert object_store.head(KEY) is not None


def test_naive_retention_date_is_refused(object_store: ObjectStore) -> None:
    staged = object_store.stage([b"x"], key=KEY)
    with pytest.raises(ValueError, match="timezone-aware"):
        object_store.commit(staged, retain_until=datetime.now() + timedelta(days=1))
    # Nothing was locked: the bytes written for the key stay unlocked (S3) or unlinked.
    written = object_store.head(KEY)
    assert written is None or object_store.retention_until(KEY, written.version_id) is None


def test_filesystem_objects_are_read_only_files_under_objects(fs_store: FilesystemStore) -> None:
    """Filesystem specifics: where the bytes land, and that the file is never writable."""
    _store(fs_store, b"evidence")
    root = fs_store._objects.parent
    path = root / "objects" / KEY
    assert path.read_bytes() == b"evidence"
    assert path.stat().st_mode & 0o777 == 0o444
    assert list((root / "staging").iterdir()) == []


def test_s3_downloads_release_their_connections(s3_store: S3Store) -> None:
    """Finished, closed-early and never-started downloads all return their connection."""
    stored = _store(s3_store, os.urandom(3 * 1024 * 1024))
    for _ in range(12):  # more than the pool's 10 connections
        b"".join(s3_store.open(KEY, stored.version_id))
        early = s3_store.open(KEY, stored.version_id)
        next(early)
        early.close()  # type: ignore[attr-defined]
        s3_store.open(KEY, stored.version_id)  # dropped without being iterated
        gc.collect()
    idle = [pool.pool for pool in s3_store._client._http.pools._container.values()]
    assert idle and all(queue is not None and queue.qsize() == queue.maxsize for queue in idle)
