"""The security log and the throttle on failed authentication."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import structlog

from service.db.models import SecurityEvent
from service.errors import Throttled

if TYPE_CHECKING:
    from service.runtime import Runtime

_log = structlog.get_logger("locker.security")


class FailureThrottle:
    """Refuse a client for a while after too many failed authentications.

    In memory, per process: it slows guessing down; it is not a ledger (the security
    log is). `limit` failures within `window` seconds block the client until the
    oldest of them leaves the window.
    """

    def __init__(
        self, *, limit: int = 10, window: float = 60.0, now: Callable[[], float] = time.monotonic
    ) -> None:
        self._limit, self._window, self._now = limit, window, now
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def check(self, client: str) -> None:
        """Raise Throttled if `client` must wait."""
        with self._lock:
            failures = self._recent(client)
            if len(failures) >= self._limit:
                wait = int(failures[0] + self._window - self._now()) + 1
                raise Throttled("too many failed authentications; try later", retry_after=wait)

    def failed(self, client: str) -> None:
        with self._lock:
            self._recent(client).append(self._now())

    def _recent(self, client: str) -> deque[float]:
        failures = self._failures.setdefault(client, deque())
        while failures and failures[0] <= self._now() - self._window:
            failures.popleft()
        return failures


def record_security_event(runtime: Runtime, *, client: str, kind: str, detail: str) -> None:
    """Write one line to the security log (table and structured log)."""
    _log.warning(kind, client=client, detail=detail)
    with runtime.database.session() as session:
        session.add(
            SecurityEvent(
                at=datetime.now(UTC), client=client[:100], kind=kind, detail=detail[:1024]
            )
        )
