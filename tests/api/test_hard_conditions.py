"""Oversized bodies, broken connections, large files: a clear answer, nothing half-done."""

from __future__ import annotations

import hashlib
import socket
import time
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit

from sqlmodel import select

from service.db.models import CustodyEntry, Evidence, UploadIntent
from service.operations.fsck import fsck
from tests.harness import Locker


def _log_size(locker: Locker) -> int:
    with locker.runtime.database.session() as session:
        return locker.runtime.log.size(session)


def test_body_over_the_limit_is_413_and_leaves_nothing(make_locker: Callable[..., Locker]) -> None:
    locker = make_locker(max_upload_bytes=10_000)
    before = _log_size(locker)
    with locker.client() as client:
        declared = client.post(
            "/v1/evidence", files=[("file", ("big.bin", b"x" * 2_000_000, "video/mp4"))]
        )

        # Chunked: no Content-Length to refuse early, so the stream itself is cut off.
        def body() -> Iterator[bytes]:
            yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="v.mp4"\r\n\r\n'
            for _ in range(40):
                yield b"y" * 1000
            yield b"\r\n--b--\r\n"

        streamed = client.post(
            "/v1/evidence",
            content=body(),
            headers={"content-type": "multipart/form-data; boundary=b"},
        )
    assert declared.status_code == 413
    assert streamed.status_code == 413, streamed.text
    assert "limit" in streamed.json()["detail"]
    assert _log_size(locker) == before
    assert list(locker.runtime.store.iter_objects()) == []
    assert list(locker.runtime.store.iter_staged()) == []


def _upload_start(locker: Locker, filename: str, length: int) -> bytes:
    """An upload's request head and the start of its file part, over a raw socket."""
    address = urlsplit(locker.base_url)
    head = (
        f"POST /v1/evidence HTTP/1.1\r\nHost: {address.netloc}\r\n"
        f"Authorization: Bearer {locker.api_key}\r\n"
        "Content-Type: multipart/form-data; boundary=b\r\n"
        f"Content-Length: {length}\r\n\r\n"
    )
    part = f'--b\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n\r\n'
    return (head + part).encode()


def test_disconnect_mid_upload_leaves_nothing_half_recorded(locker: Locker) -> None:
    before = _log_size(locker)
    address = urlsplit(locker.base_url)
    with socket.create_connection((address.hostname, address.port)) as sock:
        sock.sendall(_upload_start(locker, "cut.mp4", 50_000_000))
        for _ in range(48):
            sock.sendall(b"z" * 65536)
    deadline = time.monotonic() + 20
    while True:
        with locker.runtime.database.session() as session:
            intents = session.exec(select(UploadIntent)).all()
        if intents and all(i.status != "pending" for i in intents):
            break
        assert time.monotonic() < deadline, "the interrupted upload was never settled"
        time.sleep(0.1)
    assert [i.status for i in intents] == ["abandoned"]
    assert _log_size(locker) == before
    with locker.runtime.database.session() as session:
        assert session.exec(select(Evidence)).all() == []
        assert len(session.exec(select(CustodyEntry)).all()) == before
    assert list(locker.runtime.store.iter_objects()) == []
    assert list(locker.runtime.store.iter_staged()) == []
    assert fsck(locker.runtime).findings == []


def test_multi_megabyte_upload_streams_in_odd_chunks(locker: Locker) -> None:
    size = 24 * 1024 * 1024 + 7
    block = bytes(range(251)) * 4099

    def content() -> Iterator[bytes]:
        sent = 0
        while sent < size:
            piece = block[: min(len(block), size - sent)]
            sent += len(piece)
            yield piece

    digest = hashlib.sha256()
    for piece in content():
        digest.update(piece)

    def body() -> Iterator[bytes]:
        yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="video.bin"\r\n\r\n'
        yield from content()
        yield b"\r\n--b--\r\n"

    with locker.client() as client:
        response = client.post(
            "/v1/evidence",
            content=body(),
            headers={"content-type": "multipart/form-data; boundary=b"},
        )
        assert response.status_code == 201, response.text
        downloaded = hashlib.sha256()
        with client.stream("GET", f"/v1/evidence/{response.json()['id']}/content") as stream:
            for chunk in stream.iter_bytes():
                downloaded.update(chunk)
    assert response.json()["size"] == size
    assert response.json()["sha256"] == digest.hexdigest()
    assert downloaded.hexdigest() == digest.hexdigest()


def test_a_client_that_goes_silent_is_timed_out_and_nothing_is_half_recorded(
    make_locker: Callable[..., Locker],
) -> None:
    locker = make_locker(upload_idle_timeout_seconds=1)
    before = _log_size(locker)
    address = urlsplit(locker.base_url)
    with socket.create_connection((address.hostname, address.port), timeout=20) as sock:
        # 100 kB of a promised 10 MB, then silence with the connection kept open.
        sock.sendall(_upload_start(locker, "slow.mp4", 10_000_000) + b"z" * 100_000)
        received = b""
        while b"upload abandoned" not in received and (chunk := sock.recv(65536)):
            received += chunk
    answer = received.decode("latin-1")
    assert answer.startswith("HTTP/1.1 408"), answer
    assert "no data for 1 s" in answer
    with locker.runtime.database.session() as session:
        assert [i.status for i in session.exec(select(UploadIntent)).all()] == ["abandoned"]
    assert _log_size(locker) == before
    assert list(locker.runtime.store.iter_staged()) == []
    assert fsck(locker.runtime).findings == []
