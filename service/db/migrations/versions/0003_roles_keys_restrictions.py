"""roles on keys, restricted items, access grants, the security log

Revision ID: 0003
Revises: 0002

"""

import sqlalchemy as sa
from alembic import op

from service.db.guards import add_append_only_guards

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "security_event",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("client", sa.String(length=100), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("detail", sa.String(length=1024), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "access_grant",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("subject", sa.String(length=80), nullable=False),
        sa.Column("organisation_id", sa.String(length=36), nullable=False),
        sa.Column("user_id", sa.String(length=36), nullable=False),
        sa.Column("granted_by", sa.String(length=36), nullable=False),
        sa.Column("granted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("custody_index", sa.BigInteger(), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["granted_by"],
            ["user_account.id"],
        ),
        sa.ForeignKeyConstraint(
            ["organisation_id"],
            ["organisation.id"],
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["user_account.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("custody_index"),
    )
    op.create_index(op.f("ix_access_grant_subject"), "access_grant", ["subject"], unique=False)
    op.create_index(op.f("ix_access_grant_user_id"), "access_grant", ["user_id"], unique=False)
    op.create_table(
        "restriction",
        sa.Column("subject", sa.String(length=80), nullable=False),
        sa.Column("organisation_id", sa.String(length=36), nullable=False),
        sa.Column("restricted_by", sa.String(length=36), nullable=False),
        sa.Column("restricted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("custody_index", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["organisation_id"],
            ["organisation.id"],
        ),
        sa.ForeignKeyConstraint(
            ["restricted_by"],
            ["user_account.id"],
        ),
        sa.PrimaryKeyConstraint("subject"),
        sa.UniqueConstraint("custody_index"),
    )
    op.create_index(
        op.f("ix_restriction_organisation_id"), "restriction", ["organisation_id"], unique=False
    )
    op.add_column(
        "api_key", sa.Column("name", sa.String(length=200), nullable=False, server_default="")
    )
    op.add_column(
        "api_key", sa.Column("role", sa.String(length=32), nullable=False, server_default="admin")
    )
    op.add_column("api_key", sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("api_key", sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True))
    # A key never carries more than its owner's role.
    op.execute(
        "UPDATE api_key SET role = "
        "(SELECT role FROM user_account WHERE user_account.id = api_key.user_id)"
    )
    add_append_only_guards(("restriction", "security_event"))


def downgrade() -> None:
    raise NotImplementedError("the append-only guards are never removed")
