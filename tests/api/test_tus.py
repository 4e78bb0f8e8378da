"""Resumable uploads (tus 1.0) at /v1/uploads: the reference client, raw HTTP, cut
connections, restarts, and every refusal as one line with nothing half-recorded."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlmodel import select
from tusclient import client as tus_client
from tusclient.uploader import Uploader

from service.accounts.members import bootstrap
from service.api.routes import uploads as uploads_routes
from service.db.models import Evidence, ResumablePart, ResumableUpload, UploadIntent
from service.evidence.resumable import expire_uploads
from service.operations.fsck import fsck
from service.runtime import Runtime, open_runtime
from service.settings import Settings
from service.storage import FilesystemStore
from tests.harness import Locker, serving
from tests.locker_fixtures import SettingsFactory
from tests.processes import bootstrap_key, locker_environment, serving_process

TUS = {"Tus-Resumable": "1.0.0"}
CHUNK_TYPE = {"Content-Type": "application/offset+octet-stream"}


def unsniffable(size: int) -> bytes:
    """`size` random bytes under a fixed head that names no media type: about one random
    file in 4,000 starts like a known format (and may be analysed, or not be
    application/octet-stream)."""
    head = b"\x00\x01locker-bytes\xff"
    return head + os.urandom(size - len(head))


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def metadata_header(filename: str, content: bytes | None = None, **extra: str) -> str:
    pairs = {"filename": filename} | extra
    if content is not None:
        pairs["sha256"] = hashlib.sha256(content).hexdigest()
    return ",".join(f"{key} {b64(value)}" for key, value in pairs.items())


def create(client: httpx.Client, length: int, metadata: str, **headers: str) -> httpx.Response:
    return client.post(
        "/v1/uploads",
        headers=TUS | {"Upload-Length": str(length), "Upload-Metadata": metadata} | headers,
    )


def patch(
    client: httpx.Client, location: str, offset: int, body: bytes, **headers: str
) -> httpx.Response:
    return client.patch(
        location, content=body, headers=TUS | CHUNK_TYPE | {"Upload-Offset": str(offset)} | headers
    )


def raw_patch_head(locker: Locker, location: str, length: int, extra: str = "") -> bytes:
    """The head of a PATCH at offset 0 for a raw socket: to cut it, or send it slowly."""
    return (
        f"PATCH {location} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {locker.api_key}\r\nTus-Resumable: 1.0.0\r\n"
        f"Content-Type: application/offset+octet-stream\r\nUpload-Offset: 0\r\n"
        f"{extra}Content-Length: {length}\r\n\r\n"
    ).encode()


def raw_connection(locker: Locker) -> socket.socket:
    return socket.create_connection(("127.0.0.1", int(locker.base_url.rsplit(":", 1)[1])))


def checksum(body: bytes) -> str:
    return "sha256 " + base64.b64encode(hashlib.sha256(body).digest()).decode()


def bytes_left(runtime: Runtime) -> list[str]:
    """Bytes in the store that are no object: staging objects and unfinished writes."""
    staged = [s.staging_key for s in runtime.store.iter_staged()]
    return staged + [f"{u.key} ({u.upload_id})" for u in runtime.store.iter_unfinished()]


def evidence_count(runtime: Runtime) -> int:
    with runtime.database.session() as session:
        return len(session.exec(select(Evidence)).all())


class Sha256Uploader(Uploader):
    """tuspy's uploader with the checksum this server speaks (tuspy defaults to sha1)."""

    CHECKSUM_ALGORITHM_PAIR = ("sha256", hashlib.sha256)


