"""The data directory, the SQLite database and its WAL are the owner's alone.

Checked under the most permissive umask (0): the modes must not depend on it.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.runtime import open_runtime
from service.settings import Settings


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.usefixtures("permissive_umask")
def test_new_data_directory_database_and_wal_are_owner_only(tmp_path: Path) -> None:
    data = tmp_path / "locker-data"
    runtime = open_runtime(Settings(data_dir=data))
    try:
        runtime.log.latest_checkpoint(runtime.database)  # a write: the WAL exists now
        database = data / "locker.sqlite3"
        wal = data / "locker.sqlite3-wal"
        assert wal.exists()
        assert _mode(data) == 0o700
        for path in (database, wal, data / "locker.sqlite3-shm", data / "log-signing-key"):
            assert _mode(path) == 0o600, (path.name, oct(_mode(path)))
        assert _mode(data / "store") == 0o700
    finally:
        runtime.close()


@pytest.mark.usefixtures("permissive_umask")
def test_an_existing_world_readable_deployment_is_tightened(tmp_path: Path) -> None:
    data = tmp_path / "locker-data"
    open_runtime(Settings(data_dir=data)).close()
    data.chmod(0o755)
    (data / "locker.sqlite3").chmod(0o644)
    runtime = open_runtime(Settings(data_dir=data))
    try:
        assert _mode(data) == 0o700
        assert _mode(data / "locker.sqlite3") == 0o600
    finally:
        runtime.close()
