"""A real, migrated SQLite database per test and a custody log over it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from service.core.checkpoint import NoteSigner
from service.custody import CustodyLog
from service.db import Database, open_database

ORIGIN = "locker.example/custody-test"


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Database]:
    database = open_database(f"sqlite:///{tmp_path / 'locker.db'}")
    database.migrate()
    yield database
    database.dispose()


@pytest.fixture
def log() -> CustodyLog:
    return CustodyLog(signer=NoteSigner.generate(ORIGIN), origin=ORIGIN)
