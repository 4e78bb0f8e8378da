"""Migration 0011: tokens kept across it, one per checkpoint and authority after it, and
the table still append-only (SQLite rebuilds it, so its guards must come back)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, IntegrityError

from service.db import open_database
from tests.databases import PostgresTemplate

_MIGRATIONS = Path(__file__).resolve().parents[2] / "service" / "db" / "migrations"
_NOW = datetime(2026, 5, 1, tzinfo=UTC)
_TOKEN = text(
    "INSERT INTO checkpoint_timestamp (id, checkpoint_size, tsa_url, response, sha256, "
    "attested_at, authority, serial_number, fetched_at) VALUES (:id, 1, :url, :response, "
    "'ab', :now, 'CN=TSA', '1', :now)"
)


def _tokens_survive_and_one_per_authority(url: str) -> None:
    database = open_database(url)
    database.migrate()
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    with database.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0009")
        connection.execute(
            text("INSERT INTO checkpoint VALUES (1, :root, 'note', :now)"),
            {"root": b"r", "now": _NOW},
        )
        connection.execute(
            _TOKEN, {"id": 7, "url": "https://a.example/tsr", "response": b"A", "now": _NOW}
        )
    database.migrate()
    with database.engine.begin() as connection:
        kept = connection.execute(text("SELECT id, tsa_url, response FROM checkpoint_timestamp"))
        assert [tuple(row) for row in kept] == [(7, "https://a.example/tsr", b"A")]
        connection.execute(
            _TOKEN, {"id": 8, "url": "https://b.example/tsr", "response": b"B", "now": _NOW}
        )
    with pytest.raises(IntegrityError), database.engine.begin() as connection:
        connection.execute(
            _TOKEN, {"id": 9, "url": "https://a.example/tsr", "response": b"C", "now": _NOW}
        )
    for statement in (
        "UPDATE checkpoint_timestamp SET response = 'x'",
        "DELETE FROM checkpoint_timestamp",
    ):
        with pytest.raises(DBAPIError, match="append-only"), database.engine.begin() as connection:
            connection.execute(text(statement))
    database.dispose()


def test_sqlite(tmp_path: Path) -> None:
    _tokens_survive_and_one_per_authority(f"sqlite:///{tmp_path / 'db.sqlite3'}")


def test_postgres(postgres_template: PostgresTemplate) -> None:
    with postgres_template.fresh() as url:
        _tokens_survive_and_one_per_authority(url)
