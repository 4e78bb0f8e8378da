"""The upload's streaming pipe: chunks from the event loop into the object store, once.

The store's `stage` consumes a blocking iterator, so it runs in a worker thread
(`asyncio.to_thread`) while the event loop reads the request. Between the two sits a
bounded hand-over of at most `_DEPTH` chunks of about 1 MiB, so memory stays bounded
whatever the speed of the client and of the store:
- the storage thread waits while the hand-over is empty (it is a thread already);
- the event loop waits while it is full without occupying a thread: it awaits a
  future that the storage thread resolves through `loop.call_soon_threadsafe`.
SHA-256, SHA-512 and the size are computed in the storage thread as the chunks pass;
the first bytes are kept to sniff the media type.

An upload holds one thread while it is staged, however slowly its client sends. At
most `STAGING_THREADS` are staged at once per event loop (the others wait for a turn,
holding no thread), and the server's default executor (`sized_executor`) has
`SHORT_CALL_THREADS` more, so slow uploads never starve short database calls.

Any failure abandons the staging object: an error on the request's side is handed to
the storage thread, which raises it inside `stage` (the store drops what it wrote); a
store error stops the producer at its next chunk and is raised to the caller.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections import deque
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from service.core.digests import ContentDigester, ContentDigests
from service.errors import Error, StorageError, TooLarge, describe
from service.storage import ObjectStore, StagedObject

CHUNK_BYTES = 1024 * 1024
# Chunks in flight between the request and the storage thread (memory stays bounded).
_DEPTH = 8
SNIFF_BYTES = 8192
STAGING_THREADS = 32
SHORT_CALL_THREADS = 16


@dataclass(frozen=True, slots=True)
class StagedUpload:
    """The staged bytes, their digests and their first `SNIFF_BYTES` bytes."""

    staged: StagedObject
    digests: ContentDigests
    head: bytes


@dataclass(slots=True)
class RunningDigests:
    """The digests of a file's first `size` bytes, and its first bytes (to sniff the
    media type): what a `StagedUpload` is made of, while the bytes still arrive."""

    digester: ContentDigester = field(default_factory=ContentDigester)
    head: bytearray = field(default_factory=bytearray)

    @property
    def size(self) -> int:
        return self.digester.size

    def copy(self) -> RunningDigests:
        return RunningDigests(digester=self.digester.copy(), head=bytearray(self.head))

    def update(self, data: bytes | memoryview) -> None:
        if len(self.head) < SNIFF_BYTES:
            self.head += data[: SNIFF_BYTES - len(self.head)]
        self.digester.update(data)

    def staged(self, staged: StagedObject) -> StagedUpload:
        """The staged bytes with these digests (they must have seen every byte)."""
        return StagedUpload(staged=staged, digests=self.digester.finish(), head=bytes(self.head))


def sized_executor() -> ThreadPoolExecutor:
    """A default executor for the server's event loop: room for every staging thread
    and still `SHORT_CALL_THREADS` for everything else."""
    return ThreadPoolExecutor(
        max_workers=STAGING_THREADS + SHORT_CALL_THREADS, thread_name_prefix="locker"
    )


async def stage_file(
    store: ObjectStore,
    chunks: AsyncIterator[bytes],
    *,
    limit: int,
    key: str | None = None,
) -> StagedUpload:
    """Stream `chunks` into `store`, for `key` (or as a scratch object without one),
    digesting them on the way.

    Raises TooLarge past `limit` bytes, and whatever the chunks or the store raise; in
    every such case nothing is left staged.
    """
    async with _staging_turns():
        pipe = _Pipe(asyncio.get_running_loop())
        staging = asyncio.ensure_future(asyncio.to_thread(_stage_in_thread, store, pipe, key))
        try:
            async for chunk in _sized(chunks, limit):
                if not await pipe.put(chunk):
                    break  # the store stopped reading; `staging` raises why
            pipe.end()
            return await staging
        except BaseException as exc:
            pipe.end(_Aborted(describe(exc)))
            await _settle(store, staging)
            raise


async def _sized(chunks: AsyncIterator[bytes], limit: int) -> AsyncIterator[bytes]:
    """The chunks regrouped to about `CHUNK_BYTES`; TooLarge once past `limit` bytes."""
    size, buffer = 0, bytearray()
    async for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"file exceeds the upload limit of {limit} bytes")
        buffer += chunk
        if len(buffer) >= CHUNK_BYTES:
            yield bytes(buffer)
            buffer.clear()
    if buffer:
        yield bytes(buffer)


async def _settle(store: ObjectStore, staging: asyncio.Future[StagedUpload]) -> None:
    """Wait for the storage thread after a failure; drop anything it finished staging."""
    (outcome,) = await asyncio.gather(staging, return_exceptions=True)
    if isinstance(outcome, StagedUpload):
        # The thread had taken the end before the failure: its object is no upload now.
        await asyncio.to_thread(store.discard, outcome.staged)


class _Aborted(Error):
    """Tells the storage thread to abandon the staging object."""


_turns: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
    weakref.WeakKeyDictionary()
)


def _staging_turns() -> asyncio.Semaphore:
    """This event loop's `STAGING_THREADS` turns (a semaphore belongs to one loop)."""
    loop = asyncio.get_running_loop()
    turns = _turns.get(loop)
    if turns is None:
        turns = _turns[loop] = asyncio.Semaphore(STAGING_THREADS)
    return turns


