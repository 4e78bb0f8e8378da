"""How `locker serve` runs uvicorn: which forwarded headers count, and a header deadline.

uvicorn (0.54) has no deadline for a request's header: its keep-alive timer runs only
between requests and stops at the first byte, so a client sending a header byte every
few seconds holds a connection (and a file descriptor) forever. `HeaderDeadline` is
uvicorn's own h11 protocol plus one timer, armed when a connection opens and after each
response, cancelled when a complete request header has arrived.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from service.settings import Settings


class HeaderDeadline(H11Protocol):
    """uvicorn's h11 protocol, closing connections whose header arrives too slowly."""

    header_timeout: float = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        waiting = self.cycle
        super().data_received(data)
        if self.cycle is not waiting:  # a complete header made a new request cycle
            self._disarm()

    def on_response_complete(self) -> None:
        waiting = self.cycle
        self._arm()  # the next request's header is due in time too
        super().on_response_complete()
        if self.cycle is not waiting:  # a pipelined request was already complete
            self._disarm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._header_timer = self.loop.call_later(self.header_timeout, self._expire)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _expire(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            self.logger.info("closing a connection whose request header came too slowly")
            self.transport.close()


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """uvicorn settings that follow ours: trusted proxies and the header deadline."""
    protocol = type(
        "HeaderDeadline", (HeaderDeadline,), {"header_timeout": settings.header_timeout_seconds}
    )
    proxies = settings.trusted_proxy_list
    return {
        "http": protocol,
        # Without trusted proxies uvicorn must not read X-Forwarded-* at all: its default
        # believes them from 127.0.0.1, so any local client could pick its own address.
        "proxy_headers": bool(proxies),
        "forwarded_allow_ips": ",".join(proxies) if proxies else "",
    }
