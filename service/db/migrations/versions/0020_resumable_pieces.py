"""resumable uploads stored in pieces: the write they arrive in, and their pieces

Revision ID: 0020
Revises: 0019

A tus upload's PATCHes now store their bytes once, as pieces of the object at the
upload's own key (an S3 multipart upload), instead of as staging objects that the
completion read back and wrote again. `resumable_upload.write_id` names that write and
`next_piece` hands out piece numbers; a `resumable_part` row is a piece (`number`,
`tag`) or bytes held aside as a staging object (`staging_key`, now optional). Parts
written before this revision are such held-aside bytes: an upload in progress across
the upgrade goes on, its next PATCH turning them into pieces.
"""

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("resumable_upload") as batch:
        batch.add_column(sa.Column("write_id", sa.String(length=1024), nullable=True))
        batch.add_column(sa.Column("next_piece", sa.Integer(), nullable=False, server_default="1"))
    with op.batch_alter_table("resumable_part") as batch:
        batch.alter_column("staging_key", existing_type=sa.String(length=512), nullable=True)
        batch.add_column(sa.Column("number", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("tag", sa.String(length=1024), nullable=True))


def downgrade() -> None:
    # Pieces mean nothing to the older code: their uploads fail (410), so clients start
    # anew instead of being told an offset the older code cannot go on from. Their
    # unfinished writes are aborted by the older fsck once silent.
    op.execute(
        "UPDATE resumable_upload SET status = 'failed', "
        "outcome = 'stored as pieces, which this version cannot read: upload again' "
        "WHERE status IN ('receiving', 'completing') AND id IN "
        "(SELECT upload_id FROM resumable_part WHERE staging_key IS NULL)"
    )
    op.execute("DELETE FROM resumable_part WHERE staging_key IS NULL")
    with op.batch_alter_table("resumable_part") as batch:
        batch.drop_column("tag")
        batch.drop_column("number")
        batch.alter_column("staging_key", existing_type=sa.String(length=512), nullable=False)
    with op.batch_alter_table("resumable_upload") as batch:
        batch.drop_column("next_piece")
        batch.drop_column("write_id")
