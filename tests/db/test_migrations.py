"""The Alembic migrations build exactly the schema the models describe."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from service.accounts.people import signed_members
from service.db import Database, open_database
from service.db.models import User
from service.errors import ConfigurationError
from tests.databases import PostgresTemplate

_MIGRATIONS = Path(__file__).resolve().parents[2] / "service" / "db" / "migrations"


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    return config


def _check(url: str) -> None:
    database = open_database(url)
    database.migrate()
    config = _config()
    with database.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.check(config)  # raises if the models and the migrations differ
    database.dispose()


def test_sqlite_schema_matches_models(tmp_path: Path) -> None:
    _check(f"sqlite:///{tmp_path / 'db.sqlite3'}")


def test_postgres_schema_matches_models(postgres_template: PostgresTemplate) -> None:
    with postgres_template.fresh() as url:
        _check(url)


def test_migrating_twice_is_harmless(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    _check(url)
    _check(url)


_NOW = datetime(2024, 5, 1, tzinfo=UTC)
_GRANT = text(
    "INSERT INTO access_grant (id, subject, organisation_id, user_id, granted_by, granted_at, "
    "custody_index, revoked_at) VALUES (:id, 'evidence:e1', 'o1', 'u1', 'u1', :now, :index, "
    ":revoked_at)"
)


def _at_0008_with_a_member(database: Database) -> None:
    database.migrate()
    config = _config()
    with database.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0008")
        connection.execute(text("INSERT INTO organisation VALUES ('o1', 'O', :now)"), {"now": _NOW})
        connection.execute(
            text("INSERT INTO user_account VALUES ('u1', 'o1', 'a@example.org', 'admin', :now)"),
            {"now": _NOW},
        )


def _grant(database: Database, grant_id: str, index: int, *, revoked: bool = False) -> None:
    with database.engine.begin() as connection:
        connection.execute(
            _GRANT,
            {"id": grant_id, "now": _NOW, "index": index, "revoked_at": _NOW if revoked else None},
        )


def _revoke(database: Database, grant_id: str) -> None:
    with database.engine.begin() as connection:
        connection.execute(
            text("UPDATE access_grant SET revoked_at = :now WHERE id = :id"),
            {"now": _NOW, "id": grant_id},
        )


def _one_active_grant_per_member_and_item(url: str) -> None:
    database = open_database(url)
    _at_0008_with_a_member(database)
    _grant(database, "g1", 1)
    _grant(database, "g2", 2)
    _grant(database, "g3", 3, revoked=True)
    with pytest.raises(ConfigurationError, match=r"1 member and item pair\(s\) \(user u1 on"):
        database.migrate()
    _revoke(database, "g2")
    database.migrate()
    with pytest.raises(IntegrityError):
        _grant(database, "g4", 4)
    _grant(database, "g5", 5, revoked=True)
    database.dispose()


def test_sqlite_refuses_a_second_active_grant(tmp_path: Path) -> None:
    _one_active_grant_per_member_and_item(f"sqlite:///{tmp_path / 'db.sqlite3'}")


def test_postgres_refuses_a_second_active_grant(postgres_template: PostgresTemplate) -> None:
    with postgres_template.fresh() as url:
        _one_active_grant_per_member_and_item(url)


def test_replicas_starting_together_migrate_once(postgres_template: PostgresTemplate) -> None:
    """Two processes migrating one empty database at once: one migrates, one waits."""
    with postgres_template.fresh() as url:
        empty = url.rsplit("/", 1)[0] + "/" + f"empty_{uuid.uuid4().hex[:8]}"
        name = empty.rsplit("/", 1)[1]
        with psycopg.connect(postgres_template.url("postgres"), autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        try:
            databases = [open_database(empty) for _ in range(2)]
            failures: list[BaseException] = []

            def migrate(database: Database) -> None:
                try:
                    database.migrate()
                except BaseException as exc:
                    failures.append(exc)

            threads = [threading.Thread(target=migrate, args=(d,), daemon=True) for d in databases]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=60)
            # Without the advisory lock the two upgrades block each other or collide.
            assert not any(thread.is_alive() for thread in threads), "migrations deadlocked"
            assert failures == []
            _check(empty)
        finally:
            for database in databases:
                database.dispose()
            with psycopg.connect(postgres_template.url("postgres"), autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _a_member_from_before_names(url: str) -> None:
    """0016 keeps members added earlier, nameless and unsigned; its downgrade keeps them too."""
    database = open_database(url)
    _at_0008_with_a_member(database)
    database.migrate()
    with database.session() as session:
        [member] = session.exec(select(User)).all()
        # Named by the e-mail alone: their entry signed no name.
        assert signed_members(session, [member]) == {}
    assert (member.email, member.name, member.custody_index) == ("a@example.org", None, None)
    config = _config()
    with database.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0015")
        kept = connection.execute(text("SELECT id, email FROM user_account")).all()
    assert [tuple(row) for row in kept] == [("u1", "a@example.org")]
    database.dispose()


def test_sqlite_keeps_members_from_before_names(tmp_path: Path) -> None:
    _a_member_from_before_names(f"sqlite:///{tmp_path / 'db.sqlite3'}")


def test_postgres_keeps_members_from_before_names(postgres_template: PostgresTemplate) -> None:
    with postgres_template.fresh() as url:
        _a_member_from_before_names(url)
