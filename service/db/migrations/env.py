"""Alembic environment: migrations run on the connection the locker hands over."""

from alembic import context
from sqlmodel import SQLModel

import service.db.models  # noqa: F401  (registers the tables on SQLModel.metadata)

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only reached by a bare `alembic` call
    raise SystemExit("run migrations through `locker migrate`")


def _modelled(obj: object, name: str | None, kind: str, reflected: bool, _compare: object) -> bool:
    """Leave out of model comparison what is not modelled: the full-text index
    (dialect-specific SQL) and the job queue's tables (procrastinate's own schema)."""
    if kind == "table" and name is not None and name.startswith(("search_fts", "procrastinate_")):
        return False
    if kind == "column" and name == "tsv":
        return False
    return not (kind == "index" and name == "search_document_tsv")


context.configure(
    connection=connection, target_metadata=SQLModel.metadata, include_object=_modelled
)
with context.begin_transaction():
    context.run_migrations()
