"""resumable upload writing_since: a PATCH in flight, so that a resumed client waits

Revision ID: 0019
Revises: 0018

A PATCH marks its upload while its body streams into the store and clears the mark
once its bytes are counted (or dropped). A HEAD, or another PATCH, that comes while the
mark is fresh waits for it: a client resuming at once after its connection was cut then
learns the offset that includes what the cut request delivered, instead of sending it
again.
"""

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "resumable_upload",
        sa.Column("writing_since", sa.DateTime(timezone=True), nullable=True),
    )


def downgrade() -> None:
    with op.batch_alter_table("resumable_upload") as batch:
        batch.drop_column("writing_since")
