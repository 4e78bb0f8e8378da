"""RFC 3161 timestamps of checkpoints against a real (test) TSA over HTTP: a token is
stored only once it verifies, once per checkpoint, and a failing TSA costs nothing."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import structlog
from sqlmodel import Session
from structlog.testing import LogCapture

from service.core.timestamp import verify_timestamp
from service.custody import CustodyLog, timestamps
from service.custody.timestamps import (
    list_timestamps,
    timestamp_checkpoint,
    timestamp_latest,
    timestamp_periodically,
)
from service.db import Database, open_database
from service.errors import InvalidInput
from service.runtime import Runtime, Tsa
from service.settings import Settings
from service.storage import FilesystemStore
from tests.tsa import Authority, TsaServer, run_tsa


def _runtime(
    tmp_path: Path,
    database: Database,
    log: CustodyLog,
    tsa: TsaServer | None,
    *,
    roots: Authority | None = None,
) -> Runtime:
    trusted = roots or (tsa.authority if tsa else None)
    return Runtime(
        settings=Settings(data_dir=tmp_path),
        database=database,
        store=FilesystemStore(tmp_path / "store"),
        log=log,
        tsa=None
        if tsa is None or trusted is None
        else Tsa(
            url=tsa.url,
            ca_pem=trusted.ca_pem(),
            roots=(trusted.ca,),
            timeout=30,
            interval=0.01,
        ),
    )


@pytest.fixture
def logged(monkeypatch: pytest.MonkeyPatch) -> LogCapture:
    """The events the timestamping module logs."""
    capture = LogCapture()
    monkeypatch.setattr(timestamps, "_log", structlog.wrap_logger(None, processors=[capture]))
    return capture


@pytest.fixture
def tsa() -> Iterator[TsaServer]:
    with run_tsa() as server:
        yield server


def test_without_a_tsa_nothing_is_timestamped(
    tmp_path: Path, database: Database, log: CustodyLog
) -> None:
    runtime = _runtime(tmp_path, database, log, None)
    assert timestamp_latest(runtime) is None
    assert list_timestamps(runtime, 0) == []


def test_a_token_is_verified_stored_and_reused(
    tmp_path: Path, database: Database, log: CustodyLog, tsa: TsaServer
) -> None:
    runtime = _runtime(tmp_path, database, log, tsa)
    token = timestamp_latest(runtime)
    assert token is not None
    checkpoint = log.latest_checkpoint(database)
    attested = verify_timestamp(token.response, checkpoint.note.encode(), roots=[tsa.authority.ca])
    assert (token.checkpoint_size, token.sha256, token.tsa_url) == (0, attested.sha256, tsa.url)
    assert token.authority == attested.authority
    assert [t.id for t in list_timestamps(runtime, 0)] == [token.id]

    again = timestamp_latest(runtime)
    assert again is not None and again.id == token.id
    assert tsa.authority.requests == 1  # the stored token, not a second request


class _Oversized:
    """A TSA answering with more bytes than any token needs."""

    requests = 0

    def respond(self, request_der: bytes) -> bytes:
        return b"\x30" * (1024 * 1024 + 1)


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        ("down", "HTTPStatusError: Server error '503"),
        ("untrusted", "signature or certificate does not hold"),
        ("oversized", "the TSA's reply exceeds 1048576 bytes"),
    ],
)
def test_a_failing_tsa_is_logged_and_nothing_is_stored(
    tmp_path: Path,
    database: Database,
    log: CustodyLog,
    tsa: TsaServer,
    fault: str,
    error: str,
    logged: LogCapture,
) -> None:
    roots = Authority.create("Another") if fault == "untrusted" else None
    runtime = _runtime(tmp_path, database, log, tsa, roots=roots)
    tsa.down = fault == "down"
    if fault == "oversized":
        tsa.authority = _Oversized()  # type: ignore[assignment]
    assert timestamp_latest(runtime) is None
    assert list_timestamps(runtime, 0) == []
    [event] = logged.entries
    assert (event["event"], event["log_level"], event["size"]) == (
        "checkpoint not timestamped",
        "warning",
        0,
    )
    assert error in event["error"]


def test_a_negative_tree_size_is_refused(
    tmp_path: Path, database: Database, log: CustodyLog
) -> None:
    with pytest.raises(InvalidInput, match="tree_size must be >= 0, got -1"):
        list_timestamps(_runtime(tmp_path, database, log, None), -1)


class _RacedDatabase:
    """The real database, where another worker stores a token for the same checkpoint
    just before ours is stored."""

    def __init__(self, database: Database, rival: Runtime) -> None:
        self._database = database
        self._rival = rival
        self.sessions = 0

    @contextmanager
    def session(self) -> Iterator[Session]:
        self.sessions += 1
        if self.sessions == 2:  # after our lookup and request, before our insert
            timestamp_latest(self._rival)
        with self._database.session() as session:
            yield session


def test_a_token_stored_concurrently_is_the_one_returned(
    tmp_path: Path, database: Database, log: CustodyLog, tsa: TsaServer
) -> None:
    rival = _runtime(tmp_path, database, log, tsa)
    raced = _RacedDatabase(database, rival)
    runtime = _runtime(tmp_path, raced, log, tsa)  # type: ignore[arg-type]
    returned = timestamp_checkpoint(runtime, log.latest_checkpoint(database))
    stored = list_timestamps(rival, 0)
    assert tsa.authority.requests == 2
    assert len(stored) == 1
    assert returned is not None and returned.id == stored[0].id


async def test_the_periodic_loop_outlives_failures_until_cancelled(
    tmp_path: Path, log: CustodyLog, tsa: TsaServer, logged: LogCapture
) -> None:
    # No schema yet: every round fails until the database is migrated.
    database = open_database(f"sqlite:///{tmp_path / 'late.db'}")
    runtime = _runtime(tmp_path, database, log, tsa)
    loop = asyncio.create_task(timestamp_periodically(runtime))
    try:
        while len(logged.entries) < 2:
            await asyncio.sleep(0.01)
        assert {e["event"] for e in logged.entries} == {"timestamping failed"}
        assert tsa.authority.requests == 0
        database.migrate()
        while tsa.authority.requests == 0:
            await asyncio.sleep(0.01)
        while not list_timestamps(runtime, 0):
            await asyncio.sleep(0.01)
    finally:
        loop.cancel()
        with pytest.raises(asyncio.CancelledError):
            await loop
        database.dispose()
    assert loop.cancelled()
