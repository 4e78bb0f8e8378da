"""A streaming response that releases what it streams from as soon as it ends.

starlette's StreamingResponse never closes a synchronous iterator: when the client
leaves, the sending task is cancelled and the store's open file or pooled S3 connection
waits for the garbage collector. This one closes it when the response ends, however it
ends (done, client gone, connection broken).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime

from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from service.evidence.ranges import entity_tag, http_date
from service.evidence.reading import ContentRead


class ClosingStreamingResponse(StreamingResponse):
    def __init__(
        self,
        content: Iterator[bytes],
        *,
        headers: Mapping[str, str] | None = None,
        media_type: str | None = None,
        status_code: int = 200,
    ) -> None:
        super().__init__(content, status_code=status_code, headers=headers, media_type=media_type)
        self._source = content

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            close = getattr(self._source, "close", None)  # a store's stream, a generator
            if callable(close):
                close()


def download(
    read: ContentRead,
    *,
    size: int,
    sha256: str,
    last_modified: datetime,
    media_type: str,
    headers: Mapping[str, str],
) -> ClosingStreamingResponse:
    """A stored object's bytes: 200 whole, or 206 with the one range asked for.

    Either way the answer names the version (a strong ETag from the SHA-256, and the
    time it was stored) so that a client can resume with If-Range (RFC 9110 §13.1.5).
    """
    common = {
        "Accept-Ranges": "bytes",
        "ETag": entity_tag(sha256),
        "Last-Modified": http_date(last_modified),
    }
    if read.span is None:
        common["Content-Length"] = str(size)
        return ClosingStreamingResponse(
            read.chunks, media_type=media_type, headers={**headers, **common}
        )
    common["Content-Length"] = str(read.span.length)
    common["Content-Range"] = read.span.content_range()
    return ClosingStreamingResponse(
        read.chunks, media_type=media_type, headers={**headers, **common}, status_code=206
    )
