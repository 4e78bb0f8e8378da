"""Streaming downloads: the stored bytes through the response, bounded, closed on disconnect.

Drives the response GET /v1/evidence/{id}/content returns (ClosingStreamingResponse) over
a real filesystem store's stream, with the ASGI messages a server would exchange.
"""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from starlette.requests import ClientDisconnect

from service.api.streaming import ClosingStreamingResponse
from service.storage import FilesystemStore
from service.storage.base import CHUNK_SIZE

DATA = bytes(range(256)) * (5 * 4096 + 7)  # about 5 MiB, not a whole number of chunks


def _stored(tmp_path: Path) -> FilesystemStore:
    store = FilesystemStore(tmp_path)
    staged = store.stage((DATA[i : i + 300_000] for i in range(0, len(DATA), 300_000)), key="item")
    store.commit(staged, retain_until=datetime.now(UTC) + timedelta(days=1))
    return store


def _open_on(path: Path) -> int:
    """How many of this process's file descriptors are open on `path`."""
    fds = Path("/proc/self/fd")
    return sum(1 for fd in fds.iterdir() if os.path.realpath(fd) == str(path.resolve()))


def _scope(spec_version: str) -> dict[str, Any]:
    return {"type": "http", "asgi": {"spec_version": spec_version}, "method": "GET"}


@pytest.mark.parametrize("spec_version", ["2.0", "2.4"])
async def test_the_bytes_stream_exactly_in_bounded_chunks(
    tmp_path: Path, spec_version: str
) -> None:
    store = _stored(tmp_path)
    response = ClosingStreamingResponse(
        store.open("item", None), media_type="application/octet-stream"
    )
    bodies: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        await asyncio.Event().wait()  # the client stays for the whole download
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            bodies.append(message)

    await response(_scope(spec_version), receive, send)
    assert b"".join(m["body"] for m in bodies) == DATA
    assert max(len(m["body"]) for m in bodies) <= CHUNK_SIZE
    assert [m["more_body"] for m in bodies][-1] is False
    assert _open_on(tmp_path / "objects" / "item") == 0


async def test_a_client_that_leaves_stops_the_stream_and_frees_the_file(tmp_path: Path) -> None:
    store = _stored(tmp_path)
    response = ClosingStreamingResponse(store.open("item", None))
    first_body = asyncio.Event()
    sent = 0

    async def receive() -> dict[str, Any]:
        await first_body.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal sent
        if message["type"] == "http.response.body":
            sent += len(message["body"])
            first_body.set()
            await asyncio.sleep(0)  # a slow network

    await response(_scope("2.0"), receive, send)
    assert 0 < sent < len(DATA)
    # Released as the response ends, not when the garbage collector gets to it.
    assert _open_on(tmp_path / "objects" / "item") == 0


async def test_a_broken_connection_is_a_client_disconnect_and_frees_the_file(
    tmp_path: Path,
) -> None:
    store = _stored(tmp_path)
    response = ClosingStreamingResponse(store.open("item", None))
    bodies = 0

    async def receive() -> dict[str, Any]:
        raise AssertionError("a 2.4 server reports a gone client through send")

    async def send(message: dict[str, Any]) -> None:
        nonlocal bodies
        if message["type"] == "http.response.body":
            bodies += 1
            if bodies == 2:
                raise ConnectionResetError("peer gone")

    with pytest.raises(ClientDisconnect):
        await response(_scope("2.4"), receive, send)
    assert bodies == 2
    assert _open_on(tmp_path / "objects" / "item") == 0
