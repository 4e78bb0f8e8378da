"""`locker fsck`: passes on a healthy store, names every tampering, settles crashes."""

from __future__ import annotations

import hashlib
import io
import os
import uuid
from datetime import UTC, datetime
from pathlib import Path

from minio import Minio
from sqlalchemy import text
from sqlmodel import select

from service.db.models import Evidence, OrphanObject, UploadIntent
from service.operations.fsck import fsck
from service.runtime import Runtime, open_runtime
from tests.harness import Locker, analysed

PNG = b"\x89PNG\r\n\x1a\n" + b"fsck" * 4096


def _upload(locker: Locker, content: bytes = PNG) -> dict[str, object]:
    with locker.client() as client:
        response = client.post("/v1/evidence", files=[("file", ("a.png", content, "image/png"))])
        assert response.status_code == 201, response.text
        analysed(client, response.json()["id"])  # its analysis entry lands before we count
        client.get(f"/v1/evidence/{response.json()['id']}/content")
        client.get("/v1/custody/checkpoint")
        return dict(response.json())


def _tamper(runtime: Runtime, table: str, statement: str) -> None:
    """What a malicious administrator would do: switch the guard off, then edit."""
    with runtime.database.session() as session:
        if runtime.database.engine.dialect.name == "sqlite":
            session.execute(text(f"DROP TRIGGER {table}_no_update"))
        else:
            session.execute(text(f"ALTER TABLE {table} DISABLE TRIGGER USER"))
        session.execute(text(statement))


def test_healthy_store_passes(locker: Locker) -> None:
    _upload(locker)
    report = fsck(locker.runtime)
    assert report.findings == []
    assert report.checked["objects re-hashed"] == 1
    # bootstrap's 3, ingest, analysis, content access
    assert report.checked["log entries"] == 6
    assert report.checked["checkpoints"] >= 1


def test_changed_digest_in_database_is_found(locker: Locker) -> None:
    item = _upload(locker)
    _tamper(locker.runtime, "evidence", f"UPDATE evidence SET sha256 = '{'0' * 64}'")
    findings = fsck(locker.runtime).findings
    assert any(f"evidence {item['id']}" in f and "sha256" in f for f in findings), findings


def test_changed_leaf_is_found(locker: Locker) -> None:
    _upload(locker)
    column = '"index"'
    _tamper(
        locker.runtime,
        "custody_entry",
        f"UPDATE custody_entry SET leaf = CAST(REPLACE(leaf, 'ingested', 'inGested') AS BLOB) "
        f"WHERE {column} = 3"
        if locker.runtime.database.engine.dialect.name == "sqlite"
        else f"UPDATE custody_entry SET leaf = convert_to(replace(convert_from(leaf, 'UTF8'), "
        f"'ingested', 'inGested'), 'UTF8') WHERE {column} = 3",
    )
    findings = fsck(locker.runtime).findings
    assert any("tree node level 0 index 3" in f for f in findings), findings
    assert any("checkpoint" in f for f in findings), findings


def test_flipped_byte_in_stored_object_is_found_or_refused(locker: Locker) -> None:
    item = _upload(locker)
    runtime = locker.runtime
    settings = runtime.settings
    key = f"org/{locker.organisation_id}/sha256/{item['sha256']}"
    if settings.s3_endpoint is None:
        path = Path(settings.data_dir) / "store" / "objects" / key
        os.chmod(path, 0o644)
        data = bytearray(path.read_bytes())
        data[100] ^= 0x01
        path.write_bytes(bytes(data))
        findings = fsck(runtime).findings
        assert any(f"evidence {item['id']}" in f and "digest mismatch" in f for f in findings)
        return
    # On S3 the locked version cannot be changed; a new version at the same key must
    # not shadow it, so fsck still reads (and passes on) the original bytes.
    client = Minio(
        settings.s3_endpoint,
        access_key=settings.s3_access_key,
        secret_key=settings.s3_secret_key,
        secure=False,
    )
    forged = bytearray(PNG)
    forged[100] ^= 0x01
    client.put_object(settings.s3_bucket, key, io.BytesIO(bytes(forged)), len(forged))
    assert fsck(runtime).findings == []
    with locker.client() as http:
        assert http.get(f"/v1/evidence/{item['id']}/content").content == PNG


def _crashed_upload(runtime: Runtime, organisation_id: str, content: bytes, *, stored: bool) -> str:
    """An intent as a crash would leave it: pending, maybe with its object stored."""
    with runtime.database.session() as session:
        user_id = session.exec(text("SELECT id FROM user_account LIMIT 1")).scalar_one()
    staged = runtime.store.stage(iter([content]))
    intent = UploadIntent(
        id=str(uuid.uuid4()),
        organisation_id=organisation_id,
        user_id=user_id,
        filename="crash.png",
        metadata_json="{}",
        created_at=datetime.now(UTC),
        sha256=hashlib.sha256(content).hexdigest(),
        sha512=hashlib.sha512(content).hexdigest(),
        size=len(content),
        media_type="image/png",
        staging_key=staged.staging_key,
    )
    if stored:
        key = f"org/{organisation_id}/sha256/{intent.sha256}"
        obj = runtime.store.commit(staged, key, retain_until=runtime.retain_until())
        intent.object_key, intent.object_version = obj.key, obj.version_id
    with runtime.database.session() as session:
        session.add(intent)
    return intent.id


