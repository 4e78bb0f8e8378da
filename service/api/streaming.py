"""A streaming response that releases what it streams from as soon as it ends.

starlette's StreamingResponse never closes a synchronous iterator: when the client
leaves, the sending task is cancelled and the store's open file or pooled S3 connection
waits for the garbage collector. This one closes it when the response ends, however it
ends (done, client gone, connection broken).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send


class ClosingStreamingResponse(StreamingResponse):
    def __init__(
        self,
        content: Iterator[bytes],
        *,
        headers: Mapping[str, str] | None = None,
        media_type: str | None = None,
    ) -> None:
        super().__init__(content, headers=headers, media_type=media_type)
        self._source = content

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            close = getattr(self._source, "close", None)  # a store's stream, a generator
            if callable(close):
                close()
