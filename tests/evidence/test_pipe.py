"""The upload's streaming pipe, driven directly on a real filesystem store."""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections.abc import AsyncIterator, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from service.errors import StorageError, TooLarge
from service.evidence import pipe
from service.evidence.pipe import SNIFF_BYTES, StagedUpload, stage_file
from service.storage import FilesystemStore, StagedObject

MIB = 1024 * 1024


async def _chunks(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def _staged(store: FilesystemStore) -> list[StagedObject]:
    return list(store.iter_staged())


async def test_bytes_arrive_exactly_with_their_digests_and_head(tmp_path: Path) -> None:
    store = FilesystemStore(tmp_path)
    data = bytes(range(256)) * 12_289  # about 3 MiB, not a whole number of chunks
    upload = await stage_file(store, _chunks(data, 65_521), limit=len(data), key="k")
    assert upload.digests.sha256.hex == hashlib.sha256(data).hexdigest()
    assert upload.digests.sha512.hex == hashlib.sha512(data).hexdigest()
    assert upload.digests.size == upload.staged.size == len(data)
    assert upload.head == data[:SNIFF_BYTES]
    stored = store.commit(upload.staged, retain_until=datetime.now(UTC) + timedelta(days=1))
    assert b"".join(store.open(stored.key, None)) == data


async def test_one_byte_over_the_limit_is_too_large_and_leaves_nothing(tmp_path: Path) -> None:
    store = FilesystemStore(tmp_path)
    with pytest.raises(TooLarge, match="limit of 2097151 bytes"):
        await stage_file(store, _chunks(b"x" * 2 * MIB, MIB), limit=2 * MIB - 1)
    assert _staged(store) == []


async def test_a_failing_request_abandons_the_staging_object(tmp_path: Path) -> None:
    store = FilesystemStore(tmp_path)

    async def breaks() -> AsyncIterator[bytes]:
        for _ in range(3):
            yield b"y" * MIB
        raise ConnectionResetError("client went away")

    with pytest.raises(ConnectionResetError, match="client went away"):
        await stage_file(store, breaks(), limit=10 * MIB)
    assert _staged(store) == []


class _Gated(FilesystemStore):
    """A filesystem store whose `stage` waits for a gate before reading, and counts."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.gate = threading.Event()
        self.staging = 0
        self._lock = threading.Lock()

    def stage(self, chunks: Iterable[bytes], *, key: str | None = None) -> StagedObject:
        with self._lock:
            self.staging += 1
        self.gate.wait()
        return super().stage(chunks, key=key)


async def test_a_full_pipe_holds_the_producer_without_a_thread(tmp_path: Path) -> None:
    # Two worker threads: the storage thread, and one that a short call must still get
    # while the producer waits for room (it used to wait in a second thread).
    asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(max_workers=2))
    store = _Gated(tmp_path)
    produced = 0

    async def counted() -> AsyncIterator[bytes]:
        nonlocal produced
        for _ in range(40):
            produced += 1
            yield b"z" * MIB

    staging = asyncio.create_task(stage_file(store, counted(), limit=100 * MIB))
    while produced <= pipe._DEPTH:
        await asyncio.sleep(0.01)
    for _ in range(100):
        await asyncio.sleep(0)
    # The pipe holds _DEPTH chunks and the producer one more, waiting: memory is bounded.
    assert produced == pipe._DEPTH + 1
    short = asyncio.ensure_future(asyncio.to_thread(lambda: "answered"))
    done, _ = await asyncio.wait({short}, timeout=30)
    assert short in done and short.result() == "answered"
    store.gate.set()
    upload = await staging
    assert produced == 40 and upload.digests.size == 40 * MIB


async def test_slow_uploads_leave_threads_for_short_calls(tmp_path: Path) -> None:
    asyncio.get_running_loop().set_default_executor(pipe.sized_executor())
    store = _Gated(tmp_path)
    store.gate.set()
    release = asyncio.Event()

    async def silent_client() -> AsyncIterator[bytes]:
        yield b"s" * 100
        await release.wait()  # a client on a slow link, sending nothing for now

    uploads = [
        asyncio.create_task(stage_file(store, silent_client(), limit=MIB))
        for _ in range(pipe.STAGING_THREADS + 3)
    ]
    while store.staging < pipe.STAGING_THREADS:
        await asyncio.sleep(0.01)
    short = [asyncio.ensure_future(asyncio.to_thread(lambda: 1)) for _ in range(8)]
    done, _ = await asyncio.wait(short, timeout=30)
    assert len(done) == 8
    # The uploads past STAGING_THREADS wait for a turn without holding a thread.
    assert store.staging == pipe.STAGING_THREADS
    release.set()
    finished = await asyncio.gather(*uploads)
    assert store.staging == pipe.STAGING_THREADS + 3
    assert all(isinstance(u, StagedUpload) and u.digests.size == 100 for u in finished)


class _Failing(FilesystemStore):
    """Fails after reading two chunks, as a store that lost its connection would."""

    def stage(self, chunks: Iterable[bytes], *, key: str | None = None) -> StagedObject:
        def two_then_fail() -> Iterator[bytes]:
            for count, chunk in enumerate(chunks):
                if count == 2:
                    raise StorageError("store connection lost")
                yield chunk

        return super().stage(two_then_fail(), key=key)


async def test_a_store_failure_stops_the_producer_and_is_raised(tmp_path: Path) -> None:
    store = _Failing(tmp_path)
    produced = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal produced
        while True:
            produced += 1
            yield b"e" * MIB

    with pytest.raises(StorageError, match="store connection lost"):
        await stage_file(store, endless(), limit=1024 * MIB)
    assert produced < 2 + pipe._DEPTH + 3
    assert _staged(store) == []


class _Early(FilesystemStore):
    """Stops reading after one chunk yet reports success."""

    def stage(self, chunks: Iterable[bytes], *, key: str | None = None) -> StagedObject:
        return super().stage([next(iter(chunks))], key=key)


async def test_a_store_that_stops_early_cannot_stage_a_truncated_file(tmp_path: Path) -> None:
    store = _Early(tmp_path)
    with pytest.raises(StorageError, match="stopped reading before the end"):
        await stage_file(store, _chunks(b"t" * 5 * MIB, MIB), limit=10 * MIB)
    assert _staged(store) == []


async def test_cancelling_the_upload_abandons_the_staging_object(tmp_path: Path) -> None:
    store = FilesystemStore(tmp_path)
    sent = asyncio.Event()

    async def then_silence() -> AsyncIterator[bytes]:
        for _ in range(2):
            yield b"c" * MIB
        sent.set()
        await asyncio.Event().wait()
        yield b""  # never reached

    upload = asyncio.create_task(stage_file(store, then_silence(), limit=10 * MIB))
    await sent.wait()
    upload.cancel()
    with pytest.raises(asyncio.CancelledError):
        await upload
    assert _staged(store) == []
