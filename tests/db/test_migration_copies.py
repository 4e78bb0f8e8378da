"""Migration 0012 keeps every evidence row, its references and its append-only guards."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.exc import DatabaseError, IntegrityError

from service.db import Database, open_database
from tests.databases import PostgresTemplate

_MIGRATIONS = Path(__file__).resolve().parents[2] / "service" / "db" / "migrations"
_NOW = datetime(2024, 5, 1, tzinfo=UTC)
_EVIDENCE = text(
    "INSERT INTO evidence (id, organisation_id, sha256, sha512, size, media_type, object_key, "
    "received_at, ingest_index{extra}) VALUES (:id, 'o1', 'aa', 'bb', 3, 'image/png', 'k', :now, "
    ":index{values})"
)


def _insert(database: Database, evidence_id: str, index: int, copy: int | None = None) -> None:
    extra, placeholders = (", copy_number", ", :copy") if copy is not None else ("", "")
    statement = text(_EVIDENCE.text.format(extra=extra, values=placeholders))
    with database.engine.begin() as connection:
        connection.execute(
            statement, {"id": evidence_id, "now": _NOW, "index": index, "copy": copy}
        )


def _before_0012_with_an_item(database: Database) -> None:
    database.migrate()
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    with database.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0011")
        connection.execute(text("INSERT INTO organisation VALUES ('o1', 'O', :now)"), {"now": _NOW})
        connection.execute(
            text("INSERT INTO user_account VALUES ('u1', 'o1', 'a@example.org', 'admin', :now)"),
            {"now": _NOW},
        )
    _insert(database, "e1", 1)
    with database.engine.begin() as connection:
        connection.execute(
            text("INSERT INTO submission VALUES ('s1', 'e1', 'o1', 'u1', 'a.png', '{}', :now, 2)"),
            {"now": _NOW},
        )


def _copies_after_upgrade(url: str) -> None:
    database = open_database(url)
    _before_0012_with_an_item(database)
    database.migrate()
    with database.engine.begin() as connection:
        rows = connection.execute(text("SELECT id, copy_number FROM evidence")).all()
        referenced = connection.execute(text("SELECT evidence_id FROM submission")).scalar_one()
    assert [tuple(r) for r in rows] == [("e1", 0)] and referenced == "e1"
    _insert(database, "e2", 3, copy=1)  # a separate record of the same bytes
    with pytest.raises(IntegrityError):
        _insert(database, "e3", 4, copy=1)
    with pytest.raises(DatabaseError, match="append-only"), database.engine.begin() as connection:
        connection.execute(text("UPDATE evidence SET size = 4 WHERE id = 'e1'"))
    with pytest.raises(IntegrityError), database.engine.begin() as connection:
        connection.execute(
            text("INSERT INTO submission VALUES ('s2', 'nope', 'o1', 'u1', 'b', '{}', :now, 5)"),
            {"now": _NOW},
        )
    database.dispose()


def test_sqlite_keeps_items_references_and_guards(tmp_path: Path) -> None:
    _copies_after_upgrade(f"sqlite:///{tmp_path / 'db.sqlite3'}")


def test_postgres_keeps_items_references_and_guards(postgres_template: PostgresTemplate) -> None:
    with postgres_template.fresh() as url:
        _copies_after_upgrade(url)
