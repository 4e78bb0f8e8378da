"""C2SP tlog-tiles: the log's Merkle tree cut into immutable tiles of 256 hashes.

A tile at level L holds the hashes of the tree's nodes at height 8·L (level 0: the leaf
hashes), 256 of them for a full tile, the first W for a partial one (the right edge of a
tree whose size is not a multiple of the tile's span). Given a signed checkpoint, anyone
can fetch the tiles a proof needs and check inclusion or consistency with nothing else
(c2sp.org/tlog-tiles). Tile contents never change: a partial tile is a prefix of the
full tile it will grow into.

Paths (c2sp.org/tlog-tiles, "Merkle Tree"): `tile/<L>/<N>[.p/<W>]`, where <N> is written
in groups of three digits, all but the last prefixed with `x` (1234067 → x001/x234/067).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from service.errors import FormatError

TILE_HEIGHT = 8
TILE_WIDTH = 1 << TILE_HEIGHT
# Levels whose nodes span at most 2**63 entries: the log's positions are signed 64-bit.
MAX_LEVEL = 63 // TILE_HEIGHT
_GROUP = re.compile(r"[0-9]{3}")
_LEVEL = re.compile(r"0|[1-9][0-9]?")
_WIDTH = re.compile(r"[1-9][0-9]{0,2}")


@dataclass(frozen=True, slots=True, kw_only=True)
class TileId:
    """One tile: its level, its index within the level and its width in hashes."""

    level: int
    index: int
    width: int = TILE_WIDTH

    def __post_init__(self) -> None:
        if not 0 <= self.level <= MAX_LEVEL:
            raise FormatError(f"tile level must be in [0, {MAX_LEVEL}], got {self.level}")
        if self.index < 0:
            raise FormatError(f"tile index must not be negative, got {self.index}")
        if not 1 <= self.width <= TILE_WIDTH:
            raise FormatError(f"tile width must be in [1, {TILE_WIDTH}], got {self.width}")

    @property
    def is_partial(self) -> bool:
        return self.width < TILE_WIDTH

    @property
    def node_height(self) -> int:
        """The height in the tree of the nodes this tile holds (0: leaves)."""
        return self.level * TILE_HEIGHT

    @property
    def first_node(self) -> int:
        """The index, at `node_height`, of the tile's first node."""
        return self.index * TILE_WIDTH

    def needs_tree_size(self) -> int:
        """The smallest tree that holds every node of this tile."""
        return (self.first_node + self.width) << self.node_height

    def to_path(self) -> str:
        """The tile's path below the log's prefix: `tile/<L>/<N>[.p/<W>]`."""
        digits = f"{self.index:03d}"
        digits = "0" * (-len(digits) % 3) + digits
        groups = [digits[i : i + 3] for i in range(0, len(digits), 3)]
        encoded = "/".join([*(f"x{g}" for g in groups[:-1]), groups[-1]])
        suffix = f".p/{self.width}" if self.is_partial else ""
        return f"tile/{self.level}/{encoded}{suffix}"

    @classmethod
    def from_path(cls, path: str) -> TileId:
        """Parse `tile/<L>/<N>[.p/<W>]`, refusing every other spelling of it."""
        parts = path.split("/")
        if len(parts) < 3 or parts[0] != "tile" or not _LEVEL.fullmatch(parts[1]):
            raise FormatError(f"not a tile path: {path[:120]!r}")
        groups, width = parts[2:], TILE_WIDTH
        if len(groups) >= 2 and groups[-2].endswith(".p"):
            if not _WIDTH.fullmatch(groups[-1]) or int(groups[-1]) >= TILE_WIDTH:
                raise FormatError(f"partial tile width must be in [1, 255]: {path[:120]!r}")
            width = int(groups[-1])
            groups = [*groups[:-2], groups[-2].removesuffix(".p")]
        *leading, last = groups
        if not _GROUP.fullmatch(last) or not all(
            g.startswith("x") and _GROUP.fullmatch(g[1:]) for g in leading
        ):
            raise FormatError(f"tile index must be x-prefixed 3-digit groups: {path[:120]!r}")
        if leading and leading[0] == "x000":
            raise FormatError(f"tile index has a leading zero group: {path[:120]!r}")
        index = int("".join(g.removeprefix("x") for g in groups))
        return cls(level=int(parts[1]), index=index, width=width)
