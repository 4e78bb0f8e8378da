"""custody sequence: writers reserve indexes, the sequencer integrates them

Revision ID: 0014
Revises: 0013

On PostgreSQL an append takes its index from this sequence and commits its entry
without holding `log_head`; the sequencer (custody/sequencer.py) integrates committed
entries into the tree in batches. The sequence starts at the log's current size.
SQLite appends one transaction at a time and needs no sequence.
"""

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("CREATE SEQUENCE custody_index_seq AS bigint MINVALUE 0 START WITH 0")
    op.execute("SELECT setval('custody_index_seq', size, false) FROM log_head WHERE id = 1")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP SEQUENCE custody_index_seq")
