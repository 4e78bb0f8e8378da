"""job queue: procrastinate's tables and functions, on PostgreSQL

Revision ID: 0010
Revises: 0009

Exports, analysis, timestamping and clean-ups run as durable jobs on PostgreSQL
(procrastinate: its jobs, events, periodic and worker tables and the functions that
fetch and finish jobs). Its schema is applied here, in the locker's own migration
chain, so one `locker migrate` brings both up to date. SQLite (the embedded default)
runs jobs in-process and needs none of it.
"""

from alembic import op
from procrastinate.schema import SchemaManager

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    _run(SchemaManager.get_schema())


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    _run(
        """
        DO $$
        DECLARE target record;
        BEGIN
            FOR target IN SELECT oid::regprocedure AS routine FROM pg_proc
                          WHERE proname LIKE 'procrastinate\\_%' LOOP
                EXECUTE 'DROP ROUTINE IF EXISTS ' || target.routine || ' CASCADE';
            END LOOP;
        END $$;
        DROP TABLE IF EXISTS procrastinate_events, procrastinate_periodic_defers,
            procrastinate_jobs, procrastinate_workers CASCADE;
        DO $$
        DECLARE target record;
        BEGIN
            FOR target IN SELECT typname FROM pg_type JOIN pg_namespace n ON n.oid = typnamespace
                          WHERE typname LIKE 'procrastinate\\_%' AND typtype IN ('c', 'e')
                          AND n.nspname = current_schema() LOOP
                EXECUTE 'DROP TYPE IF EXISTS ' || quote_ident(target.typname) || ' CASCADE';
            END LOOP;
        END $$;
        """
    )


def _run(sql: str) -> None:
    # procrastinate's SQL holds literal % signs: run it on the driver with no parameters,
    # inside the migration's transaction.
    cursor = op.get_bind().connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    cursor.execute(sql)
