"""`locker fsck`: passes on a healthy store, names every tampering, settles crashes."""

from __future__ import annotations

import hashlib
import io
import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from minio import Minio
from sqlalchemy import text
from sqlmodel import select

from service.db.models import Evidence, OrphanObject, UploadIntent
from service.evidence.recording import upload_object_key
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
    key = _object_key(runtime, str(item["id"]))
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


def _object_key(runtime: Runtime, evidence_id: str) -> str:
    with runtime.database.session() as session:
        evidence = session.get(Evidence, evidence_id)
        assert evidence is not None
        return evidence.object_key


@contextmanager
def _impatient(locker: Locker, seconds: float = 1) -> Iterator[Runtime]:
    """The locker as fsck sees it when uploads go silent after a second or so, not minutes."""
    settings = locker.runtime.settings.model_copy(update={"upload_idle_timeout_seconds": seconds})
    runtime = open_runtime(settings)
    try:
        yield runtime
    finally:
        runtime.close()


_LONG_AGO = datetime.now(UTC) - timedelta(hours=1)


def _crashed_upload(
    runtime: Runtime, organisation_id: str, content: bytes, *, stage: str, at: datetime = _LONG_AGO
) -> str:
    """An intent as a crash would leave it, pending and silent since `at`: its bytes
    not written (`stage` "none"), written at its key ("written"), or locked ("locked")."""
    with runtime.database.session() as session:
        user_id = session.exec(text("SELECT id FROM user_account LIMIT 1")).scalar_one()
    intent_id = str(uuid.uuid4())
    key = upload_object_key(organisation_id, intent_id)
    intent = UploadIntent(
        id=intent_id,
        organisation_id=organisation_id,
        user_id=user_id,
        filename="crash.png",
        metadata_json="{}",
        created_at=at,
        heartbeat_at=at,
        sha256=hashlib.sha256(content).hexdigest(),
        sha512=hashlib.sha512(content).hexdigest(),
        size=len(content),
        media_type="image/png",
        staging_key=key,
    )
    if stage != "none":
        staged = runtime.store.stage(iter([content]), key=key)
        intent.staging_key = staged.staging_key
        if stage == "locked":
            obj = runtime.store.commit(staged, retain_until=runtime.retain_until())
            intent.object_key, intent.object_version = obj.key, obj.version_id
    with runtime.database.session() as session:
        session.add(intent)
    return intent_id


def _quiet() -> datetime:
    """Silent long enough for an impatient fsck, not for the running locker's own
    reconciliation (its idle timeout is minutes): the test's fsck settles these."""
    return _now() - timedelta(seconds=30)


def test_repair_finishes_or_abandons_pending_intents(locker: Locker) -> None:
    org = locker.organisation_id
    with _impatient(locker) as runtime:
        _repair_finishes_or_abandons(runtime, org)


def _repair_finishes_or_abandons(runtime: Runtime, org: str) -> None:
    locked = _crashed_upload(runtime, org, PNG + b"1", stage="locked", at=_quiet())
    written = _crashed_upload(runtime, org, PNG + b"2", stage="written", at=_quiet())
    lost = _crashed_upload(runtime, org, PNG + b"3", stage="none", at=_quiet())
    findings = fsck(runtime).findings
    assert sum("still pending" in f for f in findings) == 3, findings
    report = fsck(runtime, repair=True)
    with runtime.database.session() as session:
        statuses = {i.id: i.status for i in session.exec(select(UploadIntent))}
        recorded = {e.sha256 for e in session.exec(select(Evidence))}
    # Written whole and digested, the crash came before the lock: on S3 the bytes are at
    # their key and are locked, then recorded; a filesystem had not linked them yet.
    written_finished = runtime.store.enforces_retention
    assert statuses == {
        locked: "done",
        written: "done" if written_finished else "abandoned",
        lost: "abandoned",
    }, report.repairs
    assert recorded == {
        hashlib.sha256(PNG + suffix).hexdigest()
        for suffix in ([b"1", b"2"] if written_finished else [b"1"])
    }
    for intent_id in (locked, written) if written_finished else (locked,):
        key = upload_object_key(org, intent_id)
        until = runtime.store.retention_until(key, None) if written_finished else None
        assert until is None or until > datetime.now(UTC) + timedelta(days=1)
        assert runtime.store.head(key) is not None
    assert fsck(runtime).findings == []
    assert list(runtime.store.iter_staged()) == []


def test_a_crashed_upload_of_bytes_already_held_becomes_a_resubmission(locker: Locker) -> None:
    """The crash came after the digests were noted, before the duplicate was removed:
    settling does what the request would have done, never locking a second copy."""
    item = _upload(locker)
    with _impatient(locker) as runtime:
        org = locker.organisation_id
        intent_id = _crashed_upload(runtime, org, PNG, stage="written", at=_quiet())
        report = fsck(runtime, repair=True)
        assert f"finished upload intent {intent_id} (a re-submission)" in report.repairs or (
            not runtime.store.enforces_retention  # a filesystem had not linked the bytes yet
        ), report.repairs
        with runtime.database.session() as session:
            assert [e.id for e in session.exec(select(Evidence))] == [item["id"]]
            intent = session.get(UploadIntent, intent_id)
            assert intent is not None and intent.status != "pending"
        assert runtime.store.head(upload_object_key(org, intent_id)) is None
        assert fsck(runtime).findings == []


