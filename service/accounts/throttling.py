"""The security log and the throttle on failed authentication.

The throttle stops guessing, not users: a valid credential always authenticates (it
is checked first), and only failures count. They are limited per client address (as
the server sees it: forwarded headers count only from LOCKER_TRUSTED_PROXIES) and per
presented key prefix, so neither one address trying many keys nor many addresses
trying one key get far. The security log gets one row per client per window, naming
how many failures the previous window held, not one row per guess.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import structlog

from service.db.models import SecurityEvent

if TYPE_CHECKING:
    from service.runtime import Runtime

_log = structlog.get_logger("locker.security")
# Above this many tracked clients and prefixes, forget those with no recent failure.
_PRUNE_ABOVE = 10_000


@dataclass(frozen=True, slots=True, kw_only=True)
class FailureVerdict:
    """What to do about one failed authentication."""

    retry_after: int | None  # seconds, when the client or the key prefix is throttled
    record: bool  # whether this failure opens a new security-log row for its client
    earlier: int  # failures of the client's previous window not written as rows


class FailureThrottle:
    """Count failed authentications per client and per key prefix, in a sliding window.

    In memory, per process: it slows guessing down; it is not a ledger (the security
    log is). `limit` failures within `window` seconds throttle a client or a prefix
    until the oldest of them leaves the window.
    """

    def __init__(
        self, *, limit: int = 10, window: float = 60.0, now: Callable[[], float] = time.monotonic
    ) -> None:
        self._limit, self._window, self._now = limit, window, now
        self._failures: dict[str, deque[float]] = {}
        self._opened: dict[str, float] = {}  # client → when its current log row was written
        self._unrecorded: dict[str, int] = {}  # client → failures since that row
        self._lock = threading.Lock()

    def failed(self, *, client: str, key_prefix: str | None) -> FailureVerdict:
        """Count one failure; say whether it is throttled and whether to log a row."""
        keys = [f"client {client}"] + ([f"key {key_prefix}"] if key_prefix else [])
        with self._lock:
            now = self._now()
            waits = [self._wait(key, now) for key in keys]
            for key in keys:
                self._failures.setdefault(key, deque()).append(now)
            opened = self._opened.get(client)
            if opened is None or now - opened >= self._window:
                self._opened[client] = now
                earlier = self._unrecorded.pop(client, 0)
                record = True
            else:
                self._unrecorded[client] = self._unrecorded.get(client, 0) + 1
                earlier, record = 0, False
            if len(self._failures) > _PRUNE_ABOVE:
                self._prune(now)
        wait = max((w for w in waits if w is not None), default=None)
        return FailureVerdict(retry_after=wait, record=record, earlier=earlier)

    def _wait(self, key: str, now: float) -> int | None:
        """Seconds until `key` may fail again, or None if it is under the limit."""
        failures = self._failures.get(key)
        if failures is None:
            return None
        while failures and failures[0] <= now - self._window:
            failures.popleft()
        if len(failures) < self._limit:
            return None
        return int(failures[-self._limit] + self._window - now) + 1

    def _prune(self, now: float) -> None:
        """Forget clients and prefixes with no failure left in the window."""
        for key in list(self._failures):
            self._wait(key, now)  # drops the failures older than the window
            if not self._failures[key]:
                del self._failures[key]
        for client in [c for c, at in self._opened.items() if now - at >= 2 * self._window]:
            del self._opened[client]
            self._unrecorded.pop(client, None)


def record_security_event(runtime: Runtime, *, client: str, kind: str, detail: str) -> None:
    """Write one line to the security log (table and structured log)."""
    _log.warning(kind, client=client, detail=detail)
    with runtime.database.session() as session:
        session.add(
            SecurityEvent(
                at=datetime.now(UTC), client=client[:100], kind=kind, detail=detail[:1024]
            )
        )