def _stage_in_thread(store: ObjectStore, pipe: _Pipe, key: str | None) -> StagedUpload:
    digests = RunningDigests()

    def digesting() -> Iterator[bytes]:
        for chunk in pipe.chunks():
            digests.update(chunk)
            yield chunk

    try:
        staged = store.stage(digesting(), key=key)
    finally:
        pipe.stop()
    if not pipe.ended:
        # A store that returns early would store a silently truncated file.
        store.discard(staged)
        raise StorageError("the store stopped reading before the end of the upload")
    return digests.staged(staged)


_End = BaseException | None  # what ends the stream: an error to raise, or None (done)


class _Pipe:
    """A bounded hand-over of chunks from the event loop to one storage thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._lock = threading.Condition()
        self._items: deque[bytes | _End] = deque()
        self._room: asyncio.Future[None] | None = None  # the producer waits on it
        self._stopped = False  # the storage thread takes nothing more
        self.ended = False  # the storage thread has taken the end

    async def put(self, chunk: bytes) -> bool:
        """Hand `chunk` over, waiting while the pipe is full; False once it is stopped."""
        while True:
            with self._lock:
                if self._stopped:
                    return False
                if len(self._items) < _DEPTH:
                    self._items.append(chunk)
                    self._lock.notify()
                    return True
                self._room = room = self._loop.create_future()
            await room

    def end(self, error: BaseException | None = None) -> None:
        """No more chunks: the end of the file, or `error`, the reason to abandon it.
        Never waits: it may run while the task is being cancelled."""
        with self._lock:
            if error is not None:
                self._items.clear()
            self._items.append(error)
            self._lock.notify()

    def chunks(self) -> Iterator[bytes]:
        """The storage thread's side: the chunks up to the end; raises an abort."""
        while True:
            item = self._take()
            if isinstance(item, bytes):
                yield item
                continue
            self.ended = True
            if item is not None:
                raise item
            return

    def stop(self) -> None:
        """The storage thread is done: drop what is queued and release the producer."""
        with self._lock:
            self._stopped = True
            self._items.clear()
        self._wake_producer()

    def _take(self) -> bytes | _End:
        with self._lock:
            while not self._items:
                self._lock.wait()
            item = self._items.popleft()
        self._wake_producer()
        return item

    def _wake_producer(self) -> None:
        with self._lock:
            room, self._room = self._room, None
        if room is not None:
            self._loop.call_soon_threadsafe(_set_done, room)


def _set_done(room: asyncio.Future[None]) -> None:
    if not room.done():  # the producer may have been cancelled meanwhile
        room.set_result(None)
