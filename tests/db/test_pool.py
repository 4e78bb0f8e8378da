"""The PostgreSQL connection pool keeps the connections it makes, up to its size."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import text
from sqlalchemy.exc import TimeoutError as PoolTimeout

from service.db import Database, open_database
from service.errors import ConfigurationError
from service.settings import load_settings
from tests.databases import PostgresTemplate

_SIZE = 8


@pytest.fixture
def database(postgres_template: PostgresTemplate) -> Iterator[Database]:
    with postgres_template.fresh() as url:
        database = open_database(url, pool_size=_SIZE, pool_timeout=0.2)
        yield database
        database.dispose()


def _backends_of_busy_moment(database: Database, sessions: int) -> set[int]:
    """The backend pids of `sessions` sessions open at once."""
    together = threading.Barrier(sessions)
    pids: set[int] = set()

    def hold() -> None:
        with database.engine.connect() as connection:
            pids.add(int(connection.execute(text("SELECT pg_backend_pid()")).scalar_one()))
            together.wait(timeout=30)

    threads = [threading.Thread(target=hold) for _ in range(sessions)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return pids


def test_busy_moments_reuse_the_connections_of_the_last_one(database: Database) -> None:
    first = _backends_of_busy_moment(database, _SIZE)
    assert len(first) == _SIZE
    # A pool that overflowed closed its extra connections as they came back, and opened
    # new ones (a new backend each) at the next busy moment.
    assert _backends_of_busy_moment(database, _SIZE) == first


def test_the_pool_never_holds_more_than_its_size(database: Database) -> None:
    held = [database.engine.connect() for _ in range(_SIZE)]
    try:
        started = time.monotonic()
        with pytest.raises(PoolTimeout, match="QueuePool limit of size 8 overflow 0"):
            database.engine.connect()
        # Its own wait (0.2 s), far short of the 30 s it would be without `pool_timeout`.
        assert time.monotonic() - started < 15
    finally:
        for connection in held:
            connection.close()


def test_the_pool_size_and_wait_are_settings() -> None:
    assert load_settings(database_pool_size=12).database_pool_size == 12
    assert load_settings(database_pool_timeout=2.5).database_pool_timeout == 2.5
    with pytest.raises(ConfigurationError, match="LOCKER_DATABASE_POOL_TIMEOUT"):
        load_settings(database_pool_timeout=0)
    with pytest.raises(ConfigurationError, match=r"LOCKER_DATABASE_POOL_SIZE: .* greater than"):
        load_settings(database_pool_size=1)
