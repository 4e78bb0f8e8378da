"""Objects written at their final key and locked in place: no copy, nothing left over.

On S3 the unlocked version sits at its key from the first byte; these tests check what
that means for a second writer, for `discard` and for writes a crash never finished.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import pytest
from minio import Minio

from service.errors import ObjectExists
from service.storage import FilesystemStore, S3Store, StagedObject
from tests.seaweed import SeaweedServer

KEY = "org/o/evidence/0b6f1e1c-2a7e-4c55-9d3b-7f1f1b0e9a11"


def _until() -> datetime:
    return datetime.now(UTC) + timedelta(days=1)


@pytest.mark.s3
def test_s3_writes_at_the_key_and_commit_only_locks(s3_store: S3Store) -> None:
    staged = s3_store.stage(iter([b"evidence"]), key=KEY)
    assert (staged.staging_key, staged.target_key) == (KEY, KEY) and staged.version_id
    assert list(s3_store.iter_staged()) == []
    assert s3_store.retention_until(KEY, staged.version_id) is None  # not yet evidence
    stored = s3_store.commit(staged, retain_until=_until())
    assert stored.version_id == staged.version_id
    assert s3_store.retention_until(KEY, stored.version_id) is not None
    assert b"".join(s3_store.open(KEY, stored.version_id)) == b"evidence"


@pytest.mark.s3
def test_s3_discard_removes_the_unlocked_write(s3_store: S3Store) -> None:
    staged = s3_store.stage(iter([b"wrong bytes"]), key=KEY)
    s3_store.discard(staged)
    assert s3_store.head(KEY) is None
    assert list(s3_store.iter_objects()) == []


@pytest.mark.s3
def test_s3_a_later_version_at_the_key_is_never_the_one_locked(
    s3_store: S3Store, s3_server: SeaweedServer
) -> None:
    """Two writers at one key (a forged or raced write): the first version is the only
    one that can become the object; the other's commit is refused."""
    first = s3_store.stage(iter([b"first"]), key=KEY)
    later = s3_server.client().put_object(s3_store.bucket, KEY, io.BytesIO(b"later"), 5)
    intruder = StagedObject(staging_key=KEY, size=5, target_key=KEY, version_id=later.version_id)
    with pytest.raises(ObjectExists):
        s3_store.commit(intruder, retain_until=_until())
    assert s3_store.retention_until(KEY, later.version_id) is None
    stored = s3_store.commit(first, retain_until=_until())
    assert (
        b"".join(s3_store.open(KEY, None))
        == b"first"
        == b"".join(s3_store.open(KEY, stored.version_id))
    )


@pytest.mark.s3
def test_s3_discard_by_key_keeps_a_locked_version(s3_store: S3Store) -> None:
    """An abandoned upload known only by its key: unlocked bytes go, evidence stays."""
    stored = s3_store.commit(s3_store.stage([b"evidence"], key=KEY), retain_until=_until())
    s3_store.discard(StagedObject(staging_key=KEY, size=0, target_key=KEY))
    assert s3_store.head(KEY) == stored


@pytest.mark.s3
def test_s3_unfinished_writes_are_listed_and_aborted(
    s3_store: S3Store, s3_server: SeaweedServer
) -> None:
    """A multipart upload a crash never completed: invisible as an object, listed here
    with when its last part arrived, and dropped by `abort` or by discarding its key."""
    client: Minio = s3_server.client()
    before = datetime.now(UTC) - timedelta(seconds=2)
    crashed = client._create_multipart_upload(s3_store.bucket, KEY, {})
    client._upload_part(s3_store.bucket, KEY, b"x" * (5 * 1024 * 1024), None, crashed, 1)
    other_key = KEY[:-1] + "2"
    other = client._create_multipart_upload(s3_store.bucket, other_key, {})
    listed = sorted(s3_store.iter_unfinished(), key=lambda u: u.key)
    assert [(u.key, u.upload_id) for u in listed] == [(KEY, crashed), (other_key, other)]
    assert all(u.active_at >= before for u in listed)
    assert list(s3_store.iter_objects()) == []
    s3_store.abort(listed[1])
    s3_store.abort(listed[1])  # aborting twice is not an error
    s3_store.discard(StagedObject(staging_key=KEY, size=0, target_key=KEY))
    assert list(s3_store.iter_unfinished()) == []


def test_filesystem_links_the_file_written_for_the_key(fs_store: FilesystemStore) -> None:
    staged = fs_store.stage(iter([b"evidence"]), key=KEY)
    assert staged.target_key == KEY and staged.staging_key.startswith("staging/")
    assert fs_store.head(KEY) is None
    stored = fs_store.commit(staged, retain_until=_until())
    assert b"".join(fs_store.open(KEY, stored.version_id)) == b"evidence"
    assert list(fs_store.iter_staged()) == []
    assert list(fs_store.iter_unfinished()) == []


def test_filesystem_second_writer_for_a_key_loses_at_commit(fs_store: FilesystemStore) -> None:
    first = fs_store.stage([b"first"], key=KEY)
    second = fs_store.stage([b"second"], key=KEY)
    fs_store.commit(first, retain_until=_until())
    with pytest.raises(ObjectExists):
        fs_store.commit(second, retain_until=_until())
    assert b"".join(fs_store.open(KEY, None)) == b"first"
