"""member names: a display name beside the e-mail, and the entry that signed both

Revision ID: 0016
Revises: 0015

A member's name (any script, trimmed, at most 200 characters) is recorded when the
member is added, and the `member.added` entry signs it with the e-mail; `custody_index`
points at that entry, so reports name people from the log itself. Members added earlier
keep NULL in both columns: their entry signed neither, and they are named by e-mail.
Both columns are nullable and neither is indexed, so SQLite adds and drops them in place.
"""

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("user_account", sa.Column("name", sa.String(length=200), nullable=True))
    op.add_column("user_account", sa.Column("custody_index", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    op.drop_column("user_account", "custody_index")
    op.drop_column("user_account", "name")
