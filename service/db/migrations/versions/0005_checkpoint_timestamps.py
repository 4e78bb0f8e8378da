"""checkpoint timestamps: RFC 3161 tokens from a time-stamping authority, append-only

Revision ID: 0005
Revises: 0004

"""

import sqlalchemy as sa
from alembic import op

from service.db.guards import add_append_only_guards

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "checkpoint_timestamp",
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
        sa.UniqueConstraint("checkpoint_size"),
    )
    add_append_only_guards(("checkpoint_timestamp",))


def downgrade() -> None:
    raise NotImplementedError("timestamps are part of the record; never dropped")
