"""Media type sniffing from the bytes themselves; the client's claim is never trusted."""

from __future__ import annotations

import puremagic

_FALLBACK = "application/octet-stream"


def sniff_media_type(head: bytes) -> str:
    """The media type the first bytes of a file reveal."""
    if not head:
        return _FALLBACK
    try:
        matches = puremagic.magic_string(head)
    except (puremagic.PureError, ValueError):
        matches = []
    for match in matches:
        # A one-byte signature (`{` for JSON) is met by one file in 256 of any kind,
        # random bytes too: too weak to name what a piece of evidence is.
        if match.mime_type and len(match.byte_match) > 1:
            return str(match.mime_type)
    if _looks_like_text(head):
        return "text/plain; charset=utf-8"
    return _FALLBACK


def _looks_like_text(head: bytes) -> bool:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A multi-byte character may be cut at the end of the sniffed window.
        if exc.start < len(head) - 3:
            return False
        text = head[: exc.start].decode("utf-8")
    return all(c.isprintable() or c in "\r\n\t\f" for c in text)
