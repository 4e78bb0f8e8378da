"""Writes that arrive in pieces (a resumable upload's, over many requests): joined at
their key without a copy through the locker on S3, every other piece dropped, and listed
as unfinished until then."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest

from service.errors import ObjectExists, ObjectMissing, StorageError
from service.storage import (
    FilesystemStore,
    ObjectStore,
    S3Store,
    StagedObject,
    UnfinishedWrite,
)

KEY = "org/o/evidence/5d0c9c4e-0f43-4a8e-9d0e-3c1b6a0f2e77"


def _until() -> datetime:
    return datetime.now(UTC) + timedelta(days=1)


def _piece_bytes(store: ObjectStore, fill: bytes) -> bytes:
    return fill * store.min_piece_bytes


def test_pieces_join_in_number_order_and_others_are_dropped(object_store: ObjectStore) -> None:
    store = object_store
    write = store.begin_pieces(KEY)
    first, lost, last = (
        _piece_bytes(store, b"a"),
        _piece_bytes(store, b"x"),
        "آخر قطعة".encode(),
    )
    # Piece 2 was stored by a request that lost the race for its offset: never listed.
    pieces = [store.put_piece(KEY, write, 1, first), store.put_piece(KEY, write, 2, lost)]
    pieces.append(store.put_piece(KEY, write, 3, last))
    assert [u.key for u in store.iter_unfinished()] == [KEY]
    assert store.head(KEY) is None  # nothing readable until it is finished
    staged = store.finish_pieces(KEY, write, [pieces[0], pieces[2]])
    assert staged.target_key == KEY and staged.size == len(first) + len(last)
    assert list(store.iter_unfinished()) == []
    stored = store.commit(staged, retain_until=_until())
    assert b"".join(store.open(KEY, stored.version_id)) == first + last


def test_finishing_twice_or_after_an_abort_says_the_write_is_gone(
    object_store: ObjectStore,
) -> None:
    store = object_store
    write = store.begin_pieces(KEY)
    piece = store.put_piece(KEY, write, 1, b"only piece")
    listed = next(iter(store.iter_unfinished()))
    assert (listed.key, listed.upload_id) == (KEY, write)
    store.abort(listed)
    with pytest.raises(ObjectMissing):
        store.finish_pieces(KEY, write, [piece])
    assert store.head(KEY) is None


def test_a_key_that_holds_an_object_is_never_finished_into(object_store: ObjectStore) -> None:
    store = object_store
    store.commit(store.stage([b"evidence"], key=KEY), retain_until=_until())
    write = store.begin_pieces(KEY)
    piece = store.put_piece(KEY, write, 1, b"intruder")
    with pytest.raises(ObjectExists):
        store.finish_pieces(KEY, write, [piece])
    assert b"".join(store.open(KEY, None)) == b"evidence"


def test_discarding_the_key_drops_its_pieces(object_store: ObjectStore) -> None:
    store = object_store
    write = store.begin_pieces(KEY)
    store.put_piece(KEY, write, 1, b"abandoned")
    store.discard(StagedObject(staging_key=KEY, size=0, target_key=KEY))
    assert list(store.iter_unfinished()) == []


@pytest.mark.parametrize("number", [0, 10_001])
def test_piece_numbers_stay_within_the_limit(object_store: ObjectStore, number: int) -> None:
    write = object_store.begin_pieces(KEY)
    with pytest.raises(StorageError, match="outside"):
        object_store.put_piece(KEY, write, number, b"x")


def test_a_forged_write_id_is_no_path_on_disk(fs_store: FilesystemStore) -> None:
    """On S3 write ids are the server's, which refuses unknown ones; on disk they name
    a folder, so only ids the store could have made are accepted."""
    forged = UnfinishedWrite(key=KEY, upload_id="../objects", active_at=_until())
    with pytest.raises(StorageError, match="refused"):
        fs_store.abort(forged)
    with pytest.raises(ObjectMissing):
        fs_store.put_piece(KEY, "../objects", 1, b"x")


def test_a_streamed_piece_is_stored_as_its_bytes_arrive(object_store: ObjectStore) -> None:
    store = object_store
    write = store.begin_pieces(KEY)
    first = _piece_bytes(store, b"s")
    arrived: list[int] = []

    def arriving() -> Iterator[bytes]:
        for start in range(0, len(first), 1024 * 1024):
            arrived.append(start)
            yield first[start : start + 1024 * 1024]

    streamed = store.stream_piece(KEY, write, 1, arriving(), size=len(first))
    last = store.stream_piece(KEY, write, 2, iter(["النهاية".encode()]), size=14)
    assert (streamed.number, streamed.size, last.size) == (1, len(first), 14)
    assert len(arrived) == -(-len(first) // (1024 * 1024))
    stored = store.commit(store.finish_pieces(KEY, write, [streamed, last]), retain_until=_until())
    assert b"".join(store.open(KEY, stored.version_id)) == first + "النهاية".encode()


class _Cut(Exception):
    """The client went away mid-piece."""


def _cut_after(data: bytes) -> Iterator[bytes]:
    yield data
    raise _Cut


@pytest.mark.parametrize(
    ("chunks", "error"),
    [
        (lambda: _cut_after(b"half a piece"), _Cut),
        (lambda: iter([b"short"]), StorageError),
        (lambda: iter([b"far too long for what was declared"]), StorageError),
    ],
    ids=["source-fails", "ends-short", "runs-long"],
)
def test_a_streamed_piece_that_does_not_arrive_whole_is_not_stored(
    object_store: ObjectStore, chunks: Callable[[], Iterator[bytes]], error: type[Exception]
) -> None:
    store = object_store
    write = store.begin_pieces(KEY)
    with pytest.raises(error):
        store.stream_piece(KEY, write, 1, chunks(), size=20)
    # The number is spent; the caller stores the bytes it kept under the next one.
    kept = store.put_piece(KEY, write, 2, b"half a piece")
    stored = store.commit(store.finish_pieces(KEY, write, [kept]), retain_until=_until())
    assert b"".join(store.open(KEY, stored.version_id)) == b"half a piece"


def test_a_piece_number_already_stored_on_disk_is_never_rewritten(
    fs_store: FilesystemStore,
) -> None:
    write = fs_store.begin_pieces(KEY)
    first = fs_store.put_piece(KEY, write, 1, b"first bytes")
    with pytest.raises(StorageError):
        fs_store.stream_piece(KEY, write, 1, iter([b"other bytes"]), size=11)
    staged = fs_store.finish_pieces(KEY, write, [first])
    assert b"".join(fs_store.open_staged(staged)) == b"first bytes"


@pytest.mark.s3
def test_a_streamed_part_is_checked_by_the_md5_the_store_answers(s3_store: S3Store) -> None:
    """Its payload is unsigned; the part's ETag, the MD5 of what S3 received, is what
    `stream_piece` compares with what it sent, so the store must answer with one."""
    write = s3_store.begin_pieces(KEY)
    data = "شاهد".encode() * 1000
    piece = s3_store.stream_piece(KEY, write, 1, iter([data]), size=len(data))
    assert piece.tag == hashlib.md5(data, usedforsecurity=False).hexdigest()


@pytest.mark.s3
def test_a_streamed_part_of_a_write_the_store_does_not_know_is_refused(
    s3_store: S3Store,
) -> None:
    with pytest.raises(StorageError, match="HTTP 404"):
        s3_store.stream_piece(KEY, "no-such-write", 1, iter([b"bytes"]), size=5)
