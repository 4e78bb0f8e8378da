"""A tus PATCH's body cut into pieces of the upload's object, hashed on the way.

Each PATCH stores its bytes once, as pieces of the one write at the upload's own key
(on S3 the parts of a multipart upload), so completing the upload joins them where
they are instead of reading them back and writing them again:
- a piece is about `piece_bytes(length)` long; one is stored while the next arrives;
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
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass

from service.errors import StorageError
from service.evidence.pipe import RunningDigests
from service.storage import MAX_PIECES, ObjectStore, Piece, StagedObject

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


async def receive(
    to: Destination,
    body: AsyncIterator[bytes],
    *,
    offset: int,
    length: int,
    held: Sequence[HeldPart],
    digests: RunningDigests | None,
    want_sha256: bool,
) -> Received:
    """Store the bytes held aside, then `body` (which starts at `offset`), as pieces.

    On failure nothing new stays held aside; pieces already stored stay unlisted, and
    the store drops them when the write is finished or aborted.
    """
    # A tail stored as a piece spends a number: none but the last may be so short that
    # the upload would run out of them (a long file sent in short PATCHes).
    least = max(to.store.min_piece_bytes, -(-length // _PIECES_PER_UPLOAD))
    cutter = _Cutter(to, start=held[0].start if held else offset, digests=digests, least=least)
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
        complete = offset + size == length
        tail = await cutter.finish(keep_tail=not complete)
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


class _Cutter:
    """Bytes in, pieces out: one piece stored while the next fills."""

    def __init__(
        self, to: Destination, *, start: int, digests: RunningDigests | None, least: int
    ) -> None:
        self._to, self._digests, self._least = to, digests, least
        self._buffer = bytearray()
        self._buffer_start = start  # where the buffer's first byte sits in the file
        self._new_from = 0  # bytes of the buffer before this were held aside (digested)
        self._storing: asyncio.Future[Piece] | None = None
        self._hashing: asyncio.Future[None] | None = None
        self._undigested: list[bytes] = []  # the chunks from `_new_from` on
        self._storing_start = 0
        self.pieces: list[PlacedPiece] = []

    async def add_held(self, part: HeldPart) -> None:
        """Bytes counted earlier and held aside: read back, never digested again."""
        store, read = self._to.store, 0
        chunks = await asyncio.to_thread(store.open_staged, part.staged)
        try:
            while chunk := await asyncio.to_thread(next, chunks, b""):
                read += len(chunk)
                self._buffer += chunk
                self._new_from = len(self._buffer)
                if len(self._buffer) >= self._to.piece_bytes:
                    await self._store_buffer()
        finally:
            chunks.close()
        if read != part.staged.size:
            size = part.staged.size
            raise StorageError(f"bytes held aside at {part.start} hold {read}, not {size}")

    async def add(self, chunk: bytes) -> None:
        self._buffer += chunk
        if self._digests is not None:
            self._undigested.append(chunk)
        if len(self._buffer) >= self._to.piece_bytes:
            await self._store_buffer()
        elif len(self._buffer) - self._new_from >= _DIGEST_STEP:
            await self._digest_behind()

    async def finish(self, *, keep_tail: bool) -> HeldPart | None:
        """Store what is left: as the last piece, as a piece if it is long enough, else
        (`keep_tail`) held aside for the next PATCH."""
        if self._buffer and (not keep_tail or len(self._buffer) >= self._least):
            await self._store_buffer()
        await self._collect()
        if not self._buffer:
            return None
        await self._digest_new()
        staged = await asyncio.to_thread(self._to.store.stage, [bytes(self._buffer)])
        return HeldPart(start=self._buffer_start, staged=staged)

    async def abandon(self) -> None:
        """Wait for the piece being stored and the bytes being digested (their threads
        cannot be stopped), keep nothing."""
        if self._hashing is not None:
            await asyncio.gather(self._hashing, return_exceptions=True)
            self._hashing = None
        if self._storing is not None:
            await asyncio.gather(self._storing, return_exceptions=True)
            self._storing = None

    async def _store_buffer(self) -> None:
        number = await self._to.next_number()
        if number > MAX_PIECES:
            raise StorageError(f"the upload used all {MAX_PIECES} piece numbers the store allows")
        await self._digest_new()
        data = bytes(self._buffer)
        await self._collect()
        to = self._to
        self._storing_start = self._buffer_start
        self._storing = asyncio.ensure_future(
            asyncio.to_thread(to.store.put_piece, to.key, to.write_id, number, data)
        )
        self._buffer_start += len(data)
        self._buffer.clear()
        self._new_from = 0

    async def _digest_behind(self) -> None:
        """Digest the bytes that arrived so far in a thread while more arrive: the body
        keeps streaming, and the piece is digested by the time it is whole. At most one
        step is in flight, so the digests stay in order and memory stays bounded."""
        digests = self._digests
        if digests is None:
            return
        await self._digested()
        # The chunks as they arrived (immutable), not the buffer: it grows meanwhile.
        chunks, self._undigested = self._undigested, []
        self._new_from = len(self._buffer)
        self._hashing = asyncio.ensure_future(asyncio.to_thread(_update, digests, chunks))

    async def _digested(self) -> None:
        if self._hashing is not None:
            hashing, self._hashing = self._hashing, None
            await hashing

    async def _digest_new(self) -> None:
        await self._digested()
        self._undigested = []
        digests = self._digests
        if digests is not None and self._new_from < len(self._buffer):
            new = memoryview(self._buffer)[self._new_from :]
            try:
                await asyncio.to_thread(digests.update, new)
            finally:
                new.release()
            self._new_from = len(self._buffer)

    async def _collect(self) -> None:
        if self._storing is not None:
            storing, self._storing = self._storing, None
            self.pieces.append(PlacedPiece(start=self._storing_start, piece=await storing))


def _update(digests: RunningDigests, chunks: list[bytes]) -> None:
    for chunk in chunks:
        digests.update(memoryview(chunk))
