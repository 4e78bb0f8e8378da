"""append-only guards: the database itself refuses UPDATE and DELETE on the record

Revision ID: 0002
Revises: 0001
"""

from alembic import op

from service.db.guards import add_append_only_guards

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# The tables as they were at this revision (later revisions guard their own).
_TABLES = (
    "custody_entry",
    "custody_subject",
    "tree_node",
    "checkpoint",
    "evidence",
    "submission",
    "incident_evidence",
)


def upgrade() -> None:
    op.execute("INSERT INTO log_head (id, size) VALUES (1, 0)")
    add_append_only_guards(_TABLES)


def downgrade() -> None:
    raise NotImplementedError("the append-only guards are never removed")
