"""RFC 3161 timestamps of checkpoints through the running locker and its test TSA."""

from __future__ import annotations

import base64
import shutil
import subprocess
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from service.client.verifier import verify_path
from service.core import bundle
from service.errors import ConfigurationError
from service.operations.fsck import fsck
from service.settings import load_settings
from tests.api.test_exports import PHOTO, _wait_done
from tests.cli.test_fsck import _tamper
from tests.harness import Locker
from tests.tsa import TsaServer, run_tsa


@pytest.fixture
def tsa() -> Iterator[TsaServer]:
    with run_tsa() as server:
        yield server


def _stamped_locker(make_locker: Callable[..., Locker], tsa: TsaServer, tmp_path: Path) -> Locker:
    ca = tmp_path / "tsa-ca.pem"
    ca.write_bytes(tsa.authority.ca_pem())
    return make_locker(tsa_url=tsa.url, tsa_ca_file=ca, tsa_interval=0.2, tsa_timeout=2)


def _timestamps(client: httpx.Client, size: int) -> list[dict[str, str]]:
    response = client.get("/v1/custody/checkpoint/timestamps", params={"tree_size": size})
    assert response.status_code == 200, response.text
    return list(response.json())


def _wait_timestamped(client: httpx.Client) -> tuple[str, dict[str, str]]:
    """The latest checkpoint and its token, which the server's background loop fetches."""
    deadline = time.monotonic() + 20
    while True:
        note = client.get("/v1/custody/checkpoint").text
        if found := _timestamps(client, int(note.split("\n")[1])):
            return note, found[0]
        assert time.monotonic() < deadline, "the checkpoint was never timestamped"
        time.sleep(0.1)


def test_checkpoints_are_timestamped_and_bundles_carry_the_token(
    make_locker: Callable[..., Locker], tsa: TsaServer, tmp_path: Path
) -> None:
    locker = _stamped_locker(make_locker, tsa, tmp_path)
    with locker.client() as client:
        item = client.post("/v1/evidence", files=[("file", ("a.jpg", PHOTO, "x/y"))]).json()
        note, token = _wait_timestamped(client)
        export_id = client.post("/v1/exports", json={"evidence_ids": [item["id"]]}).json()["id"]
        assert _wait_done(client, export_id)["status"] == "done"
        content = client.get(f"/v1/exports/{export_id}/content").content
        key = client.get("/v1/custody/verifier-key").text
    response = base64.b64decode(token["response"])
    assert token["authority"] == "CN=Locker Test TSA,O=Locker Test TSA"
    _openssl_verifies(tmp_path, response, note.encode(), tsa.authority.ca_pem())
    path = tmp_path / "bundle.zip"
    path.write_bytes(content)
    with zipfile.ZipFile(path) as archive:
        names = {n.split("/", 1)[1]: n for n in archive.namelist()}
        bundled_note = archive.read(names[bundle.CHECKPOINT_PATH])
        bundled_token = archive.read(names[bundle.TIMESTAMP_PATH])
    verdict = verify_path(path, key, [tsa.authority.ca])
    assert verdict.ok, verdict.findings
    assert verdict.timestamp is not None and verdict.tsa_source == "given"
    assert verdict.checkpoint is not None
    with locker.client() as client:
        stored = _timestamps(client, verdict.checkpoint.size)
    assert len(stored) == 1  # one token per checkpoint, however many asked at once
    assert base64.b64decode(stored[0]["response"]) == bundled_token
    assert verdict.timestamp.time.isoformat() == stored[0]["attested_at"].replace("Z", "+00:00")
    _openssl_verifies(tmp_path, bundled_token, bundled_note, tsa.authority.ca_pem())
    for statement in (
        "UPDATE checkpoint_timestamp SET authority = 'forged'",
        "DELETE FROM checkpoint_timestamp",
    ):
        with pytest.raises(DBAPIError, match="append-only"), locker.runtime.database.session() as s:
            s.execute(text(statement))


