"""Serving the log's tree as C2SP tiles, read from the nodes every append stores.

Every append stores the perfect subtrees it completes (`tree_node`), so the hashes of a
tile are rows at one height, in index order: a tile is one indexed range read, whatever
the size of the log.
"""

from __future__ import annotations

from sqlmodel import Session, col, select

from service.core.tiles import TileId
from service.db.models import LogHead, TreeNode
from service.errors import NotFound


def read_tile(session: Session, tile: TileId) -> bytes:
    """The tile's hashes, concatenated; NotFound until the log has grown that far."""
    size = session.exec(select(LogHead.size).where(LogHead.id == 1)).one()
    if tile.needs_tree_size() > size:
        raise NotFound(f"{tile.to_path()} needs a tree of {tile.needs_tree_size()} entries")
    first = tile.first_node
    hashes = session.exec(
        select(TreeNode.hash)
        .where(TreeNode.level == tile.node_height)
        .where(col(TreeNode.index) >= first, col(TreeNode.index) < first + tile.width)
        .order_by(col(TreeNode.index))
    ).all()
    if len(hashes) != tile.width:
        # Every node below the committed size is stored; a gap is damage for fsck to find.
        raise NotFound(f"{tile.to_path()}: {len(hashes)} of {tile.width} nodes are stored")
    return b"".join(hashes)