def test_tuspy_uploads_in_chunks_and_the_evidence_is_recorded(
    locker: Locker, tmp_path: Any
) -> None:
    content = b"%PDF-1.4\n" + os.urandom(300_000)
    path = tmp_path / "شهادة.pdf"
    path.write_bytes(content)
    sha256 = hashlib.sha256(content).hexdigest()
    described = json.dumps({"title": "إفادة شاهد", "captured_at": "2020-06-05T10:00:00Z"})
    tus = tus_client.TusClient(
        f"{locker.base_url}/v1/uploads", headers={"Authorization": f"Bearer {locker.api_key}"}
    )
    with path.open("rb") as stream:  # tuspy leaves a file it opens itself unclosed
        uploader = Sha256Uploader(
            file_stream=stream,
            client=tus,
            chunk_size=64 * 1024,
            metadata={"filename": path.name, "metadata": described, "sha256": sha256},
            upload_checksum=True,
        )
        uploader.upload()
    assert uploader.offset == len(content)
    with locker.client() as client:
        head = client.head(uploader.url, headers=TUS)
        assert head.status_code == 200 and head.headers["Upload-Offset"] == str(len(content))
        evidence_id = head.headers["Locker-Evidence-Id"]
        item = client.get(f"/v1/evidence/{evidence_id}").json()
        assert item["sha256"] == sha256 and item["size"] == len(content)
        assert item["filename"] == path.name and item["duplicate"] is False
        assert item["description"]["asserted"]["title"] == "إفادة شاهد"
        assert client.get(f"/v1/evidence/{evidence_id}/content").content == content
        trail = client.get(f"/v1/evidence/{evidence_id}/custody").json()["entries"]
        assert trail[0]["fields"]["action"] == "evidence.ingested"
        assert trail[0]["index"] == int(head.headers["Locker-Custody-Index"])
    # The parts are gone once recorded; the intent is done, like a form upload's.
    assert bytes_left(locker.runtime) == []
    with locker.runtime.database.session() as session:
        assert session.exec(select(ResumablePart)).all() == []
        assert [i.status for i in session.exec(select(UploadIntent))] == ["done"]
    assert fsck(locker.runtime).healthy


def test_protocol_headers_creation_with_upload_and_dedupe(locker: Locker) -> None:
    content = unsniffable(5000)  # no analysis adds to the trail compared below
    with locker.client() as client:
        options = client.options("/v1/uploads")
        assert options.status_code == 204
        assert options.headers["Tus-Version"] == "1.0.0"
        assert options.headers["Tus-Extension"] == (
            "creation,creation-with-upload,termination,expiration,checksum"
        )
        assert options.headers["Tus-Checksum-Algorithm"] == "sha256"
        assert options.headers["Tus-Max-Size"] == str(locker.runtime.settings.max_upload_bytes)
        created = client.post(
            "/v1/uploads",
            content=content[:1000],
            headers=TUS
            | CHUNK_TYPE
            | {"Upload-Length": "5000", "Upload-Metadata": metadata_header("a.bin", content)},
        )
        assert created.status_code == 201, created.text
        assert created.headers["Upload-Offset"] == "1000"
        assert created.headers["Upload-Expires"].endswith(" GMT")
        location = created.headers["Location"]
        head = client.head(location, headers=TUS)
        assert head.headers["Upload-Offset"] == "1000"
        assert head.headers["Cache-Control"] == "no-store"
        done = patch(
            client, location, 1000, content[1000:], **{"Upload-Checksum": checksum(content[1000:])}
        )
        assert done.status_code == 204, done.text
        assert done.headers["Upload-Offset"] == "5000"
        assert done.headers["Locker-Duplicate"] == "false"
        first = done.headers["Locker-Evidence-Id"]
        # The same bytes again: the same item, recorded as a re-submission.
        again = create(client, 5000, metadata_header("again.bin", content))
        second = patch(client, again.headers["Location"], 0, content)
        assert second.headers["Locker-Evidence-Id"] == first
        assert second.headers["Locker-Duplicate"] == "true"
        trail = client.get(f"/v1/evidence/{first}/custody").json()["entries"]
        assert [e["fields"]["action"] for e in trail] == [
            "evidence.ingested",
            "evidence.resubmitted",
        ]
        # A complete upload takes no more bytes.
        late = patch(client, location, 5000, b"x")
        assert late.status_code == 409 and "complete" in late.json()["detail"]
    assert evidence_count(locker.runtime) == 1


