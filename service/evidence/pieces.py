"""A tus PATCH's body cut into pieces of the upload's object, hashed on the way.

Each PATCH stores its bytes once, as pieces of the one write at the upload's own key
(on S3 the parts of a multipart upload), so completing the upload joins them where
they are instead of reading them back and writing them again:
- a piece is `piece_bytes(length)` long (the last of a body may be shorter); one is
  stored while the next arrives, and when the body's length is declared a piece's
  write to the store begins with its first byte (`ObjectStore.stream_piece`). Its
  bytes are kept until the store answers: a piece the body was cut short of, or that
  the store failed to take, is stored from them (`put_piece`) under a new number;
- what is left at the end of a body too short to be a piece (a cut connection's tail:
  shorter than the store's smallest piece, or than a 5,000th of the file) is held
  aside as a staging object; the next PATCH reads it back first (less than a piece)
  and makes a piece of it with its own bytes;
- the process that received the bytes keeps their running digests (`DigestCache`); the
  next PATCH continues them if it lands on the same process at the same offset. One
  that lands elsewhere, or after a restart, goes on without them, and the completion
  reads the joined object back once to digest it.
"""

from __future__ import annotations

import asyncio
import hashlib
import queue
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

from service.errors import StorageError
from service.evidence.pipe import RunningDigests
from service.storage import MAX_PIECES, ObjectStore, Piece, StagedObject

T = TypeVar("T")

_PIECE_BYTES = 8 * 1024 * 1024
# How far digesting may lag the body: each step is hashed in a thread as the next arrives.
_DIGEST_STEP = 1024 * 1024
# Piece numbers a write may spend: half of the store's limit, so that pieces of requests
# that lost the race for an offset (numbered, stored, never listed) cannot exhaust it.
_PIECES_PER_UPLOAD = MAX_PIECES // 2


