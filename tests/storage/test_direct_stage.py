"""Staging straight to the final key when the caller knows it (no copy at commit)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from service.storage import FilesystemStore, S3Store

KEY = "org/o/sha256/" + "ab" * 32


def _until() -> datetime:
    return datetime.now(UTC) + timedelta(days=1)


def test_s3_writes_to_a_free_key_and_commit_only_locks(s3_store: S3Store) -> None:
    staged = s3_store.stage(iter([b"evidence"]), expected_key=KEY)
    assert staged.target_key == KEY and staged.version_id is not None
    assert list(s3_store.iter_staged()) == []
    stored = s3_store.commit(staged, KEY, retain_until=_until())
    assert stored.version_id == staged.version_id
    assert s3_store.retention_until(KEY, stored.version_id) is not None
    assert b"".join(s3_store.open(KEY, stored.version_id)) == b"evidence"


def test_s3_discard_removes_the_unlocked_direct_write(s3_store: S3Store) -> None:
    staged = s3_store.stage(iter([b"wrong bytes"]), expected_key=KEY)
    s3_store.discard(staged)
    assert s3_store.head(KEY) is None
    assert list(s3_store.iter_objects()) == []


def test_s3_falls_back_to_staging_when_the_key_is_taken(s3_store: S3Store) -> None:
    first = s3_store.stage(iter([b"evidence"]), expected_key=KEY)
    s3_store.commit(first, KEY, retain_until=_until())
    second = s3_store.stage(iter([b"evidence"]), expected_key=KEY)
    assert second.target_key is None and second.staging_key.startswith("staging/")
    s3_store.discard(second)


def test_filesystem_ignores_the_hint(fs_store: FilesystemStore) -> None:
    staged = fs_store.stage(iter([b"evidence"]), expected_key=KEY)
    assert staged.target_key is None
    stored = fs_store.commit(staged, KEY, retain_until=_until())
    assert b"".join(fs_store.open(KEY, stored.version_id)) == b"evidence"
