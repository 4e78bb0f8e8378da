"""Writes that arrive in pieces (a resumable upload's, over many requests): joined at
their key without a copy through the locker on S3, every other piece dropped, and listed
as unfinished until then."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from service.errors import ObjectExists, ObjectMissing, StorageError
from service.storage import FilesystemStore, ObjectStore, StagedObject, UnfinishedWrite

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
