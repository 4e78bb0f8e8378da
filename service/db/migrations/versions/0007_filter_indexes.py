"""filter indexes: find the items with a term, or in a latitude band, without a walk

Revision ID: 0007
Revises: 0006

Filters and full-text matches are computed as sets first (see service.search.catalogue); these
indexes let the term and place sets come from an index instead of a table scan.
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_term_kind_term", "term", ["kind", "term"], unique=False)
    op.create_index(op.f("ix_place_latitude"), "place", ["latitude"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_place_latitude"), table_name="place")
    op.drop_index("ix_term_kind_term", table_name="term")
