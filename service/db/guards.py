"""Triggers that make the database itself refuse to change or delete the record."""

from __future__ import annotations

from collections.abc import Iterable

from alembic import op

_PG_FUNCTION = """
CREATE OR REPLACE FUNCTION locker_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'locker: % is append-only; % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$
"""


def add_append_only_guards(tables: Iterable[str]) -> None:
    """Refuse UPDATE and DELETE (and TRUNCATE on PostgreSQL) on each table."""
    if op.get_context().dialect.name == "postgresql":
        op.execute(_PG_FUNCTION)
        for table in tables:
            op.execute(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION locker_refuse_change()"
            )
            op.execute(
                f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                "FOR EACH STATEMENT EXECUTE FUNCTION locker_refuse_change()"
            )
        return
    for table in tables:
        for operation in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {table}_no_{operation.lower()} BEFORE {operation} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, 'locker: {table} is append-only; "
                f"{operation} refused'); END"
            )
