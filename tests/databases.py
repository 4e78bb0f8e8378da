"""Real databases for the tests: a migrated PostgreSQL template, cloned per test.

PostgreSQL comes from LOCKER_TEST_DATABASE_URL (default: the local server). When it
cannot be reached the tests fail: CI must never pass without having used it.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg import sql

from service.db import open_database

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"


def admin_url() -> str:
    return os.environ.get("LOCKER_TEST_DATABASE_URL", DEFAULT_URL)


def _with_database(url: str, name: str) -> str:
    base, _, _ = url.rpartition("/")
    return f"{base}/{name}"


def _admin(statement: sql.Composable) -> None:
    try:
        with psycopg.connect(admin_url(), autocommit=True, connect_timeout=10) as connection:
            connection.execute(statement)
    except psycopg.OperationalError as exc:
        raise RuntimeError(
            f"PostgreSQL at {admin_url()} is unavailable ({exc}); set LOCKER_TEST_DATABASE_URL"
        ) from None


class PostgresTemplate:
    """A database migrated once, then copied (fast) for every test that needs one."""

    def __init__(self) -> None:
        self.name = f"locker_template_{uuid.uuid4().hex[:12]}"
        _admin(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.name)))
        database = open_database(self.url(self.name))
        database.migrate()
        database.dispose()

    @staticmethod
    def url(name: str) -> str:
        return _with_database(admin_url(), name)

    @contextmanager
    def fresh(self) -> Iterator[str]:
        """A new database with the current schema; dropped afterwards."""
        name = f"locker_test_{uuid.uuid4().hex[:12]}"
        _admin(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(self.name)
            )
        )
        try:
            yield self.url(name)
        finally:
            _admin(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    def drop(self) -> None:
        _admin(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(self.name)))


def allow_connections(database: str, allowed: bool) -> None:
    """Open or close `database` to new connections; closing also ends the open ones (an
    outage as its clients see it)."""
    with psycopg.connect(admin_url(), autocommit=True) as admin:
        admin.execute(
            sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS {}").format(
                sql.Identifier(database), sql.Literal(allowed)
            )
        )
        if not allowed:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (database,),
            )
