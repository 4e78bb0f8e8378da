"""The runbook's disaster-recovery drill (docs/operations.md), performed as written.

PostgreSQL + S3: back up the database (pg_dump) and the signing key, wipe the database
and the data directory, restore both, and start again on the same bucket. Then fsck
finds nothing, every item still downloads with its digests, and the checkpoint a
client saw before the backup is consistent with the restored log's.
"""

from __future__ import annotations

import base64
import hashlib
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import httpx
import psycopg
import pytest
from psycopg import sql
from sqlalchemy.engine import make_url

from service.operations.fsck import fsck
from service.runtime import Runtime
from service.settings import Settings
from tests.databases import admin_url
from tests.harness import serve, serving
from tests.independent.verifier import open_checkpoint, verify_consistency

PHOTO = b"\xff\xd8\xff\xe0" + b"grave-site" * 5000


@pytest.mark.parametrize("backend", ["postgres-s3"], indirect=True)
def test_back_up_wipe_restore_then_fsck_is_clean(
    make_settings: Callable[..., Settings],
    make_runtime: Callable[..., Runtime],
    tmp_path: Path,
) -> None:
    settings = make_settings()
    runtime = make_runtime(**_same_locker(settings))
    with serve(runtime) as locker, locker.client() as client:
        api_key = locker.api_key
        item = client.post("/v1/evidence", files=[("file", ("مقبرة.jpg", PHOTO, "image/jpeg"))])
        assert item.status_code == 201, item.text
        key_text = client.get("/v1/custody/verifier-key").text
        seen = client.get("/log/checkpoint").text  # what a partner saw before the backup
    runtime.close()

    # Back up: the database, and the signing key (docs/operations.md).
    dump, key_backup = tmp_path / "locker.dump", tmp_path / "log-signing-key.backup"
    url = settings.database_url
    assert url is not None
    subprocess.run(["pg_dump", "--format=custom", f"--file={dump}", url], check=True)
    shutil.copy2(settings.effective_signing_key_file, key_backup)

    # The disaster: the database and the data directory are gone.
    name = make_url(url).database
    assert name is not None
    with psycopg.connect(admin_url(), autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    shutil.rmtree(settings.data_dir)

    # Restore both, as the runbook says, and start again on the same bucket.
    subprocess.run(["pg_restore", "--no-owner", f"--dbname={url}", str(dump)], check=True)
    settings.effective_signing_key_file.parent.mkdir(parents=True, mode=0o700)
    shutil.copy2(key_backup, settings.effective_signing_key_file)
    restored = make_runtime(**_same_locker(settings))

    report = fsck(restored)
    assert report.healthy, report.findings
    with (
        serving(restored) as base_url,
        httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {api_key}"}) as client,
    ):
        assert client.get("/v1/custody/verifier-key").text == key_text
        content = client.get(f"/v1/evidence/{item.json()['id']}/content")
        assert content.status_code == 200
        assert hashlib.sha256(content.content).hexdigest() == item.json()["sha256"]
        client.post("/v1/incidents", json={"title": "after the restore"})
        now = client.get("/log/checkpoint").text
        _, first, first_root = open_checkpoint(seen, key_text)
        _, second, second_root = open_checkpoint(now, key_text)
        proof = client.get(
            "/v1/custody/proof/consistency", params={"first": first, "second": second}
        ).json()["hashes"]
    verify_consistency(first, second, first_root, second_root, [base64.b64decode(h) for h in proof])
    assert second > first


def _same_locker(settings: Settings) -> dict[str, object]:
    """Settings that open this locker again: its data directory, database and bucket."""
    return settings.model_dump(
        include={
            "data_dir", "database_url", "s3_endpoint", "s3_access_key", "s3_secret_key",
            "s3_bucket", "s3_secure",
        }
    )  # fmt: skip