def test_an_upload_in_flight_is_left_alone(locker: Locker) -> None:
    """fsck beside a running locker: an intent still beating is no crash's leftover."""
    runtime = locker.runtime
    live = _crashed_upload(runtime, locker.organisation_id, PNG, stage="written", at=_now())
    report = fsck(runtime, repair=True)
    assert report.findings == [] and report.repairs == []
    assert report.checked["uploads in flight"] == 1
    with runtime.database.session() as session:
        intent = session.get(UploadIntent, live)
        assert intent is not None and intent.status == "pending"
    assert runtime.store.head(upload_object_key(locker.organisation_id, live)) is not None or (
        not runtime.store.enforces_retention
    )


def _now() -> datetime:
    return datetime.now(UTC)


def test_orphan_object_is_reported_then_recorded_never_deleted(locker: Locker) -> None:
    runtime = locker.runtime
    key = f"org/{locker.organisation_id}/sha256/{hashlib.sha256(b'orphan bytes').hexdigest()}"
    staged = runtime.store.stage(iter([b"orphan bytes"]), key=key)
    runtime.store.commit(staged, retain_until=runtime.retain_until())
    assert any(key in f for f in fsck(runtime).findings)
    report = fsck(runtime, repair=True)
    assert any(key in r for r in report.repairs)
    with runtime.database.session() as session:
        assert session.get(OrphanObject, key) is not None
    assert runtime.store.head(key) is not None
    assert fsck(runtime).findings == []


def test_unlocked_bytes_of_an_abandoned_upload_are_listed_then_removed(locker: Locker) -> None:
    """An upload abandoned while its store was down: its bytes stay at its key, unlocked,
    until fsck removes them. A filesystem cannot tell them from evidence: kept, recorded."""
    runtime, store = locker.runtime, locker.runtime.store
    stage = "written" if store.enforces_retention else "locked"
    intent_id = _crashed_upload(runtime, locker.organisation_id, PNG, stage=stage)
    key = upload_object_key(locker.organisation_id, intent_id)
    with runtime.database.session() as session:
        intent = session.get(UploadIntent, intent_id)
        assert intent is not None
        intent.status, intent.outcome = "abandoned", "the store was down"
        intent.object_key = intent.object_version = None
        session.add(intent)
    findings = fsck(runtime).findings
    assert any(key in f for f in findings), findings
    report = fsck(runtime, repair=True)
    assert any(key in r for r in report.repairs), report.repairs
    if store.enforces_retention:
        assert any(f"unlocked bytes of upload intent {intent_id}" in f for f in findings)
        assert store.head(key) is None
    else:
        assert store.head(key) is not None
    assert fsck(runtime).findings == []


def test_unfinished_writes_are_told_live_from_crashed(locker: Locker) -> None:
    store = locker.runtime.store
    if not store.enforces_retention:
        assert list(store.iter_unfinished()) == []  # a filesystem's are staging files
        return
    settings = locker.runtime.settings
    assert settings.s3_endpoint is not None
    client = Minio(
        settings.s3_endpoint,
        access_key=settings.s3_access_key,
        secret_key=settings.s3_secret_key,
        secure=False,
    )
    key = upload_object_key(locker.organisation_id, str(uuid.uuid4()))
    # Long enough for a whole fsck on busy CPUs to see the write still live.
    with _impatient(locker, seconds=4) as runtime:
        upload_id = client._create_multipart_upload(settings.s3_bucket, key, {})
        report = fsck(runtime)
        assert report.findings == [] and report.checked["unfinished writes in progress"] == 1
        time.sleep(4.5)  # silent for longer than the idle timeout: a crash's
        findings = fsck(runtime).findings
        assert any(key in f and upload_id in f and "--repair aborts" in f for f in findings)
        repaired = fsck(runtime, repair=True)
        assert any(key in r and "aborted" in r for r in repaired.repairs), repaired.repairs
        assert list(runtime.store.iter_unfinished()) == []
        assert fsck(runtime).findings == []


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
    # Long enough for a whole fsck on busy CPUs to see the bytes still being written.
    with _impatient(locker, seconds=4) as runtime:
        staged = store.stage(iter([b"half an upload"]))
        report = fsck(runtime)  # just written: a request may still own them
        assert report.findings == [] and report.checked["staging objects being written"] == 1
        time.sleep(4.5)
        findings = fsck(runtime).findings
        assert any(staged.staging_key in f and "never finished" in f for f in findings)
        report = fsck(runtime, repair=True)
        assert any(staged.staging_key in r for r in report.repairs)
        assert [s.staging_key for s in store.iter_staged()] == []
        assert fsck(runtime).findings == []
