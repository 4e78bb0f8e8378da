"""resumable uploads: tus uploads in progress and the staged parts they hold

Revision ID: 0017
Revises: 0016

`/v1/uploads` (tus 1.0) keeps its state here and in the store, never in a process:
any process may take the next PATCH, after a restart too. Not append-only: an upload
in progress is not a record; its parts are removed when it completes or expires, and
evidence is recorded only by the ordinary recording step when the last byte arrives.
"""

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "resumable_upload",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("organisation_id", sa.String(length=36), nullable=False),
        sa.Column("user_id", sa.String(length=36), nullable=False),
        sa.Column("length", sa.BigInteger(), nullable=False),
        sa.Column("received", sa.BigInteger(), nullable=False),
        sa.Column("filename", sa.String(length=1024), nullable=False),
        sa.Column("metadata_json", sa.Text(), nullable=False),
        sa.Column("claimed_sha256", sa.String(length=64), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("outcome", sa.String(length=1024), nullable=True),
        sa.Column("evidence_id", sa.String(length=36), nullable=True),
        sa.Column("custody_index", sa.BigInteger(), nullable=True),
        sa.Column("duplicate", sa.Boolean(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["organisation_id"], ["organisation.id"]),
        sa.ForeignKeyConstraint(["user_id"], ["user_account.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        op.f("ix_resumable_upload_organisation_id"), "resumable_upload", ["organisation_id"]
    )
    op.create_index(
        "ix_resumable_upload_status_expires", "resumable_upload", ["status", "expires_at"]
    )
    op.create_table(
        "resumable_part",
        sa.Column("upload_id", sa.String(length=36), nullable=False),
        sa.Column("start", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("staging_key", sa.String(length=512), nullable=False),
        sa.ForeignKeyConstraint(["upload_id"], ["resumable_upload.id"]),
        sa.PrimaryKeyConstraint("upload_id", "start"),
    )


def downgrade() -> None:
    op.drop_table("resumable_part")
    op.drop_index("ix_resumable_upload_status_expires", table_name="resumable_upload")
    op.drop_index(op.f("ix_resumable_upload_organisation_id"), table_name="resumable_upload")
    op.drop_table("resumable_upload")
