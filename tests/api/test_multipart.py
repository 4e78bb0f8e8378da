"""Streaming multipart parsing and the upload's idle limit, driven directly (no server)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from service.api.multipart import boundary_of, form_events, idle_limited
from service.errors import IdleTimeout, InvalidInput
from service.evidence.intake import FormEvent, PartData, PartEnd, PartStart

BOUNDARY = b"----locker-test-boundary"
FILE = bytes(range(256)) * 64 + b"\r\n--not-the-boundary\r\n"


def _body(*parts: tuple[str, bytes]) -> bytes:
    out = b""
    for disposition, data in parts:
        out += b"--" + BOUNDARY + b"\r\nContent-Disposition: form-data; " + disposition.encode()
        out += b"\r\n\r\n" + data + b"\r\n"
    return out + b"--" + BOUNDARY + b"--\r\n"


async def _in_pieces(body: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


async def _events(body: bytes, size: int) -> list[FormEvent]:
    return [event async for event in form_events(_in_pieces(body, size), BOUNDARY)]


def _parts(events: list[FormEvent]) -> list[tuple[PartStart, bytes]]:
    """Each part's start and its data joined, checking every part is ended once."""
    parts: list[tuple[PartStart, bytes]] = []
    current: PartStart | None = None
    data = b""
    for event in events:
        if isinstance(event, PartStart):
            assert current is None
            current, data = event, b""
        elif isinstance(event, PartData):
            assert current is not None
            data += event.data
        else:
            assert isinstance(event, PartEnd) and current is not None
            parts.append((current, data))
            current = None
    assert current is None
    return parts


@pytest.mark.parametrize("size", [1, 7, 100, 1 << 20])
async def test_parts_arrive_exactly_however_the_body_is_cut(size: int) -> None:
    body = _body(
        ('name="metadata"', b'{"title": "\xd9\x85\xd9\x82\xd8\xa8\xd8\xb1\xd8\xa9"}'),
        ('name="file"; filename="a \\"quoted\\" name.bin"', FILE),
    )
    parts = _parts(await _events(body, size))
    assert [start for start, _ in parts] == [
        PartStart(name="metadata", filename=None),
        PartStart(name="file", filename='a "quoted" name.bin'),
    ]
    assert parts[0][1] == '{"title": "مقبرة"}'.encode()
    assert parts[1][1] == FILE


async def test_data_events_are_yielded_as_they_arrive_not_at_the_end() -> None:
    arrived = asyncio.Event()
    head = _body(('name="file"; filename="f"', b"first-bytes" * 100))[:-40]

    async def then_wait() -> AsyncIterator[bytes]:
        yield head
        await arrived.wait()
        yield b""

    events = form_events(then_wait(), BOUNDARY)
    assert await anext(events) == PartStart(name="file", filename="f")
    first = await anext(events)
    assert isinstance(first, PartData) and first.data.startswith(b"first-bytesfirst-bytes")
    arrived.set()
    await events.aclose()


async def test_a_body_cut_before_the_closing_boundary_is_refused() -> None:
    body = _body(('name="file"; filename="f"', FILE))
    with pytest.raises(InvalidInput, match="ends before the closing boundary"):
        await _events(body[:-10], 64)


async def test_the_rfc_2231_filename_form_is_refused() -> None:
    body = _body(("name=\"file\"; filename*=UTF-8''a.bin", b"x"))
    with pytest.raises(InvalidInput, match=r"filename\* is not accepted"):
        await _events(body, 1024)


async def test_a_part_without_a_name_is_refused() -> None:
    with pytest.raises(InvalidInput, match="a part has no name"):
        await _events(_body(('filename="f"', b"x")), 1024)


def test_the_boundary_comes_from_the_content_type() -> None:
    assert boundary_of('multipart/form-data; boundary="abc"') == b"abc"
    with pytest.raises(InvalidInput, match="multipart/form-data with a boundary"):
        boundary_of("application/json")
    with pytest.raises(InvalidInput, match="longer than 70"):
        boundary_of("multipart/form-data; boundary=" + "b" * 71)


async def test_idle_limit_passes_a_steady_stream_through_unchanged() -> None:
    chunks = [b"a", b"bb", b"ccc"]
    assert [c async for c in idle_limited(_list(chunks), 60)] == chunks


async def _list(chunks: list[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


async def test_a_silent_client_is_an_idle_timeout_after_its_chunks() -> None:
    async def one_then_silence() -> AsyncIterator[bytes]:
        yield b"only"
        await asyncio.Event().wait()
        yield b"never"

    received: list[bytes] = []
    with pytest.raises(IdleTimeout, match=r"no data for 0\.05 s: upload abandoned"):
        async for chunk in idle_limited(one_then_silence(), 0.05):
            received.append(chunk)
    assert received == [b"only"]
