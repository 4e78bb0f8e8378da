"""The Alembic migrations build exactly the schema the models describe."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from service.db import open_database
from tests.databases import PostgresTemplate

_MIGRATIONS = Path(__file__).resolve().parents[2] / "service" / "db" / "migrations"


def _check(url: str) -> None:
    database = open_database(url)
    database.migrate()
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
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
