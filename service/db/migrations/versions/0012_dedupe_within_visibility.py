"""dedupe within visibility: an organisation may hold several records of the same bytes

Revision ID: 0012
Revises: 0011

An upload whose bytes match only items its uploader cannot see becomes a record of its
own (`copy_number` > 0) over the same stored object, instead of a re-submission of the
hidden item: answering with the hidden item's id revealed it, and adding a submission
and a link changed it. (organisation, sha256, copy_number) stays unique, so two
concurrent uploads of the same new bytes still become one record and a re-submission.

SQLite cannot drop a table constraint: the table is rebuilt. The old rows are copied
back only after the new table has taken the old one's name, so the deferred foreign
keys of submissions, links and versions that point at them are satisfied again at
commit; the rebuilt table gets its append-only guards back.
"""

import sqlalchemy as sa
from alembic import op

from service.db.guards import add_append_only_guards
from service.errors import ConfigurationError

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

_COLUMNS = (
    "id, organisation_id, sha256, sha512, size, media_type, object_key, object_version, "
    "received_at, ingest_index"
)


def upgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        op.add_column(
            "evidence",
            sa.Column("copy_number", sa.Integer(), server_default="0", nullable=False),
        )
        op.drop_constraint("evidence_organisation_id_sha256_key", "evidence", type_="unique")
        op.create_unique_constraint(
            "evidence_organisation_id_sha256_copy_number_key",
            "evidence",
            ["organisation_id", "sha256", "copy_number"],
        )
    else:
        _rebuild_sqlite(copies=True)


def downgrade() -> None:
    copies = op.get_bind().execute(sa.text("SELECT COUNT(*) FROM evidence WHERE copy_number > 0"))
    if copies.scalar_one():
        raise ConfigurationError(
            "evidence holds separate records of the same bytes; they cannot be merged back"
        )
    if op.get_context().dialect.name == "postgresql":
        op.drop_constraint(
            "evidence_organisation_id_sha256_copy_number_key", "evidence", type_="unique"
        )
        op.create_unique_constraint(
            "evidence_organisation_id_sha256_key", "evidence", ["organisation_id", "sha256"]
        )
        op.drop_column("evidence", "copy_number")
    else:
        _rebuild_sqlite(copies=False)


def _rebuild_sqlite(*, copies: bool) -> None:
    op.execute("PRAGMA defer_foreign_keys = ON")
    op.execute("CREATE TEMP TABLE evidence_before_0010 AS SELECT * FROM evidence")
    unique = ["organisation_id", "sha256", *(["copy_number"] if copies else [])]
    extra = [sa.Column("copy_number", sa.Integer(), server_default="0", nullable=False)]
    op.create_table(
        "evidence_0010",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("organisation_id", sa.String(length=36), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("sha512", sa.String(length=128), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("media_type", sa.String(length=255), nullable=False),
        sa.Column("object_key", sa.String(length=512), nullable=False),
        sa.Column("object_version", sa.String(length=255), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ingest_index", sa.BigInteger(), nullable=False),
        *(extra if copies else []),
        sa.ForeignKeyConstraint(["organisation_id"], ["organisation.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("ingest_index"),
        sa.UniqueConstraint(*unique),
    )
    op.drop_table("evidence")  # SQLite drops its triggers first; none fires
    op.rename_table("evidence_0010", "evidence")
    # Rows go back only now: each satisfies again the deferred foreign keys pointing at it.
    op.execute(f"INSERT INTO evidence ({_COLUMNS}) SELECT {_COLUMNS} FROM evidence_before_0010")
    op.execute("DROP TABLE evidence_before_0010")
    op.create_index("ix_evidence_organisation_id", "evidence", ["organisation_id"])
    add_append_only_guards(["evidence"])
