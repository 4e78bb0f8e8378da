"""evidence quarantine: items whose stored bytes no longer match their digests

Revision ID: 0013
Revises: 0012

A download that finds the stored bytes changed aborts, appends an
`evidence.integrity_failure` entry and records the item here, append-only: the finding
stays on the item, and fsck lists it, until an operator restores the object.
"""

import sqlalchemy as sa
from alembic import op

from service.db.guards import add_append_only_guards

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "evidence_quarantine",
        sa.Column("evidence_id", sa.String(length=36), nullable=False),
        sa.Column("organisation_id", sa.String(length=36), nullable=False),
        sa.Column("detected_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("custody_index", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.String(length=1024), nullable=False),
        sa.ForeignKeyConstraint(["evidence_id"], ["evidence.id"]),
        sa.ForeignKeyConstraint(["organisation_id"], ["organisation.id"]),
        sa.PrimaryKeyConstraint("evidence_id"),
        sa.UniqueConstraint("custody_index"),
    )
    op.create_index(
        op.f("ix_evidence_quarantine_organisation_id"),
        "evidence_quarantine",
        ["organisation_id"],
    )
    add_append_only_guards(["evidence_quarantine"])


def downgrade() -> None:
    # Dropping the table drops its guards with it (both databases).
    op.drop_index(op.f("ix_evidence_quarantine_organisation_id"), table_name="evidence_quarantine")
    op.drop_table("evidence_quarantine")
