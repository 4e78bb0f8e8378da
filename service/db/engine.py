"""Engine and session factory, with the durability checks an evidence store needs."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from service.errors import ConfigurationError

_MIGRATIONS = Path(__file__).parent / "migrations"
_MIGRATING = 0x6C6F636B6D696772  # the advisory lock key of a running migration ("lockmigr")
_PRIVATE_DIR = 0o700
_PRIVATE_FILE = 0o600
# synchronous_commit levels at least as strong as "on" (PostgreSQL docs, §20.5.1).
_DURABLE_COMMIT = {"on", "remote_apply"}
# libpq connection options (PostgreSQL docs, §32.1.2). Without connect_timeout an
# unreachable server holds a request for the operating system's TCP timeout (minutes);
# keepalives find a connection whose server vanished (a failover, a dropped NAT entry)
# in about a minute instead of when the kernel gives up, hours later.
_POSTGRES_CONNECT_ARGS = {
    "connect_timeout": 10,
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
    # The same on the server's side: a backend whose client vanished (a partitioned
    # host) ends within about a minute, and with it the locks it held — a reserved log
    # index, or the sequencer's lead — instead of after the kernel's two hours.
    "options": "-c tcp_keepalives_idle=30 -c tcp_keepalives_interval=10 -c tcp_keepalives_count=3",
}

_AFTER_COMMIT = "after_commit"  # the key of the hooks in Session.info

_P = ParamSpec("_P")
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class Database:
    """An engine plus the way to open sessions on it."""

    engine: Engine

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session whose transaction commits on success and rolls back on error.

        Once it has committed, the hooks registered with `after_commit` run, in order.
        """
        with Session(self.engine, expire_on_commit=False) as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise
            for hook in session.info.pop(_AFTER_COMMIT, {}).values():
                hook()

    @contextmanager
    def snapshot(self) -> Iterator[Session]:
        """A session whose every read sees one consistent snapshot of the database.

        On PostgreSQL that is REPEATABLE READ (READ COMMITTED, the default, takes a new
        snapshot per statement, so a check reading two tables while writers commit could
        see a record without its log entry); SQLite's transactions already are one.
        """
        with self.session() as session:
            if self.engine.dialect.name == "postgresql":
                session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
            yield session

    def migrate(self) -> None:
        """Bring the schema to the newest Alembic revision."""
        config = Config()
        config.set_main_option("script_location", str(_MIGRATIONS))
        with self.engine.begin() as connection:
            if self.engine.dialect.name == "postgresql":
                # Replicas start together: one migrates, the others wait here and then
                # find the schema current (the lock ends with the transaction).
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATING})
            config.attributes["connection"] = connection
            command.upgrade(config, "head")

    def check_durability(self) -> None:
        """Refuse to run on a PostgreSQL that could lose acknowledged commits."""
        if self.engine.dialect.name != "postgresql":
            return
        with self.engine.connect() as connection:
            fsync = connection.execute(text("SHOW fsync")).scalar_one()
            commit = connection.execute(text("SHOW synchronous_commit")).scalar_one()
        if fsync != "on":
            raise ConfigurationError(
                f"PostgreSQL has fsync={fsync}: an acknowledged upload could be lost; set fsync=on"
            )
        if commit not in _DURABLE_COMMIT:
            raise ConfigurationError(
                f"PostgreSQL has synchronous_commit={commit}: an acknowledged upload could "
                "be lost; set synchronous_commit=on"
            )

    def dispose(self) -> None:
        self.engine.dispose()


def after_commit(session: Session, name: str, hook: Callable[[], None]) -> None:
    """Run `hook` once `session` (opened by `Database.session`) has committed.

    A later registration under the same `name` replaces the earlier one.
    """
    session.info.setdefault(_AFTER_COMMIT, {})[name] = hook


def rerun_if_raced(use_case: Callable[_P, _T]) -> Callable[_P, _T]:
    """Run a one-transaction use case once more if a concurrent one wrote the same row first.

    Two overlapping requests (on PostgreSQL; SQLite runs writes one at a time) can both
    find a row missing and both write it; the later one fails on a unique constraint and
    its whole transaction, custody entry included, rolls back. Run again, it sees the
    earlier one's row and answers as a repeated request would: 409, 422, or the same
    success. A violation that is no race fails again and propagates. The use case must
    write nothing outside its transaction.
    """

    @functools.wraps(use_case)
    def run(*args: _P.args, **kwargs: _P.kwargs) -> _T:
        try:
            return use_case(*args, **kwargs)
        except IntegrityError:
            return use_case(*args, **kwargs)

    return run


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL with synchronous=FULL: a committed transaction survives a power cut.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()
    # Let SQLAlchemy's begin event decide how transactions start (see below).
    dbapi_connection.isolation_level = None


def _sqlite_begin_immediate(connection: Any) -> None:
    # Take the write lock at BEGIN: two deferred transactions that both read the log
    # size and then write would otherwise fail with "database is locked".
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def _private_sqlite_files(database: Path) -> None:
    """Create the database owner-only (0600), whatever the umask, and tighten old files.

    SQLite gives the WAL and shared-memory files it creates the database file's mode.
    """
    database.parent.mkdir(mode=_PRIVATE_DIR, parents=True, exist_ok=True)
    try:
        descriptor = os.open(database, os.O_RDWR | os.O_CREAT, _PRIVATE_FILE)
    except OSError:
        return  # SQLite cannot open it either, and says so on first use (readiness reports it)
    try:
        os.fchmod(descriptor, _PRIVATE_FILE)
    finally:
        os.close(descriptor)
    for suffix in ("-wal", "-shm", "-journal"):
        companion = database.with_name(database.name + suffix)
        if companion.exists():
            companion.chmod(_PRIVATE_FILE)


def _postgres_connect_args(url_options: str | tuple[str, ...] | None) -> dict[str, object]:
    """Our libpq options, after (never instead of) any `options` the URL gives."""
    args: dict[str, object] = dict(_POSTGRES_CONNECT_ARGS)
    given = " ".join([url_options] if isinstance(url_options, str) else url_options or ())
    if given:
        args["options"] = f"{given} {args['options']}"
    return args


DEFAULT_POOL_SIZE = 30
DEFAULT_POOL_TIMEOUT = 30.0


def open_database(
    url: str, *, pool_size: int = DEFAULT_POOL_SIZE, pool_timeout: float = DEFAULT_POOL_TIMEOUT
) -> Database:
    """Create the engine for `url` (sqlite:/// or postgresql+psycopg://).

    On PostgreSQL at most `pool_size` connections, each kept open once made: a pool that
    let busy moments overflow it closed each extra connection as it came back, so under
    load the server opened (and PostgreSQL forked) dozens of connections a second. A
    checkout waits up to `pool_timeout` seconds for a connection to come back.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database:
            _private_sqlite_files(Path(parsed.database))
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin_immediate)
    else:
        engine = create_engine(
            url,
            pool_pre_ping=True,
            pool_size=pool_size,
            max_overflow=0,
            pool_timeout=pool_timeout,
            connect_args=_postgres_connect_args(parsed.query.get("options")),
        )
    return Database(engine)
