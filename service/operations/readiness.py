"""Readiness: whether this process can serve requests now (its database and store answer).

Liveness (`/healthz`) asks nothing of either: a process that is up but cut off from
PostgreSQL or S3 should be taken out of rotation, not restarted.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from service.db import Database
from service.errors import Error, one_line
from service.storage import ObjectStore

if TYPE_CHECKING:
    from service.runtime import Runtime

# A probe that takes longer than this reports the dependency as unavailable; load
# balancers probe every few seconds and must not pile up waiting checks.
CHECK_TIMEOUT_SECONDS = 5.0


def check_database(database: Database) -> None:
    """Run `SELECT 1` on a pooled connection; raises what the driver raises."""
    with database.engine.connect() as connection:
        connection.execute(text("SELECT 1"))


def check_store(store: ObjectStore) -> None:
    """List the first staging object: one cheap request; raises StorageError."""
    next(iter(store.iter_staged()), None)


async def unavailable(runtime: Runtime) -> dict[str, str]:
    """Each dependency's state, "ok" or one line saying why not."""
    database, storage = await asyncio.gather(
        _probe(lambda: check_database(runtime.database)),
        _probe(lambda: check_store(runtime.store)),
    )
    return {"database": database, "storage": storage}


async def _probe(check: Callable[[], None]) -> str:
    try:
        # A thread stuck past the deadline is abandoned; socket timeouts end it later.
        await asyncio.wait_for(asyncio.to_thread(check), CHECK_TIMEOUT_SECONDS)
    except TimeoutError:
        return f"no answer within {CHECK_TIMEOUT_SECONDS:g} s"
    except Error as error:
        return one_line(error.diagnostics())
    except SQLAlchemyError as error:
        return database_failure(error)
    return "ok"


def database_failure(error: SQLAlchemyError) -> str:
    """One line naming a database error, without the SQL or its parameters."""
    cause = error.orig if isinstance(error, DBAPIError) else error
    lines = str(cause).strip().splitlines() or [""]
    # libpq adds hint lines ("Is the server running…"); the first says what failed.
    return one_line(f"{type(error).__name__}: {lines[0]}")
