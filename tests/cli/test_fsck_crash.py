"""A server killed with SIGKILL in the middle of uploads to S3: `locker fsck` first
counts them as in flight, then, once they have been silent for the idle timeout, finds
everything the form upload left (a pending intent, an unfinished multipart upload no
object listing shows) and `--repair` settles it, while nothing else is touched. The
resumable upload's write is its client's to go on with until the upload expires; then
`--repair` removes it too."""

from __future__ import annotations

import base64
import json
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, suppress
from pathlib import Path

import httpx
import psycopg
import pytest

from service.storage import S3Store
from tests.databases import PostgresTemplate
from tests.processes import LOCKER, ROOT, bootstrap_key, locker_environment, serving_process
from tests.seaweed import SeaweedServer

pytestmark = pytest.mark.s3

_MIB = 1024 * 1024
# Long enough that the first fsck, a fresh process, starts well within it.
_IDLE_SECONDS = 10


def _fsck(env: dict[str, str], *flags: str) -> tuple[int, dict[str, object]]:
    done = subprocess.run(
        [*LOCKER, "fsck", "--json", *flags], env=env, cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode in (0, 1), done.stderr[-2000:]
    return done.returncode, json.loads(done.stdout)


def _stalled_body(released: threading.Event) -> Iterator[bytes]:
    """17 MiB (two 8 MiB parts reach S3), then nothing until the test lets go."""
    for _ in range(17):
        yield b"\x00" * _MIB
    released.wait(timeout=60)


def _form_upload(url: str, key: str, released: threading.Event) -> None:
    boundary = "crash-boundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="v.mp4"\r\n\r\n'
    ).encode()

    def body() -> Iterator[bytes]:
        yield head
        yield from _stalled_body(released)

    headers = {
        "Authorization": f"Bearer {key}",
        "Content-Type": f"multipart/form-data; boundary={boundary}",
    }
    with suppress(httpx.TransportError):  # the server was killed: never acknowledged
        httpx.post(f"{url}/v1/evidence", content=body(), headers=headers, timeout=60)


_tus_locations: list[str] = []


def _tus_upload(url: str, key: str, released: threading.Event) -> None:
    headers = {"Authorization": f"Bearer {key}", "Tus-Resumable": "1.0.0"}
    name = base64.b64encode(b"v2.mp4").decode()
    created = httpx.post(
        f"{url}/v1/uploads",
        headers=headers | {"Upload-Length": str(64 * _MIB), "Upload-Metadata": f"filename {name}"},
    )
    assert created.status_code == 201, created.text
    _tus_locations.append(created.headers["Location"])
    patch = headers | {
        "Content-Type": "application/offset+octet-stream",
        "Upload-Offset": "0",
    }
    with suppress(httpx.TransportError):
        httpx.patch(
            f"{url}{created.headers['Location'].removeprefix(url)}",
            content=_stalled_body(released),
            headers=patch,
            timeout=60,
        )


def test_a_server_killed_mid_upload_leaves_nothing_fsck_cannot_settle(
    postgres_template: PostgresTemplate, s3_server: SeaweedServer, tmp_path: Path
) -> None:
    bucket = f"crash-{uuid.uuid4().hex[:12]}"
    released = threading.Event()
    with ExitStack() as stack:
        env = locker_environment(
            LOCKER_DATA_DIR=str(tmp_path / "data"),
            LOCKER_DATABASE_URL=stack.enter_context(postgres_template.fresh()),
            LOCKER_S3_ENDPOINT=s3_server.endpoint,
            LOCKER_S3_ACCESS_KEY=s3_server.access_key,
            LOCKER_S3_SECRET_KEY=s3_server.secret_key,
            LOCKER_S3_BUCKET=bucket,
            LOCKER_S3_SECURE="false",
            LOCKER_UPLOAD_IDLE_TIMEOUT_SECONDS=str(_IDLE_SECONDS),
        )
        key = bootstrap_key(env, "Crash Site")
        url, server = stack.enter_context(serving_process(env, tmp_path / "server.log"))
        store = S3Store(
            endpoint=s3_server.endpoint,
            access_key=s3_server.access_key,
            secret_key=s3_server.secret_key,
            bucket=bucket,
            secure=False,
        )
        clients = [
            threading.Thread(target=upload, args=(url, key, released))
            for upload in (_form_upload, _tus_upload)
        ]
        for client in clients:
            client.start()
        deadline = time.monotonic() + 60
        while len(list(store.iter_unfinished())) < 2:
            assert time.monotonic() < deadline, "the uploads never reached S3"
            time.sleep(0.1)
        server.send_signal(signal.SIGKILL)
        server.wait(timeout=10)
        released.set()
        for client in clients:
            client.join(timeout=30)

        # Just now the two uploads were live: counted, never touched, even by --repair.
        code, report = _fsck(env, "--repair")
        checked = report["checked"]
        assert isinstance(checked, dict)
        assert code == 0 and report["repairs"] == [], report
        assert checked["uploads in flight"] == 1
        assert checked["unfinished writes in progress"] == 2

        time.sleep(_IDLE_SECONDS + 1)  # silent past the idle timeout: a crash's leftovers
        [location] = _tus_locations
        resumable_key = next(k for k in _unfinished_keys(store) if k.endswith(location[-36:]))
        [form_key] = _unfinished_keys(store) - {resumable_key}
        code, report = _fsck(env)
        findings = report["findings"]
        assert code == 1 and isinstance(findings, list)
        assert sum("still pending" in f for f in findings) == 1, findings
        assert any(f"unfinished write to {form_key}" in f for f in findings), findings
        assert not any(resumable_key in f for f in findings), findings

        code, report = _fsck(env, "--repair")
        repairs = report["repairs"]
        assert isinstance(repairs, list)
        assert sum("abandoned upload intent" in r for r in repairs) == 1, repairs
        assert code == 0, report
        assert _unfinished_keys(store) == {resumable_key}
        assert list(store.iter_objects()) == []  # nothing was ever stored as evidence
        assert _fsck(env)[0] == 0

        # A day later the resumable upload has expired: its write goes with it.
        with psycopg.connect(env["LOCKER_DATABASE_URL"].replace("+psycopg", "")) as db:
            db.execute("UPDATE resumable_upload SET expires_at = now() - interval '1 second'")
        code, report = _fsck(env, "--repair")
        assert code == 0 and any(location[-36:] in r for r in report["repairs"]), report
        assert list(store.iter_unfinished()) == []
        assert _fsck(env)[0] == 0


def _unfinished_keys(store: S3Store) -> set[str]:
    return {u.key for u in store.iter_unfinished()}
