"""resumable upload writers: how many PATCHes are writing into the upload

Revision ID: 0021
Revises: 0020

Two PATCHes may write into one upload at once (a client that resumed while its cut
request was still storing). `writing_since` said only that some PATCH was writing, so
the first of the two to end cleared it while the other still wrote, and a HEAD arriving
then answered an offset about to change. `writers` counts them: the mark is cleared
when the last one ends. A count left by a process that died is reset by the next PATCH
once the mark is stale, as the mark itself is then ignored.
"""

import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("resumable_upload") as batch:
        batch.add_column(sa.Column("writers", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("resumable_upload") as batch:
        batch.drop_column("writers")
