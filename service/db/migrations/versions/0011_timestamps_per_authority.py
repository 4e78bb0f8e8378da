"""timestamps per authority: one token per checkpoint from each configured TSA

Revision ID: 0011
Revises: 0010

A checkpoint may now be stamped by several authorities (LOCKER_TSA_URL lists them), so
the unique key moves from the checkpoint alone to the checkpoint and the authority's URL.
Existing tokens are kept as they are. On SQLite a constraint cannot be dropped in place:
the table is rebuilt with the same rows and ids, and its append-only guards restored.
"""

import sqlalchemy as sa
from alembic import op

from service.db.guards import add_append_only_guards

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

_OLD_PG = "checkpoint_timestamp_checkpoint_size_key"  # PostgreSQL's name for 0005's
_NEW = "uq_checkpoint_timestamp_tsa"
_COLUMNS = (
    "id, checkpoint_size, tsa_url, response, sha256, attested_at, authority, "
    "serial_number, fetched_at"
)


def upgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        op.drop_constraint(_OLD_PG, "checkpoint_timestamp", type_="unique")
        op.create_unique_constraint(_NEW, "checkpoint_timestamp", ["checkpoint_size", "tsa_url"])
        return
    _rebuild(sa.UniqueConstraint("checkpoint_size", "tsa_url", name=_NEW))


def downgrade() -> None:
    """Back to one token per checkpoint; refused by the database if one has several."""
    if op.get_context().dialect.name == "postgresql":
        op.drop_constraint(_NEW, "checkpoint_timestamp", type_="unique")
        op.create_unique_constraint(_OLD_PG, "checkpoint_timestamp", ["checkpoint_size"])
        return
    _rebuild(sa.UniqueConstraint("checkpoint_size"))


def _rebuild(unique: sa.UniqueConstraint) -> None:
    """SQLite: the same rows and ids in a table with `unique`, guards restored."""
    op.create_table(
        "checkpoint_timestamp_rebuilt",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("checkpoint_size", sa.BigInteger(), nullable=False),
        sa.Column("tsa_url", sa.String(length=1024), nullable=False),
        sa.Column("response", sa.LargeBinary(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("attested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("authority", sa.String(length=1024), nullable=False),
        sa.Column("serial_number", sa.String(length=64), nullable=False),
        sa.Column("fetched_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["checkpoint_size"], ["checkpoint.size"]),
        sa.PrimaryKeyConstraint("id"),
        unique,
    )
    op.execute(
        f"INSERT INTO checkpoint_timestamp_rebuilt ({_COLUMNS}) "
        f"SELECT {_COLUMNS} FROM checkpoint_timestamp"
    )
    op.drop_table("checkpoint_timestamp")  # its triggers go with it
    op.rename_table("checkpoint_timestamp_rebuilt", "checkpoint_timestamp")
    add_append_only_guards(("checkpoint_timestamp",))
