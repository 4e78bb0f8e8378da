"""Independent proofs from C2SP tlog-tiles: fetch hash tiles, build RFC 9162 proofs.

Written from the public specifications only (c2sp.org/tlog-tiles, RFC 9162 §2.1); it
imports nothing from the locker. The tiles themselves are not trusted: every proof built
from them is checked by `verifier.verify_inclusion_hash` / `verify_consistency` against
roots from a signed checkpoint, so a wrong tile can only make a check fail.
"""

from collections.abc import Callable

from tests.independent.verifier import HASH_SIZE, _node

TILE_HEIGHT = 8
TILE_WIDTH = 256


def tile_path(level: int, index: int, width: int) -> str:
    """`tile/<L>/<N>[.p/<W>]`, <N> in 3-digit groups, all but the last prefixed `x`."""
    digits = str(index)
    digits = "0" * (-len(digits) % 3) + digits
    groups = [digits[i : i + 3] for i in range(0, len(digits), 3)]
    encoded = "/".join([*("x" + g for g in groups[:-1]), groups[-1]])
    return f"tile/{level}/{encoded}" + (f".p/{width}" if width < TILE_WIDTH else "")


class TileReader:
    """Node hashes of the tree of `size`, read from tiles fetched on demand."""

    def __init__(self, fetch: Callable[[str], bytes], size: int) -> None:
        self._fetch, self._size, self._tiles = fetch, size, {}
        self.fetched: list[str] = []

    def _tile(self, level: int, index: int) -> list[bytes]:
        # The nodes that exist at height 8·level in a tree of `size`.
        count = self._size >> (level * TILE_HEIGHT)
        width = min(TILE_WIDTH, count - index * TILE_WIDTH)
        if width <= 0:
            raise ValueError(f"tile {level}/{index} is beyond a tree of size {self._size}")
        key = (level, index, width)
        if key not in self._tiles:
            path = tile_path(level, index, width)
            data = self._fetch(path)
            self.fetched.append(path)
            if len(data) != width * HASH_SIZE:
                raise ValueError(f"{path}: {len(data)} bytes, want {width * HASH_SIZE}")
            self._tiles[key] = [data[i : i + HASH_SIZE] for i in range(0, len(data), HASH_SIZE)]
        return self._tiles[key]

    def node(self, height: int, index: int) -> bytes:
        """The hash of the perfect subtree of 2**height leaves starting at index·2**height."""
        level, above = divmod(height, TILE_HEIGHT)
        span = 1 << above  # nodes of the tile's height under this one
        first = index * span
        hashes = self._tile(level, first // TILE_WIDTH)
        offset = first % TILE_WIDTH
        row = hashes[offset : offset + span]
        if len(row) != span:
            raise ValueError(f"node {height}/{index} is not complete in a tree of {self._size}")
        while len(row) > 1:
            row = [_node(row[i], row[i + 1]) for i in range(0, len(row), 2)]
        return row[0]

    def range_hash(self, start: int, end: int) -> bytes:
        """MTH(D[start:end]) for a range that RFC 9162's recursion produces."""
        size = end - start
        if size & (size - 1) == 0 and start % size == 0:
            return self.node(size.bit_length() - 1, start // size)
        k = 1 << ((size - 1).bit_length() - 1)  # largest power of two below size
        return _node(self.range_hash(start, start + k), self.range_hash(start + k, end))

    def inclusion_proof(self, index: int) -> list[bytes]:
        """RFC 9162 §2.1.3.1 PATH(index, D[0:size])."""
        return self._path(index, 0, self._size)

    def _path(self, m: int, start: int, end: int) -> list[bytes]:
        n = end - start
        if n == 1:
            return []
        k = 1 << ((n - 1).bit_length() - 1)
        if m < k:
            return [*self._path(m, start, start + k), self.range_hash(start + k, end)]
        return [*self._path(m - k, start + k, end), self.range_hash(start, start + k)]

    def consistency_proof(self, first: int) -> list[bytes]:
        """RFC 9162 §2.1.4.1 PROOF(first, D[0:size])."""
        return self._subproof(first, 0, self._size, whole=True)

    def _subproof(self, m: int, start: int, end: int, *, whole: bool) -> list[bytes]:
        n = end - start
        if m == n:
            return [] if whole else [self.range_hash(start, end)]
        k = 1 << ((n - 1).bit_length() - 1)
        if m <= k:
            return [
                *self._subproof(m, start, start + k, whole=whole),
                self.range_hash(start + k, end),
            ]
        return [
            *self._subproof(m - k, start + k, end, whole=False),
            self.range_hash(start, start + k),
        ]

    def leaf_hash(self, index: int) -> bytes:
        return self.node(0, index)