def piece_bytes(length: int) -> int:
    """How long an upload's pieces are: 8 MiB, or more for a file too long to fit."""
    mebibyte = 1024 * 1024
    needed = -(-length // _PIECES_PER_UPLOAD)
    return max(_PIECE_BYTES, -(-needed // mebibyte) * mebibyte)


class DigestCache:
    """Running digests of this process's uploads in progress, the latest `capacity`.

    Taken (removed) by the PATCH that continues them and kept again only once its
    bytes are counted, so two requests never feed one digester, and digests of bytes
    that were not counted are never used.
    """

    def __init__(self, capacity: int = 256) -> None:
        self._capacity = capacity
        self._kept: OrderedDict[str, RunningDigests] = OrderedDict()

    def take(self, upload_id: str, offset: int) -> RunningDigests | None:
        """The upload's digests if they cover exactly its first `offset` bytes."""
        kept = self._kept.pop(upload_id, None)
        if kept is None or kept.size != offset:
            return None
        return kept

    def keep(self, upload_id: str, digests: RunningDigests) -> None:
        self._kept[upload_id] = digests
        while len(self._kept) > self._capacity:
            self._kept.popitem(last=False)


@dataclass(frozen=True, slots=True)
class PlacedPiece:
    """A stored piece and where its bytes start in the file."""

    start: int
    piece: Piece


@dataclass(frozen=True, slots=True)
class HeldPart:
    """Counted bytes held aside as a staging object, from `start` in the file."""

    start: int
    staged: StagedObject


@dataclass(frozen=True, slots=True)
class Received:
    """What a PATCH stored: its pieces, the bytes it held aside, how many bytes its body
    had and their SHA-256 (when asked for), and the running digests it continued."""

    pieces: list[PlacedPiece]
    held: HeldPart | None
    size: int
    sha256: bytes | None
    digests: RunningDigests | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Destination:
    """Where a PATCH's pieces go: the write at `key`, numbered by `next_number`."""

    store: ObjectStore
    key: str
    write_id: str
    next_number: Callable[[], Awaitable[int]]
    piece_bytes: int


async def receive(  # noqa: PLR0913 (keyword-only parts of one PATCH)
    to: Destination,
    body: AsyncIterator[bytes],
    *,
    offset: int,
    length: int,
    body_length: int | None,
    held: Sequence[HeldPart],
    digests: RunningDigests | None,
    want_sha256: bool,
) -> Received:
    """Store the bytes held aside, then `body` (which starts at `offset`), as pieces.

    When the body's length is declared (`body_length`, its Content-Length), each piece's
    length is known before its first byte, and the piece streams to the store while
    its bytes arrive; its bytes are also kept until it is stored, so a piece the body
    was cut short of, or that the store failed to take, is stored again from them.

    On failure nothing new stays held aside; pieces already stored stay unlisted, and
    the store drops them when the write is finished or aborted.
    """
    # A tail stored as a piece spends a number: none but the last may be so short that
    # the upload would run out of them (a long file sent in short PATCHes).
    least = max(to.store.min_piece_bytes, -(-length // _PIECES_PER_UPLOAD))
    placing = sum(part.staged.size for part in held)
    planned = None
    if body_length is not None and body_length <= length - offset:
        planned = _Plan(total=placing + body_length, completes=offset + body_length == length)
    cutter = _Cutter(
        to,
        start=held[0].start if held else offset,
        digests=digests,
        least=least,
        plan=planned,
    )
    body_sha256 = hashlib.sha256() if want_sha256 else None
    size = 0
    try:
        for part in held:
            await cutter.add_held(part)
        async for chunk in body:
            size += len(chunk)
            if body_sha256 is not None:
                body_sha256.update(chunk)
            await cutter.add(chunk)
        tail = await cutter.finish(complete=offset + size == length)
    except BaseException:
        await cutter.abandon()
        raise
    return Received(
        pieces=cutter.pieces,
        held=tail,
        size=size,
        sha256=body_sha256.digest() if body_sha256 is not None else None,
        digests=digests,
    )


@dataclass(frozen=True, slots=True)
class _Plan:
    """How many bytes a PATCH places (those held aside, then its body), and whether the
    last of them is the upload's last."""

    total: int
    completes: bool


class _Feed:
    """Bytes handed from the event loop to the thread that streams a piece to the store."""

    _END = b""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()

    def put(self, data: bytes) -> None:
        if data:
            self._queue.put(data)

    def end(self) -> None:
        self._queue.put(self._END)

    def cut(self) -> None:
        """The piece will never be whole: its write fails, and nothing is stored."""
        self._queue.put(None)

    def __iter__(self) -> Iterator[bytes]:
        while (data := self._queue.get()) != self._END:
            if data is None:
                raise PieceCut("the body ended before the piece was whole")
            yield data


class PieceCut(Exception):
    """A streamed piece's bytes stopped coming (a cut connection): it was not stored."""


@dataclass(slots=True)
class _Filling:
    """The piece being filled: where it starts, its bytes so far (kept until it is
    stored) and, when it streams, its exact length, its feed and its write in flight."""

    start: int
    buffer: bytearray
    size: int | None = None
    feed: _Feed | None = None
    storing: asyncio.Future[Piece] | None = None

    def room(self, piece_bytes: int) -> int:
        return (self.size if self.size is not None else piece_bytes) - len(self.buffer)


class _Cutter:
    """Bytes in, pieces out: one piece stored while the next fills."""

    def __init__(
        self,
        to: Destination,
        *,
        start: int,
        digests: RunningDigests | None,
        least: int,
        plan: _Plan | None,
    ) -> None:
        self._to, self._digests, self._least, self._plan = to, digests, least, plan
        self._position = start  # where the next piece starts in the file
        self._placed = 0  # bytes of this request in pieces begun before the one filling
        self._filling: _Filling | None = None
        self._pending: _Filling | None = None  # whole, being stored
        self._hashing: asyncio.Future[None] | None = None
        self._undigested: list[bytes] = []
        self._undigested_bytes = 0
        self.pieces: list[PlacedPiece] = []

    async def add_held(self, part: HeldPart) -> None:
        """Bytes counted earlier and held aside: read back, never digested again."""
        store, read = self._to.store, 0
        chunks = await asyncio.to_thread(store.open_staged, part.staged)
        try:
            while chunk := await asyncio.to_thread(next, chunks, b""):
                read += len(chunk)
                await self._place(chunk)
        finally:
            chunks.close()
        if read != part.staged.size:
            size = part.staged.size
            raise StorageError(f"bytes held aside at {part.start} hold {read}, not {size}")

    async def add(self, chunk: bytes) -> None:
        if self._digests is not None:
            self._undigested.append(chunk)
            self._undigested_bytes += len(chunk)
            if self._undigested_bytes >= _DIGEST_STEP:
                await self._digest_behind()
        await self._place(chunk)

    async def finish(self, *, complete: bool) -> HeldPart | None:
        """Store what is left: as the last piece, as a piece if it is long enough, else
        held aside for the next PATCH."""
        filling, self._filling = self._filling, None
        if filling is not None:
            await self._stop(filling)  # the body ended short of this piece
        await self._stored()
        await self._digested()
        await self._digest_rest()
        if filling is None or not filling.buffer:
            return None
        if complete or len(filling.buffer) >= self._least:
            self._pending = filling
            await self._stored()
            return None
        staged = await asyncio.to_thread(self._to.store.stage, [bytes(filling.buffer)])
        return HeldPart(start=filling.start, staged=staged)

    async def abandon(self) -> None:
        """End the piece streaming, wait for the writes and the digesting in flight
        (their threads cannot be stopped), keep nothing."""
        filling, self._filling = self._filling, None
        if filling is not None:
            await self._stop(filling)
        for running in (self._hashing, self._pending.storing if self._pending else None):
            if running is not None:
                await asyncio.gather(running, return_exceptions=True)
        self._hashing = self._pending = None

    async def _place(self, data: bytes) -> None:
        """Add bytes to the pieces, cut exactly where each piece ends."""
        while data:
            filling = self._filling or await self._begin()
            room = filling.room(self._to.piece_bytes)
            part, data = data[:room], data[room:]
            filling.buffer += part
            if filling.feed is not None:
                filling.feed.put(part)
            if len(part) == room:
                await self._whole(filling)

    async def _begin(self) -> _Filling:
        """Begin the next piece; it streams when its length is known and it will be
        stored as a piece (not held aside as a short tail)."""
        await self._stored()  # one piece stored while the next fills, never more
        filling = _Filling(start=self._position, buffer=bytearray())
        plan = self._plan
        if plan is not None:
            size = min(self._to.piece_bytes, plan.total - self._placed)
            if size > 0 and (plan.completes or size >= self._least):
                filling.size, filling.feed = size, _Feed()
                filling.storing = _soon(self._stream(filling.feed, size))
        self._filling = filling
        return filling

    async def _whole(self, filling: _Filling) -> None:
        self._filling = None
        self._placed += len(filling.buffer)
        self._position += len(filling.buffer)
        if filling.feed is not None:
            filling.feed.end()
        else:
            filling.storing = _soon(self._put(filling.buffer))
        self._pending = filling

    async def _stop(self, filling: _Filling) -> None:
        """Cut a piece short if it streams: its write fails and stores nothing."""
        if filling.feed is not None:
            filling.feed.cut()
        if filling.storing is not None:
            await asyncio.gather(filling.storing, return_exceptions=True)
        filling.feed = filling.storing = None

    async def _stored(self) -> None:
        """Wait for the whole piece being stored; one the store failed to take while it
        streamed (a dropped link, a timeout) is stored once more from the bytes kept."""
        pending, self._pending = self._pending, None
        if pending is None:
            return
        try:
            piece = await pending.storing if pending.storing else await self._put(pending.buffer)
        except StorageError:
            if pending.feed is None:
                raise
            piece = await self._put(pending.buffer)
        self.pieces.append(PlacedPiece(start=pending.start, piece=piece))

    async def _stream(self, feed: _Feed, size: int) -> Piece:
        to, number = self._to, await self._number()
        return await asyncio.to_thread(
            to.store.stream_piece, to.key, to.write_id, number, feed, size=size
        )

    async def _put(self, buffer: bytearray) -> Piece:
        to, number = self._to, await self._number()
        data = bytes(buffer)
        return await asyncio.to_thread(to.store.put_piece, to.key, to.write_id, number, data)

    async def _number(self) -> int:
        number = await self._to.next_number()
        if number > MAX_PIECES:
            raise StorageError(f"the upload used all {MAX_PIECES} piece numbers the store allows")
        return number

    async def _digest_behind(self) -> None:
        """Digest the body's bytes so far in a thread while more arrive, at most one step
        in flight: the digests stay in order and memory stays bounded."""
        await self._digested()
        chunks, self._undigested, self._undigested_bytes = self._undigested, [], 0
        digests = self._digests
        assert digests is not None
        self._hashing = _soon(asyncio.to_thread(_update, digests, chunks))

    async def _digested(self) -> None:
        if self._hashing is not None:
            hashing, self._hashing = self._hashing, None
            await hashing

    async def _digest_rest(self) -> None:
        chunks, self._undigested, self._undigested_bytes = self._undigested, [], 0
        if self._digests is not None and chunks:
            await asyncio.to_thread(_update, self._digests, chunks)


def _soon(work: Awaitable[T]) -> asyncio.Future[T]:
    return asyncio.ensure_future(work)


def _update(digests: RunningDigests, chunks: list[bytes]) -> None:
    for chunk in chunks:
        digests.update(memoryview(chunk))
