"""documentation model: versioned incidents and item metadata, notes, search

Revision ID: 0006
Revises: 0005

Incidents become versioned records (HURIDOCS events); an item's asserted metadata gets
versions too; analyst notes, link ends, extracted metadata and near-duplicates are
append-only; places, terms and search documents are the searchable current view.
Existing incidents and items become version 1 of their records.
"""

import json

import sqlalchemy as sa
from alembic import op

from service.core.canonical import canonical_json
from service.core.digests import sha256
from service.core.search_text import index_tokens
from service.db.guards import add_append_only_guards

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_APPEND_ONLY = (
    "incident_version",
    "evidence_version",
    "evidence_analysis",
    "near_duplicate",
    "note",
    "link_end",
)


def upgrade() -> None:
    op.create_table(
        "place",
        sa.Column("subject", sa.String(length=80), nullable=False),
        sa.Column("position", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("latitude", sa.Float(), nullable=False),
        sa.Column("longitude", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("subject", "position"),
    )
    op.create_table(
        "term",
        sa.Column("subject", sa.String(length=80), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("term", sa.String(length=100), nullable=False),
        sa.PrimaryKeyConstraint("subject", "kind", "term"),
    )
    op.create_table(
        "search_document",
        sa.Column("subject", sa.String(length=80), nullable=False),
        sa.Column("organisation_id", sa.String(length=36), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["organisation_id"],
            ["organisation.id"],
        ),
        sa.PrimaryKeyConstraint("subject"),
    )
    op.create_index(
        op.f("ix_search_document_organisation_id"),
        "search_document",
        ["organisation_id"],
        unique=False,
    )
    op.create_table(
        "evidence_analysis",
        sa.Column("evidence_id", sa.String(length=36), nullable=False),
        sa.Column("organisation_id", sa.String(length=36), nullable=False),
        sa.Column("extracted_json", sa.Text(), nullable=False),
        sa.Column("perceptual_json", sa.Text(), nullable=False),
        sa.Column("error", sa.String(length=1024), nullable=True),
        sa.Column("analysed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("custody_index", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["evidence_id"],
            ["evidence.id"],
        ),
        sa.ForeignKeyConstraint(
            ["organisation_id"],
            ["organisation.id"],
        ),
        sa.PrimaryKeyConstraint("evidence_id"),
        sa.UniqueConstraint("custody_index"),
    )
    op.create_index(
        op.f("ix_evidence_analysis_organisation_id"),
        "evidence_analysis",
        ["organisation_id"],
        unique=False,
    )
    op.create_table(
        "evidence_profile",
        sa.Column("evidence_id", sa.String(length=36), nullable=False),
        sa.Column("organisation_id", sa.String(length=36), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(length=500), nullable=False),
        sa.Column("captured_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["evidence_id"],
            ["evidence.id"],
        ),
        sa.ForeignKeyConstraint(
            ["organisation_id"],
            ["organisation.id"],
        ),
        sa.PrimaryKeyConstraint("evidence_id"),
    )
    op.create_index(
        op.f("ix_evidence_profile_organisation_id"),
        "evidence_profile",
        ["organisation_id"],
        unique=False,
    )
    op.create_table(
        "evidence_version",
        sa.Column("evidence_id", sa.String(length=36), nullable=False),
        sa.Column("version", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("organisation_id", sa.String(length=36), nullable=False),
        sa.Column("asserted_json", sa.Text(), nullable=False),
        sa.Column("asserted_sha256", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.String(length=2000), nullable=False),
        sa.Column("recorded_by", sa.String(length=36), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("custody_index", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["evidence_id"],
            ["evidence.id"],
        ),
        sa.ForeignKeyConstraint(
            ["organisation_id"],
            ["organisation.id"],
        ),
        sa.ForeignKeyConstraint(
            ["recorded_by"],
            ["user_account.id"],
        ),
        sa.PrimaryKeyConstraint("evidence_id", "version"),
        sa.UniqueConstraint("custody_index"),
    )
    op.create_table(
        "near_duplicate",
        sa.Column("evidence_id", sa.String(length=36), nullable=False),
        sa.Column("similar_id", sa.String(length=36), nullable=False),
        sa.Column("distance", sa.Integer(), nullable=False),
        sa.Column("found_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("custody_index", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["evidence_id"],
            ["evidence.id"],
        ),
        sa.ForeignKeyConstraint(
            ["similar_id"],
            ["evidence.id"],
        ),
        sa.PrimaryKeyConstraint("evidence_id", "similar_id"),
    )
    op.create_table(
        "note",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("organisation_id", sa.String(length=36), nullable=False),
        sa.Column("subject", sa.String(length=80), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("author", sa.String(length=36), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("custody_index", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["author"],
            ["user_account.id"],
        ),
        sa.ForeignKeyConstraint(
            ["organisation_id"],
            ["organisation.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("custody_index"),
    )
    op.create_index(op.f("ix_note_subject"), "note", ["subject"], unique=False)
    op.create_table(
        "incident_version",
        sa.Column("incident_id", sa.String(length=36), nullable=False),
        sa.Column("version", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("organisation_id", sa.String(length=36), nullable=False),
        sa.Column("document_json", sa.Text(), nullable=False),
        sa.Column("document_sha256", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.String(length=2000), nullable=False),
        sa.Column("recorded_by", sa.String(length=36), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("custody_index", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incident.id"],
        ),
        sa.ForeignKeyConstraint(
            ["organisation_id"],
            ["organisation.id"],
        ),
        sa.ForeignKeyConstraint(
            ["recorded_by"],
            ["user_account.id"],
        ),
        sa.PrimaryKeyConstraint("incident_id", "version"),
        sa.UniqueConstraint("custody_index"),
    )
    op.create_table(
        "link_end",
        sa.Column("link_id", sa.String(length=36), nullable=False),
        sa.Column("reason", sa.String(length=2000), nullable=False),
        sa.Column("ended_by", sa.String(length=36), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("custody_index", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["ended_by"],
            ["user_account.id"],
        ),
        sa.ForeignKeyConstraint(
            ["link_id"],
            ["incident_evidence.id"],
        ),
        sa.PrimaryKeyConstraint("link_id"),
        sa.UniqueConstraint("custody_index"),
    )
    with op.batch_alter_table("incident") as batch:
        batch.add_column(sa.Column("version", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("status", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("document_json", sa.Text(), nullable=True))
        batch.add_column(sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True))
    _existing_incidents_become_version_one()
    _existing_items_become_version_one()
    with op.batch_alter_table("incident") as batch:
        for name in ("version", "status", "document_json", "updated_at"):
            batch.alter_column(name, nullable=False)
        for name in ("latitude", "longitude", "location_name", "description"):
            batch.drop_column(name)
        batch.create_index(batch.f("ix_incident_status"), ["status"], unique=False)
    _full_text_index()
    add_append_only_guards(_APPEND_ONLY)


def _full_text_index() -> None:
    if op.get_context().dialect.name == "postgresql":
        # The tokens are normalised by the locker (service.core.search_text) before they
        # get here, the same way for both databases; 'simple' only splits and lowercases.
        op.execute(
            "ALTER TABLE search_document ADD COLUMN tsv tsvector "
            "GENERATED ALWAYS AS (to_tsvector('simple', body)) STORED"
        )
        op.execute("CREATE INDEX search_document_tsv ON search_document USING gin (tsv)")
    else:
        op.execute(
            "CREATE VIRTUAL TABLE search_fts USING fts5("
            "subject UNINDEXED, body, tokenize = 'unicode61 remove_diacritics 0')"
        )
        op.execute(
            "INSERT INTO search_fts (subject, body) SELECT subject, body FROM search_document"
        )


def _existing_incidents_become_version_one() -> None:
    connection = op.get_bind()
    rows = connection.execute(
        sa.text(
            "SELECT id, organisation_id, title, description, occurred_from, occurred_to, "
            "location_name, latitude, longitude, created_by, created_at, custody_index "
            "FROM incident"
        )
    ).mappings()
    for row in list(rows):
        document: dict[str, object] = {
            "title": {"und": row["title"]},
            "summary": {"und": row["description"]} if row["description"] else {},
            "original_language": "und",
            "locations": [],
            "status": "open",
        }
        if row["location_name"] or row["latitude"] is not None:
            place = {"name": row["location_name"], "lat": row["latitude"], "lon": row["longitude"]}
            document["locations"] = [place]
        text = json.dumps(document, ensure_ascii=False)
        connection.execute(
            sa.text(
                "UPDATE incident SET version = 1, status = 'open', document_json = :doc, "
                "updated_at = created_at WHERE id = :id"
            ),
            {"doc": text, "id": row["id"]},
        )
        connection.execute(
            sa.text(
                "INSERT INTO incident_version (incident_id, version, organisation_id, "
                "document_json, document_sha256, reason, recorded_by, recorded_at, "
                "custody_index) VALUES (:id, 1, :org, :doc, :digest, 'migrated', :by, :at, :idx)"
            ),
            {
                "id": row["id"],
                "org": row["organisation_id"],
                "doc": text,
                "digest": sha256(canonical_json(document)).hex,
                "by": row["created_by"],
                "at": row["created_at"],
                "idx": row["custody_index"],
            },
        )
        _search_document(f"incident:{row['id']}", row["organisation_id"], row["title"])
        if row["latitude"] is not None:
            connection.execute(
                sa.text(
                    "INSERT INTO place (subject, position, latitude, longitude) "
                    "VALUES (:s, 0, :lat, :lon)"
                ),
                {"s": f"incident:{row['id']}", "lat": row["latitude"], "lon": row["longitude"]},
            )


def _existing_items_become_version_one() -> None:
    connection = op.get_bind()
    rows = connection.execute(
        sa.text(
            "SELECT e.id, e.organisation_id, e.ingest_index, e.received_at, "
            "s.metadata_json, s.submitted_by FROM evidence e JOIN submission s "
            "ON s.evidence_id = e.id AND s.custody_index = e.ingest_index"
        )
    ).mappings()
    for row in list(rows):
        asserted = json.loads(row["metadata_json"])
        for control in ("incident_id", "restricted"):
            asserted.pop(control, None)
        connection.execute(
            sa.text(
                "INSERT INTO evidence_version (evidence_id, version, organisation_id, "
                "asserted_json, asserted_sha256, reason, recorded_by, recorded_at, "
                "custody_index) VALUES (:id, 1, :org, :doc, :digest, 'migrated', :by, :at, :idx)"
            ),
            {
                "id": row["id"],
                "org": row["organisation_id"],
                "doc": json.dumps(asserted, ensure_ascii=False),
                "digest": sha256(canonical_json(asserted)).hex,
                "by": row["submitted_by"],
                "at": row["received_at"],
                "idx": row["ingest_index"],
            },
        )
        title = asserted.get("title") if isinstance(asserted.get("title"), str) else ""
        connection.execute(
            sa.text(
                "INSERT INTO evidence_profile (evidence_id, organisation_id, version, title) "
                "VALUES (:id, :org, 1, :title)"
            ),
            {"id": row["id"], "org": row["organisation_id"], "title": (title or "")[:500]},
        )
        _search_document(f"evidence:{row['id']}", row["organisation_id"], title or "")


def _search_document(subject: str, organisation_id: str, text: str) -> None:
    op.get_bind().execute(
        sa.text("INSERT INTO search_document (subject, organisation_id, body) VALUES (:s, :o, :b)"),
        {"s": subject, "o": organisation_id, "b": " ".join(index_tokens(text))},
    )


def downgrade() -> None:
    raise NotImplementedError("versions, notes and link ends are part of the record")