def test_every_answer_under_uploads_names_the_protocol_version(
    locker: Locker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """tus 1.0 asks for Tus-Resumable on every response: refusals by a route, by the
    router and by a middleware, and the answer to an unexpected failure too."""
    content = os.urandom(100)
    with locker.client() as client:
        created = create(client, len(content), metadata_header("v.bin", content))
        location = created.headers["Location"]
        answers = {
            "options": client.options("/v1/uploads"),
            "creation": created,
            "head": client.head(location, headers=TUS),
            "patch": patch(client, location, 0, content[:10]),
            "termination": client.delete(location, headers=TUS),
            "412 no version": client.head(location),
            "404 unknown upload": client.head("/v1/uploads/nothing-here", headers=TUS),
            "405 method": client.put("/v1/uploads", headers=TUS),
            "422 NUL in path": client.head("/v1/uploads/a%00b", headers=TUS),
        }
        with locker.client("lk_wrong") as stranger:
            answers["401 wrong key"] = stranger.head(location, headers=TUS)

        async def broken(*_: object) -> None:
            raise RuntimeError("a bug")

        monkeypatch.setattr(uploads_routes, "settled_state", broken)
        answers["500 unexpected"] = client.head(location, headers=TUS)
        monkeypatch.undo()
        elsewhere = client.get("/v1/evidence")
    statuses = {name: answer.status_code for name, answer in answers.items()}
    assert statuses == {
        "options": 204,
        "creation": 201,
        "head": 200,
        "patch": 204,
        "termination": 204,
        "412 no version": 412,
        "404 unknown upload": 404,
        "405 method": 405,
        "422 NUL in path": 422,
        "401 wrong key": 401,
        "500 unexpected": 500,
    }
    assert {name: a.headers.get("Tus-Resumable") for name, a in answers.items()} == {
        name: "1.0.0" for name in answers
    }
    assert "Tus-Resumable" not in elsewhere.headers


def test_bad_requests_are_one_line_and_record_nothing(locker: Locker) -> None:
    content = os.urandom(4000)
    with locker.client() as client:
        no_version = client.post("/v1/uploads", headers={"Upload-Length": "10"})
        assert no_version.status_code == 412 and no_version.headers["Tus-Version"] == "1.0.0"
        too_big = create(client, locker.runtime.settings.max_upload_bytes + 1, metadata_header("b"))
        assert too_big.status_code == 413
        for metadata, words in [
            ("", "needs at least filename"),
            (f"sha256 {b64('0' * 64)}", "needs filename"),
            (f"filename {b64('x')},sha265 {b64('0' * 64)}", "unknown key 'sha265'"),
            ("filename ***", "not base64"),
            (f"filename {b64('x')},metadata {b64('[1]')}", "metadata: must be a JSON object"),
            (f"filename {b64('x')},sha256 {b64('abc')}", "sha256: must be 64"),
        ]:
            refused = create(client, 10, metadata)
            assert refused.status_code == 422 and words in refused.json()["detail"], refused.text
        assert create(client, 0, metadata_header("empty")).status_code == 422
        location = create(client, 4000, metadata_header("c.bin", content)).headers["Location"]
        wrong_type = client.patch(
            location,
            content=b"abc",
            headers=TUS | {"Upload-Offset": "0", "Content-Type": "application/octet-stream"},
        )
        assert wrong_type.status_code == 415
        assert patch(client, location, 7, b"abc").status_code == 409
        assert patch(client, location, 0, b"abc").status_code == 204
        assert patch(client, location, 0, b"abc").status_code == 409
        bad_sum = patch(
            client, location, 3, content[3:100], **{"Upload-Checksum": checksum(b"other")}
        )
        assert bad_sum.status_code == 460 and "Upload-Checksum" in bad_sum.json()["detail"]
        unknown_sum = patch(client, location, 3, b"x", **{"Upload-Checksum": "md5 AAAA"})
        assert unknown_sum.status_code == 400 and "use sha256" in unknown_sum.json()["detail"]
        assert unknown_sum.headers["Tus-Resumable"] == "1.0.0"
        assert client.head(location, headers=TUS).headers["Upload-Offset"] == "3"
        past_end = patch(client, location, 3, b"y" * 4001)
        assert past_end.status_code == 413
        # Another organisation does not see the upload at all.
        other = locker.new_organisation("other")
        with locker.client(other) as stranger:
            assert stranger.head(location, headers=TUS).status_code == 404
            assert patch(stranger, location, 3, b"x").status_code == 404
        with locker.client("lk_wrong") as anonymous:
            assert create(anonymous, 10, metadata_header("d")).status_code == 401
        # Termination: 204, then the upload is unknown and its parts are gone.
        assert client.delete(location, headers=TUS).status_code == 204
        assert patch(client, location, 3, b"x").status_code == 404
        assert client.head(location, headers=TUS).status_code == 404
    assert bytes_left(locker.runtime) == [] and evidence_count(locker.runtime) == 0


def test_a_final_sha256_that_differs_records_nothing(locker: Locker) -> None:
    content = os.urandom(3000)
    declared = metadata_header("e.bin", b"not these bytes")
    with locker.client() as client:
        location = create(client, 3000, declared).headers["Location"]
        assert patch(client, location, 0, content[:1000]).status_code == 204
        refused = patch(client, location, 1000, content[1000:])
        assert refused.status_code == 422 and "sha256: mismatch" in refused.json()["detail"]
        gone = client.head(location, headers=TUS)
        assert gone.status_code == 410
        assert patch(client, location, 3000, b"").status_code == 410
    assert evidence_count(locker.runtime) == 0
    assert bytes_left(locker.runtime) == [] and list(locker.runtime.store.iter_objects()) == []
    with locker.runtime.database.session() as session:
        [intent] = session.exec(select(UploadIntent)).all()
        assert intent.status == "abandoned" and "mismatch" in (intent.outcome or "")


def test_expired_uploads_answer_410_and_are_removed(locker: Locker) -> None:
    content = os.urandom(2000)
    runtime = locker.runtime
    with locker.client() as client:
        location = create(client, 2000, metadata_header("f.bin", content)).headers["Location"]
        assert patch(client, location, 0, content[:500]).status_code == 204
        upload_id = location.rsplit("/", 1)[1]
        with runtime.database.session() as session:
            upload = session.get(ResumableUpload, upload_id)
            assert upload is not None
            upload.expires_at = datetime.now(UTC) - timedelta(seconds=1)
            session.add(upload)
        assert client.head(location, headers=TUS).status_code == 410
        expired = patch(client, location, 500, content[500:])
        assert expired.status_code == 410 and "expired" in expired.json()["detail"]
        assert bytes_left(runtime) != []  # its first 500 bytes
        # fsck lists it; --repair removes it; then it is unknown.
        report = fsck(runtime)
        assert any(upload_id in f and "expired" in f for f in report.findings), report.findings
        repaired = fsck(runtime, repair=True)
        assert any(upload_id in r for r in repaired.repairs)
        assert bytes_left(runtime) == [] and fsck(runtime).healthy
        assert client.head(location, headers=TUS).status_code == 404
        # The periodic job does the same for another one.
        second = create(client, 2000, metadata_header("g.bin", content)).headers["Location"]
        assert patch(client, second, 0, content[:10]).status_code == 204
        assert expire_uploads(runtime) == []
        later = datetime.now(UTC) + timedelta(seconds=runtime.settings.upload_expiry_seconds + 1)
        assert expire_uploads(runtime, later) == [second.rsplit("/", 1)[1]]
        assert client.head(second, headers=TUS).status_code == 404
    assert bytes_left(runtime) == []


def _wait_for_offset(client: httpx.Client, location: str, at_least: int) -> int:
    for _ in range(400):
        offset = int(client.head(location, headers=TUS).headers["Upload-Offset"])
        if offset >= at_least:
            return offset
        time.sleep(0.05)
    raise AssertionError(f"the offset never reached {at_least}")


def test_a_cut_connection_keeps_what_arrived(locker: Locker) -> None:
    content = os.urandom(400_000)
    with locker.client() as client:
        location = create(client, len(content), metadata_header("h.bin", content)).headers[
            "Location"
        ]
        head = raw_patch_head(locker, location, len(content))
        with raw_connection(locker) as raw:
            raw.sendall(head + content[:250_000])
            time.sleep(0.2)  # let the server take the bytes before the cut
        offset = _wait_for_offset(client, location, 250_000)
        assert offset == 250_000
        done = patch(client, location, offset, content[offset:])
        assert done.status_code == 204, done.text
        evidence_id = done.headers["Locker-Evidence-Id"]
        assert client.get(f"/v1/evidence/{evidence_id}/content").content == content


def test_offsets_survive_a_restart_and_another_server(make_settings: SettingsFactory) -> None:
    """State is in the database and the store: a new runtime (a restarted or another
    process) takes the upload where the first one left it."""
    settings: Settings = make_settings()
    content = os.urandom(1_000_000)
    first = open_runtime(settings)
    try:
        key = bootstrap(first, organisation="Field team", email="lead@example.org").api_key
        auth = {"Authorization": f"Bearer {key}"}
        with serving(first) as url, httpx.Client(base_url=url, headers=auth) as client:
            location = create(client, len(content), metadata_header("i.bin", content)).headers[
                "Location"
            ]
            assert patch(client, location, 0, content[:600_000]).status_code == 204
    finally:
        first.close()
    second, third = open_runtime(settings), open_runtime(settings)
    try:
        with (
            serving(second) as url_b,
            serving(third) as url_c,
            httpx.Client(base_url=url_b, headers=auth) as b,
            httpx.Client(base_url=url_c, headers=auth) as c,
        ):
            assert b.head(location, headers=TUS).headers["Upload-Offset"] == "600000"
            assert patch(c, location, 600_000, content[600_000:800_000]).status_code == 204
            assert patch(b, location, 600_000, b"late").status_code == 409
            done = patch(b, location, 800_000, content[800_000:])
            assert done.status_code == 204, done.text
            evidence_id = done.headers["Locker-Evidence-Id"]
            assert c.get(f"/v1/evidence/{evidence_id}/content").content == content
    finally:
        second.close()
        third.close()


def test_tuspy_resumes_an_interrupted_upload(locker: Locker, tmp_path: Any) -> None:
    """tuspy's own resume: a stored URL and the server's offset, with nothing sent twice."""
    content = os.urandom(200_000)
    path = tmp_path / "video.mp4"
    path.write_bytes(content)
    tus = tus_client.TusClient(
        f"{locker.base_url}/v1/uploads", headers={"Authorization": f"Bearer {locker.api_key}"}
    )
    metadata = {"filename": path.name, "sha256": hashlib.sha256(content).hexdigest()}
    with path.open("rb") as stream:
        started = Sha256Uploader(
            file_stream=stream, client=tus, chunk_size=50_000, metadata=metadata
        )
        started.upload_chunk()
        started.upload_chunk()
    with path.open("rb") as stream:
        resumed = Sha256Uploader(file_stream=stream, client=tus, chunk_size=50_000, url=started.url)
        assert resumed.offset == 100_000
        resumed.upload()
    with locker.client() as client:
        head = client.head(started.url, headers=TUS)
        evidence_id = head.headers["Locker-Evidence-Id"]
        assert client.get(f"/v1/evidence/{evidence_id}").json()["size"] == len(content)


def test_odd_headers_empty_chunks_and_a_cut_chunk_with_a_checksum(locker: Locker) -> None:
    content = os.urandom(300_000)
    with locker.client() as client:
        twice = f"filename {b64('x')},filename {b64('y')}"
        assert "given twice" in create(client, 10, twice).json()["detail"]
        huge = f"filename {b64('x' * 80_000)}"
        assert "longer than" in create(client, 10, huge).json()["detail"]
        location = create(client, len(content), metadata_header("j.bin", content)).headers[
            "Location"
        ]
        for bad in ("sha256 ***", "sha256 " + base64.b64encode(b"short").decode()):
            refused = patch(client, location, 0, b"abc", **{"Upload-Checksum": bad})
            assert refused.status_code == 422 and "32-byte" in refused.json()["detail"]
        empty = patch(client, location, 0, b"")
        assert empty.status_code == 204 and empty.headers["Upload-Offset"] == "0"
        # A chunk sent with a checksum and cut short cannot match it: none of it is kept.
        head = raw_patch_head(
            locker, location, len(content), f"Upload-Checksum: {checksum(content)}\r\n"
        )
        with raw_connection(locker) as raw:
            raw.sendall(head + content[:100_000])
            time.sleep(0.2)
        # The cut request is over once a request at its offset is answered as usual.
        done = patch(client, location, 0, content, **{"Upload-Checksum": checksum(content)})
        assert done.status_code == 204, done.text
    assert bytes_left(locker.runtime) == []


def _writing(locker: Locker, location: str) -> tuple[int, bool]:
    """How many PATCHes the upload counts as writing into it, and whether it is marked."""
    with locker.runtime.database.session() as session:
        upload = session.get(ResumableUpload, location.rsplit("/", 1)[-1])
        assert upload is not None
        return upload.writers, upload.writing_since is not None


def _wait_until_writing(locker: Locker, location: str) -> None:
    """Until a raw PATCH is past its offset check and counted as writing into the upload."""
    deadline = time.monotonic() + 30
    while _writing(locker, location) != (1, True):
        assert time.monotonic() < deadline, "the PATCH never began writing"
        time.sleep(0.02)


def test_a_head_while_a_patch_writes_answers_once_its_bytes_count(locker: Locker) -> None:
    """A client cut off asks at once where to go on: the answer waits for the request that
    is still storing what it delivered, so those bytes are never sent twice."""
    content = os.urandom(200_000)
    with locker.client() as client:
        location = create(client, len(content), metadata_header("w.bin", content)).headers[
            "Location"
        ]
        head = raw_patch_head(locker, location, 100_000, "Connection: close\r\n")
        with raw_connection(locker) as slow:
            slow.sendall(head + content[:50_000])
            _wait_until_writing(locker, location)
            rest = threading.Timer(0.5, slow.sendall, args=(content[50_000:100_000],))
            rest.start()
            asked = time.monotonic()
            state = client.head(location, headers=TUS)
            waited = time.monotonic() - asked
            rest.join()
        assert state.status_code == 200 and state.headers["Upload-Offset"] == "100000"
        assert waited >= 0.4, waited  # it answered only once the PATCH had counted
        # A PATCH at the old offset learns the same at once, before sending its body again.
        late = patch(client, location, 0, content[:100_000])
        assert late.status_code == 409 and "does not match" in late.json()["detail"]
        done = patch(client, location, 100_000, content[100_000:])
        assert done.status_code == 204
        evidence_id = done.headers["Locker-Evidence-Id"]
        assert client.get(f"/v1/evidence/{evidence_id}/content").content == content


def test_of_two_chunks_at_one_offset_only_one_counts(locker: Locker) -> None:
    """Both pass the offset check; the conditional UPDATE lets only the first to end
    count. The upload stays marked as written into until the second one has ended too."""
    content = os.urandom(200_000)
    with locker.client() as client:
        location = create(client, len(content), metadata_header("k.bin", content)).headers[
            "Location"
        ]
        head = raw_patch_head(locker, location, 100_000, "Connection: close\r\n")
        with raw_connection(locker) as slow:
            slow.sendall(head + content[:50_000])
            _wait_until_writing(locker, location)  # past its offset check, still receiving
            fast = patch(client, location, 0, content[:100_000])
            assert fast.status_code == 204 and fast.headers["Upload-Offset"] == "100000"
            # The slow one still writes: a HEAD now must still wait for it.
            assert _writing(locker, location) == (1, True)
            slow.sendall(content[50_000:100_000])
            answer = b""
            while chunk := slow.recv(65536):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 409"), answer[:200]
        assert b"another request moved the upload's offset first" in answer
        assert _writing(locker, location) == (0, False)
        done = patch(client, location, 100_000, content[100_000:])
        assert done.status_code == 204
        evidence_id = done.headers["Locker-Evidence-Id"]
        assert client.get(f"/v1/evidence/{evidence_id}/content").content == content
    assert bytes_left(locker.runtime) == []


def test_a_dead_process_count_of_writers_goes_with_its_stale_mark(locker: Locker) -> None:
    """A process that died while writing left its count and its mark; once the mark is
    older than the idle timeout, the next PATCH counts from one, and clears it on ending."""
    content = os.urandom(100_000)
    with locker.client() as client:
        location = create(client, len(content), metadata_header("d.bin", content)).headers[
            "Location"
        ]
        stale = datetime.now(UTC) - timedelta(
            seconds=locker.runtime.settings.upload_idle_timeout_seconds + 60
        )
        with locker.runtime.database.session() as session:
            upload = session.get(ResumableUpload, location.rsplit("/", 1)[-1])
            assert upload is not None
            upload.writers, upload.writing_since = 3, stale
            session.add(upload)
        assert patch(client, location, 0, content[:50_000]).status_code == 204
        assert _writing(locker, location) == (0, False)


# The fault is injected by moving a file of the filesystem store.
@pytest.mark.parametrize("backend", ["sqlite-fs"], indirect=True)
def test_a_store_failure_at_completion_keeps_the_pieces_for_a_retry(locker: Locker) -> None:
    """A piece the store cannot read makes the completing PATCH a 503 with nothing
    recorded; once the store has it again, a PATCH at the end takes the upload's intent
    over and records the evidence."""
    assert isinstance(locker.runtime.store, FilesystemStore)
    content = os.urandom(5000)
    pieces = locker.runtime.settings.data_dir / "store" / "pieces"
    with locker.client() as client:
        location = create(client, 5000, metadata_header("l.bin", content)).headers["Location"]
        assert patch(client, location, 0, content[:4000]).status_code == 204
        [write] = list(pieces.iterdir())
        first = write / "00001"
        aside = first.rename(write.with_name("aside"))
        failed = patch(client, location, 4000, content[4000:])
        assert failed.status_code == 503 and "piece 1" in failed.json()["detail"]
        assert evidence_count(locker.runtime) == 0
        head = client.head(location, headers=TUS)
        assert head.headers["Upload-Offset"] == "5000" and "Locker-Evidence-Id" not in head.headers
        aside.rename(first)
        done = patch(client, location, 5000, b"")
        assert done.status_code == 204, done.text
        evidence_id = done.headers["Locker-Evidence-Id"]
        assert client.get(f"/v1/evidence/{evidence_id}/content").content == content
        # A recorded upload cannot be terminated into anything: DELETE only forgets it.
        assert client.delete(location, headers=TUS).status_code == 204
        assert client.get(f"/v1/evidence/{evidence_id}").status_code == 200
    assert bytes_left(locker.runtime) == []
    with locker.runtime.database.session() as session:
        assert [i.status for i in session.exec(select(UploadIntent))] == ["done"]


def test_two_locker_processes_share_one_upload(tmp_path: Any) -> None:
    """Two `locker serve` processes over one database and store: chunks may land on either."""
    env = locker_environment(LOCKER_DATA_DIR=str(tmp_path / "data"))
    key = bootstrap_key(env, "Field team")
    content = os.urandom(700_000)
    auth = {"Authorization": f"Bearer {key}"}
    log = tmp_path / "locker.log"
    with (
        serving_process(env, log) as (first_url, _first),
        serving_process(env, log) as (second_url, _second),
        httpx.Client(base_url=first_url, headers=auth) as first,
        httpx.Client(base_url=second_url, headers=auth) as second,
    ):
        location = create(first, len(content), metadata_header("m.bin", content)).headers[
            "Location"
        ]
        assert patch(first, location, 0, content[:300_000]).status_code == 204
        assert second.head(location, headers=TUS).headers["Upload-Offset"] == "300000"
        done = patch(second, location, 300_000, content[300_000:])
        assert done.status_code == 204, done.text
        assert (
            first.head(location, headers=TUS).headers["Locker-Evidence-Id"]
            == (done.headers["Locker-Evidence-Id"])
        )


def test_a_creation_sent_twice_with_one_idempotency_key_makes_one_upload(locker: Locker) -> None:
    content = os.urandom(3000)
    metadata = metadata_header("once.bin", content)
    with locker.client() as client:
        key = {"Idempotency-Key": "2f1c7a52-tus-creation"}
        first = create(client, 3000, metadata, **key)
        again = create(client, 3000, metadata, **key)
        assert (first.status_code, again.status_code) == (201, 201), again.text
        assert again.headers["Location"] == first.headers["Location"]
        assert again.headers["Idempotent-Replayed"] == "true"
        # The same key for another file (other metadata, another length) is refused.
        other = create(client, 10, metadata_header("other.bin"), **key)
        assert other.status_code == 422, other.text
        assert "Idempotency-Key" in other.json()["detail"]
        done = patch(client, first.headers["Location"], 0, content)
        assert done.status_code == 204, done.text
    with locker.runtime.database.session() as session:
        assert len(session.exec(select(ResumableUpload)).all()) == 1
    assert evidence_count(locker.runtime) == 1
