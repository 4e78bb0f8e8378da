"""service.core.tiles: tile paths (c2sp.org/tlog-tiles) and the nodes a tile holds."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.core.tiles import MAX_LEVEL, TILE_WIDTH, TileId
from service.errors import FormatError


@pytest.mark.parametrize(
    ("tile", "path"),
    [
        (TileId(level=0, index=0), "tile/0/000"),
        (TileId(level=0, index=0, width=1), "tile/0/000.p/1"),
        (TileId(level=1, index=7, width=255), "tile/1/007.p/255"),
        (TileId(level=2, index=1000), "tile/2/x001/000"),
        # The example of c2sp.org/tlog-tiles.
        (TileId(level=0, index=1234067), "tile/0/x001/x234/067"),
        (TileId(level=0, index=1234067, width=8), "tile/0/x001/x234/067.p/8"),
    ],
)
def test_paths_as_the_spec_writes_them(tile: TileId, path: str) -> None:
    assert tile.to_path() == path
    assert TileId.from_path(path) == tile


@given(
    level=st.integers(0, MAX_LEVEL),
    index=st.integers(0, 2**63 // TILE_WIDTH),
    width=st.integers(1, TILE_WIDTH),
)
def test_every_tile_round_trips(level: int, index: int, width: int) -> None:
    tile = TileId(level=level, index=index, width=width)
    assert TileId.from_path(tile.to_path()) == tile


@pytest.mark.parametrize(
    "path",
    [
        "",
        "tile",
        "tile/0",
        "tiles/0/000",
        "tile/0/1",
        "tile/0/0000",
        "tile/0/x000/001",
        "tile/0/001/002",
        "tile/0/x001",
        "tile/0/x1/000",
        "tile/0/000.p/0",
        "tile/0/000.p/256",
        "tile/0/000.p/07",
        "tile/0/000.p/",
        "tile/0/000.p",
        "tile/0/000/.p/3",
        "tile/00/000",
        "tile/8/000",
        "tile/-1/000",
        "tile/0/-01",
        "tile/0/abc",
        "tile/0/000/",
    ],
)
def test_every_other_spelling_is_refused(path: str) -> None:
    with pytest.raises(FormatError):
        TileId.from_path(path)


@pytest.mark.parametrize(
    ("level", "index", "width"),
    [(-1, 0, 1), (MAX_LEVEL + 1, 0, 1), (0, -1, 1), (0, 0, 0), (0, 0, 257)],
)
def test_impossible_tiles_cannot_be_made(level: int, index: int, width: int) -> None:
    with pytest.raises(FormatError):
        TileId(level=level, index=index, width=width)


def test_the_tree_size_a_tile_needs() -> None:
    assert TileId(level=0, index=0, width=1).needs_tree_size() == 1
    assert TileId(level=0, index=0).needs_tree_size() == 256
    assert TileId(level=0, index=2, width=3).needs_tree_size() == 515
    assert TileId(level=1, index=0, width=2).needs_tree_size() == 512
    assert TileId(level=1, index=1).needs_tree_size() == 2 * 256 * 256
    tile = TileId(level=2, index=3, width=5)
    assert (tile.node_height, tile.first_node) == (16, 768)
