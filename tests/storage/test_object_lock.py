"""Object Lock conformance on the real S3 server (SeaweedFS), checked, not trusted.

SeaweedFS has had releases that accepted retention yet allowed deletes (and 4.48
ignored retention sent with CopyObject), so every guarantee the locker relies on is
exercised here against the server itself, through raw S3 calls as an attacker
holding the bucket's credentials would make them.
"""

from __future__ import annotations

import io
import os
from datetime import UTC, datetime, timedelta

import pytest
from minio import Minio
from minio.commonconfig import COMPLIANCE, ENABLED
from minio.error import S3Error
from minio.retention import Retention
from minio.versioningconfig import VersioningConfig

from service.errors import LockNotEnforced, StorageError
from service.storage import S3Store, StoredObject
from tests.seaweed import SeaweedServer

pytestmark = pytest.mark.s3

KEY = "org/test/sha256/ab12"
EVIDENCE = b"the original evidence"


@pytest.fixture
def client(s3_server: SeaweedServer) -> Minio:
    return s3_server.client()


@pytest.fixture
def retain_until() -> datetime:
    return datetime.now(UTC) + timedelta(days=2, microseconds=1)


@pytest.fixture
def committed(s3_store: S3Store, retain_until: datetime) -> StoredObject:
    stored = s3_store.commit(s3_store.stage([EVIDENCE], key=KEY), retain_until=retain_until)
    assert stored.version_id
    return stored


def _read(store: S3Store, version_id: str | None) -> bytes:
    return b"".join(store.open(KEY, version_id))


def _assert_untouched(store: S3Store, committed: StoredObject) -> None:
    assert store.head(KEY) == committed
    assert _read(store, committed.version_id) == EVIDENCE
    assert _read(store, None) == EVIDENCE


def test_commit_locks_in_compliance_mode_until_the_date(
    s3_store: S3Store, client: Minio, committed: StoredObject, retain_until: datetime
) -> None:
    retention = client.get_object_retention(s3_store.bucket, KEY, version_id=committed.version_id)
    assert retention is not None and retention.mode == COMPLIANCE
    # Stored to the second, rounded up so the lock never ends before the date asked for.
    assert retain_until <= retention.retain_until_date <= retain_until + timedelta(seconds=1)
    assert s3_store.retention_until(KEY, committed.version_id) == retention.retain_until_date
    assert s3_store.retention_until(KEY, None) == retention.retain_until_date


def test_a_multipart_object_is_locked_in_place(
    s3_store: S3Store, client: Minio, retain_until: datetime
) -> None:
    """Two 8 MiB parts and a tail: the version written is the one locked, nothing copied."""
    data = os.urandom(17 * 1024 * 1024 + 5)
    staged = s3_store.stage([data], key=KEY)
    stored = s3_store.commit(staged, retain_until=retain_until)
    assert stored.version_id == staged.version_id
    versions = list(client.list_objects(s3_store.bucket, prefix=KEY, include_version=True))
    assert [v.version_id for v in versions] == [stored.version_id]
    assert b"".join(s3_store.open(KEY, stored.version_id)) == data
    retention_date = s3_store.retention_until(KEY, stored.version_id)
    assert retention_date is not None and retention_date >= retain_until
    with pytest.raises(S3Error):
        client.remove_object(s3_store.bucket, KEY, version_id=stored.version_id)


def test_deleting_the_locked_version_is_refused(
    s3_store: S3Store, client: Minio, committed: StoredObject
) -> None:
    with pytest.raises(S3Error) as refused:
        client.remove_object(s3_store.bucket, KEY, version_id=committed.version_id)
    assert refused.value.code == "AccessDenied"
    _assert_untouched(s3_store, committed)


def test_shortening_retention_is_refused(
    s3_store: S3Store, client: Minio, committed: StoredObject
) -> None:
    before = s3_store.retention_until(KEY, committed.version_id)
    shorter = Retention(COMPLIANCE, datetime.now(UTC) + timedelta(seconds=5))
    with pytest.raises(S3Error):
        client.set_object_retention(s3_store.bucket, KEY, shorter, version_id=committed.version_id)
    assert s3_store.retention_until(KEY, committed.version_id) == before


