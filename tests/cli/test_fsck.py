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
from service.fsck import fsck
from service.runtime import Runtime
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
        if runtime.database.is_sqlite:
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
        if locker.runtime.database.is_sqlite
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