def test_repair_finishes_or_abandons_pending_intents(locker: Locker) -> None:
    runtime = locker.runtime
    finished = _crashed_upload(runtime, locker.organisation_id, PNG + b"1", stored=True)
    abandoned = _crashed_upload(runtime, locker.organisation_id, PNG + b"2", stored=False)
    findings = fsck(runtime).findings
    assert sum("still pending" in f for f in findings) == 2
    report = fsck(runtime, repair=True)
    assert any(finished in r and "finished" in r for r in report.repairs)
    assert any(abandoned in r and "abandoned" in r for r in report.repairs)
    with runtime.database.session() as session:
        statuses = {i.id: i.status for i in session.exec(select(UploadIntent))}
        evidence = session.exec(select(Evidence)).all()
    assert statuses[finished] == "done"
    assert statuses[abandoned] == "abandoned"
    assert [e.sha256 for e in evidence] == [hashlib.sha256(PNG + b"1").hexdigest()]
    assert fsck(runtime).findings == []


def test_orphan_object_is_reported_then_recorded_never_deleted(locker: Locker) -> None:
    runtime = locker.runtime
    staged = runtime.store.stage(iter([b"orphan bytes"]))
    key = f"org/{locker.organisation_id}/sha256/{hashlib.sha256(b'orphan bytes').hexdigest()}"
    runtime.store.commit(staged, key, retain_until=runtime.retain_until())
    assert any(key in f for f in fsck(runtime).findings)
    report = fsck(runtime, repair=True)
    assert any(key in r for r in report.repairs)
    with runtime.database.session() as session:
        assert session.get(OrphanObject, key) is not None
    assert runtime.store.head(key) is not None
    assert fsck(runtime).findings == []


def _left_unlocked(locker: Locker, content: bytes) -> str:
    """Bytes at their content key, not locked: an upload that died before its commit."""
    key = f"org/{locker.organisation_id}/sha256/{hashlib.sha256(content).hexdigest()}"
    store = locker.runtime.store
    if store.enforces_retention:
        staged = store.stage(iter([content]), expected_key=key)
        assert staged.target_key == key  # written in place, still unlocked
        assert store.retention_until(key, staged.version_id) is None
    else:
        path = locker.runtime.settings.data_dir / "store" / "objects" / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        path.chmod(0o644)
    return key


def test_bytes_left_at_their_key_are_locked_when_adopted(locker: Locker) -> None:
    content = PNG + b"left behind"
    key = _left_unlocked(locker, content)
    item = _upload(locker, content)
    store = locker.runtime.store
    assert item["sha256"] == hashlib.sha256(content).hexdigest()
    if store.enforces_retention:
        with locker.runtime.database.session() as session:
            version = session.exec(select(Evidence.object_version)).one()
        until = store.retention_until(key, version)
        assert until is not None and until > datetime.now(UTC)
    else:
        mode = (locker.runtime.settings.data_dir / "store" / "objects" / key).stat().st_mode
        assert mode & 0o222 == 0  # read-only
    assert fsck(locker.runtime).findings == []


def test_a_lock_shorter_than_the_retention_is_found_and_extended(locker: Locker) -> None:
    _upload(locker)
    longer = locker.runtime.settings.model_copy(update={"retention_days": 7300})
    runtime = open_runtime(longer)
    try:
        findings = fsck(runtime).findings
        if not runtime.store.enforces_retention:
            assert findings == []  # a filesystem promises no retention to check
            return
        assert any("is locked only until" in f for f in findings), findings
        repaired = fsck(runtime, repair=True)
        assert any("locked its object until" in r for r in repaired.repairs)
        assert fsck(runtime).findings == []
    finally:
        runtime.close()


def test_a_read_the_store_cannot_serve_is_not_logged_as_an_access(locker: Locker) -> None:
    item = _upload(locker)
    _tamper(
        locker.runtime,
        "evidence",
        f"UPDATE evidence SET object_key = 'org/x/sha256/{'0' * 64}' WHERE id = '{item['id']}'",
    )
    with locker.runtime.database.session() as session:
        before = locker.runtime.log.size(session)
    with locker.client() as client:
        response = client.get(f"/v1/evidence/{item['id']}/content")
    assert response.status_code in (404, 503), response.text
    with locker.runtime.database.session() as session:
        assert locker.runtime.log.size(session) == before


def test_staged_bytes_no_upload_owns_are_found_then_discarded(locker: Locker) -> None:
    store = locker.runtime.store
    staged = store.stage(iter([b"half an upload"]))
    findings = fsck(locker.runtime).findings
    assert any(staged.staging_key in f and "never finished" in f for f in findings)
    report = fsck(locker.runtime, repair=True)
    assert any(staged.staging_key in r for r in report.repairs)
    assert [s.staging_key for s in store.iter_staged()] == []
    assert fsck(locker.runtime).findings == []
