"""upload intent heartbeat: tell an upload in flight from one a failure left pending

Revision ID: 0018
Revises: 0017

An upload touches its intent's `heartbeat_at` while it streams, stores and records its
bytes. A pending intent whose heartbeat (or, for intents written before this column,
whose creation) is older than the upload idle timeout belongs to no running upload, so
every worker may settle it as `locker fsck --repair` does, without a restart.
"""

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "upload_intent",
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
    )


def downgrade() -> None:
    with op.batch_alter_table("upload_intent") as batch:
        batch.drop_column("heartbeat_at")
