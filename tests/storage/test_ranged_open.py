"""`ObjectStore.open_range`, the part of the store contract resumed downloads use."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import pytest

from service.errors import ObjectMissing
from service.storage import ObjectStore

RETAIN_UNTIL = datetime.now(UTC) + timedelta(days=1)
KEY = "org/test/sha256/range"
# Past one 1 MiB read chunk, so a range crosses chunk boundaries.
DATA = os.urandom(3 * 1024 * 1024 + 17)


@pytest.mark.parametrize(
    ("start", "length"),
    [
        (0, 1),
        (0, len(DATA)),
        (1, 1024 * 1024),
        (1024 * 1024 - 1, 2),
        (len(DATA) - 1, 1),
        (12_345, len(DATA) - 12_345),
    ],
    ids=["first-byte", "whole", "one-chunk-shifted", "across-chunks", "last-byte", "tail"],
)
def test_a_range_reads_exactly_those_bytes(
    object_store: ObjectStore, start: int, length: int
) -> None:
    stored = object_store.commit(object_store.stage([DATA], key=KEY), retain_until=RETAIN_UNTIL)
    chunks = list(object_store.open_range(KEY, stored.version_id, start=start, length=length))
    assert b"".join(chunks) == DATA[start : start + length]
    assert all(len(chunk) <= 1024 * 1024 for chunk in chunks)


def test_a_range_of_a_missing_object_is_object_missing(object_store: ObjectStore) -> None:
    with pytest.raises(ObjectMissing):
        object_store.open_range("org/test/sha256/absent", None, start=0, length=1)


@pytest.mark.parametrize(("start", "length"), [(-1, 1), (0, 0)])
def test_an_empty_or_negative_span_is_refused(
    object_store: ObjectStore, start: int, length: int
) -> None:
    stored = object_store.commit(object_store.stage([DATA], key=KEY), retain_until=RETAIN_UNTIL)
    with pytest.raises(ValueError, match="byte span"):
        object_store.open_range(KEY, stored.version_id, start=start, length=length)


def test_a_range_closed_early_releases_its_source(object_store: ObjectStore) -> None:
    stored = object_store.commit(object_store.stage([DATA], key=KEY), retain_until=RETAIN_UNTIL)
    chunks = object_store.open_range(KEY, stored.version_id, start=5, length=len(DATA) - 5)
    assert next(chunks) == DATA[5 : 5 + 1024 * 1024]
    chunks.close()
    assert next(chunks, None) is None