def test_governance_bypass_header_does_not_unlock_compliance(
    s3_store: S3Store, client: Minio, committed: StoredObject
) -> None:
    with pytest.raises(S3Error):
        client._execute(
            "DELETE",
            s3_store.bucket,
            KEY,
            headers={"x-amz-bypass-governance-retention": "true"},
            query_params={"versionId": str(committed.version_id)},
        )
    _assert_untouched(s3_store, committed)


def test_plain_delete_only_adds_a_delete_marker(
    s3_store: S3Store, client: Minio, committed: StoredObject
) -> None:
    client.remove_object(s3_store.bucket, KEY)
    with pytest.raises(S3Error):
        client.stat_object(s3_store.bucket, KEY)  # the latest is now a delete marker
    _assert_untouched(s3_store, committed)
    assert list(s3_store.iter_objects()) == [committed]


def test_a_newer_version_never_shadows_the_original(
    s3_store: S3Store, client: Minio, committed: StoredObject
) -> None:
    forged = b"forged replacement"
    client.put_object(s3_store.bucket, KEY, io.BytesIO(forged), len(forged))
    assert client.get_object(s3_store.bucket, KEY).read() == forged  # the server's "latest"
    _assert_untouched(s3_store, committed)
    assert list(s3_store.iter_objects()) == [committed]


def test_verify_lock_passes_and_reuses_one_probe(s3_store: S3Store, client: Minio) -> None:
    s3_store.verify_lock()
    s3_store.verify_lock()
    probes = list(client.list_objects(s3_store.bucket, prefix="probe/", include_version=True))
    assert [p.object_name for p in probes] == ["probe/object-lock"]
    assert list(s3_store.iter_objects()) == []


def test_verify_lock_extends_an_expiring_probe(s3_store: S3Store, client: Minio) -> None:
    soon = datetime.now(UTC) + timedelta(seconds=30)
    client.put_object(
        s3_store.bucket,
        "probe/object-lock",
        io.BytesIO(b"p"),
        1,
        retention=Retention(COMPLIANCE, soon),
    )
    s3_store.verify_lock()
    retention = client.get_object_retention(s3_store.bucket, "probe/object-lock")
    assert retention is not None
    assert retention.retain_until_date > datetime.now(UTC) + timedelta(hours=12)


def _store_on(server: SeaweedServer, bucket: str, **overrides: str) -> S3Store:
    settings = {"access_key": server.access_key, "secret_key": server.secret_key} | overrides
    return S3Store(endpoint=server.endpoint, bucket=bucket, secure=False, **settings)


def test_ensure_bucket_refuses_a_bucket_without_object_lock(
    s3_server: SeaweedServer, client: Minio
) -> None:
    client.make_bucket("plain-versioned")
    client.set_bucket_versioning("plain-versioned", VersioningConfig(ENABLED))
    store = _store_on(s3_server, "plain-versioned")
    with pytest.raises(StorageError, match="exists without Object Lock"):
        store.ensure_bucket()
    with pytest.raises(StorageError):
        store.verify_lock()


def test_ensure_bucket_is_idempotent(s3_store: S3Store, committed: StoredObject) -> None:
    s3_store.ensure_bucket()
    assert s3_store.head(KEY) == committed


def test_provider_errors_do_not_leak_credentials(s3_server: SeaweedServer) -> None:
    secret = "wrong-secret-must-not-appear"
    store = _store_on(s3_server, "any-bucket", secret_key=secret)
    with pytest.raises(StorageError) as failure:
        store.ensure_bucket()
    assert secret not in str(failure.value) and s3_server.access_key not in str(failure.value)
    assert failure.value.__cause__ is None and failure.value.__suppress_context__


def test_verify_lock_reports_a_server_that_deletes_locked_versions(
    s3_store: S3Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Simulates the SeaweedFS releases that accepted retention yet honoured deletes."""
    s3_store.verify_lock()
    deleted: list[str] = []
    monkeypatch.setattr(s3_store._client, "remove_object", lambda *_, **__: deleted.append("x"))
    original = s3_store._original
    monkeypatch.setattr(s3_store, "_original", lambda key: None if deleted else original(key))
    with pytest.raises(LockNotEnforced, match="does not enforce Object Lock"):
        s3_store.verify_lock()
    assert deleted
