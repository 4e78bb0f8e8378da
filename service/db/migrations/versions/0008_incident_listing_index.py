"""incident listing index: walk incidents in log order without reading their rows

Revision ID: 0008
Revises: 0007

A list or search page is cut from the incidents in log order that pass every filter.
With (organisation, log position) and, on PostgreSQL, the filtered columns included,
that walk is an index-only scan; only the page's rows are then read.
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_incident_listing",
        "incident",
        ["organisation_id", "custody_index"],
        unique=False,
        postgresql_include=["id", "status", "occurred_from", "occurred_to"],
    )


def downgrade() -> None:
    op.drop_index("ix_incident_listing", table_name="incident")