def _openssl_verifies(tmp_path: Path, token: bytes, note: bytes, ca: bytes) -> None:
    """`openssl ts -verify`, as docs/verification.md prints it, accepts the token."""
    if shutil.which("openssl") is None:
        return
    for name, data in (("checkpoint.tsr", token), ("checkpoint.txt", note), ("ca.pem", ca)):
        (tmp_path / name).write_bytes(data)
    command = "openssl ts -verify -in checkpoint.tsr -data checkpoint.txt -CAfile ca.pem"
    result = subprocess.run(command.split(), cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0 and "Verification: OK" in result.stdout, result.stderr


def test_a_failing_tsa_never_fails_uploads_or_exports(
    make_locker: Callable[..., Locker], tsa: TsaServer, tmp_path: Path
) -> None:
    tsa.down = True
    locker = _stamped_locker(make_locker, tsa, tmp_path)
    with locker.client() as client:
        for n in range(3):
            upload = client.post(
                "/v1/evidence", files=[("file", (f"{n}.jpg", PHOTO + bytes([n]), "x/y"))]
            )
            assert upload.status_code == 201, upload.text
        export_id = client.post("/v1/exports", json={"evidence_ids": [upload.json()["id"]]}).json()[
            "id"
        ]
        assert _wait_done(client, export_id)["status"] == "done"
        content = client.get(f"/v1/exports/{export_id}/content").content
        size = int(client.get("/v1/custody/checkpoint").text.split("\n")[1])
        time.sleep(0.5)  # the background loop keeps trying
        assert tsa.authority.requests == 0 and _timestamps(client, size) == []
        tsa.down = False  # once the TSA is back, the loop timestamps the latest checkpoint
        _wait_timestamped(client)
    path = tmp_path / "bundle.zip"
    path.write_bytes(content)
    verdict = verify_path(path, None)
    assert verdict.ok and verdict.timestamp is None


def test_a_slow_tsa_does_not_hold_up_uploads(
    make_locker: Callable[..., Locker], tsa: TsaServer, tmp_path: Path
) -> None:
    ca = tmp_path / "tsa-ca.pem"
    ca.write_bytes(tsa.authority.ca_pem())
    # The TSA holds every request, from the locker's start until the upload has answered,
    # and the locker would wait 120 s for it: an upload that waited on a timestamp would
    # take that long, or hang.
    tsa.gate.clear()
    try:
        locker = make_locker(tsa_url=tsa.url, tsa_ca_file=ca, tsa_interval=0.2, tsa_timeout=120)
        with locker.client() as client:
            started = time.monotonic()
            upload = client.post("/v1/evidence", files=[("file", ("a.jpg", PHOTO, "x/y"))])
            assert upload.status_code == 201, upload.text
            assert time.monotonic() - started < 60
            assert tsa.authority.requests == 0  # answered while the TSA had answered nothing
            deadline = time.monotonic() + 20
            while tsa.hits == 0:  # the loop did ask, and is still waiting for the answer
                assert time.monotonic() < deadline, "the locker never asked the TSA"
                time.sleep(0.05)
            assert client.get("/v1/custody/checkpoint").status_code == 200
            tsa.gate.set()
            _wait_timestamped(client)
    finally:
        tsa.gate.set()


def test_a_tsa_needs_its_ca_certificate(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="LOCKER_TSA_CA_FILE is required"):
        load_settings(data_dir=tmp_path, tsa_url="https://tsa.example/tsr")


def test_fsck_checks_every_stored_token(
    make_locker: Callable[..., Locker], tsa: TsaServer, tmp_path: Path
) -> None:
    locker = _stamped_locker(make_locker, tsa, tmp_path)
    with locker.client() as client:
        client.post("/v1/evidence", files=[("file", ("a.jpg", PHOTO, "x/y"))]).raise_for_status()
        _wait_timestamped(client)
    healthy = fsck(locker.runtime)
    assert healthy.checked["checkpoint timestamps"] >= 1
    assert not [f for f in healthy.findings if "timestamp" in f], healthy.findings
    _tamper(locker.runtime, "checkpoint_timestamp", "UPDATE checkpoint_timestamp SET sha256 = 'x'")
    findings = fsck(locker.runtime).findings
    assert any("timestamp of checkpoint" in f and "differs" in f for f in findings), findings
