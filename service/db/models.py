"""Database tables.

Rows that are evidence of what happened (custody entries, tree nodes, checkpoints,
evidence content records, submissions, links) are append-only: the migrations install
triggers that make the database itself refuse UPDATE and DELETE on them.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Column,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    Text,
    UniqueConstraint,
    text,
)
from sqlmodel import Field, SQLModel


class Organisation(SQLModel, table=True):
    """A tenant: an NGO or team whose evidence is kept apart from every other's."""

    id: str = Field(primary_key=True, max_length=36)
    name: str = Field(unique=True, max_length=200)
    created_at: datetime


class User(SQLModel, table=True):
    """A person's membership of one organisation, with their role there.

    Every custody entry names one as its actor. The same person (e-mail) in two
    organisations has two rows, each with its own role. `name` and `email` are also
    signed in the `member.added` entry at `custody_index`, which reports read them from;
    members added before names were recorded have neither (NULL).
    """

    __tablename__ = "user_account"
    __table_args__ = (UniqueConstraint("organisation_id", "email"),)

    id: str = Field(primary_key=True, max_length=36)
    organisation_id: str = Field(foreign_key="organisation.id", index=True, max_length=36)
    email: str = Field(max_length=320)
    name: str | None = Field(default=None, max_length=200)
    role: str = Field(default="admin", max_length=32)
    created_at: datetime
    custody_index: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))


class ApiKey(SQLModel, table=True):
    """An API key, stored only as its SHA-256; the prefix finds the row."""

    __tablename__ = "api_key"
    id: str = Field(primary_key=True, max_length=36)
    prefix: str = Field(unique=True, max_length=32)
    key_sha256: str = Field(max_length=64)
    user_id: str = Field(foreign_key="user_account.id", index=True, max_length=36)
    organisation_id: str = Field(foreign_key="organisation.id", max_length=36)
    name: str = Field(default="", max_length=200)
    role: str = Field(default="admin", max_length=32)
    created_at: datetime
    expires_at: datetime | None = None
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None


class Evidence(SQLModel, table=True):
    """One stored object: content identity and where exactly it lives. Never changes.

    `copy_number` is 0 for the first record of some bytes in an organisation; a later
    record of the same bytes (n > 0) exists only because its uploader could see none of
    the earlier ones (docs/design.md, "Visibility").
    """

    __table_args__ = (UniqueConstraint("organisation_id", "sha256", "copy_number"),)

    id: str = Field(primary_key=True, max_length=36)
    organisation_id: str = Field(foreign_key="organisation.id", index=True, max_length=36)
    sha256: str = Field(max_length=64)
    sha512: str = Field(max_length=128)
    size: int = Field(sa_column=Column(BigInteger, nullable=False))
    media_type: str = Field(max_length=255)
    object_key: str = Field(max_length=512)
    object_version: str | None = Field(default=None, max_length=255)
    received_at: datetime
    ingest_index: int = Field(sa_column=Column(BigInteger, nullable=False, unique=True))
    copy_number: int = Field(
        default=0, sa_column=Column(Integer, nullable=False, server_default=text("0"))
    )


class Submission(SQLModel, table=True):
    """One upload of some evidence: who sent it, under which name, with what metadata."""

    id: str = Field(primary_key=True, max_length=36)
    evidence_id: str = Field(foreign_key="evidence.id", index=True, max_length=36)
    organisation_id: str = Field(foreign_key="organisation.id", max_length=36)
    submitted_by: str = Field(foreign_key="user_account.id", max_length=36)
    filename: str = Field(max_length=1024)
    metadata_json: str = Field(sa_column=Column(Text, nullable=False))
    received_at: datetime
    custody_index: int = Field(sa_column=Column(BigInteger, nullable=False, unique=True))


class UploadIntent(SQLModel, table=True):
    """Written before any byte is stored, finished after the log entry commits.

    A pending intent after a crash or disconnect is what `locker fsck --repair` finishes
    or marks abandoned, so no upload is ever half-recorded. A running upload refreshes
    `heartbeat_at`; one whose heartbeat stopped is settled by the workers as well
    (`service.evidence.intents`).
    """

    __tablename__ = "upload_intent"

    id: str = Field(primary_key=True, max_length=36)
    organisation_id: str = Field(foreign_key="organisation.id", index=True, max_length=36)
    user_id: str = Field(foreign_key="user_account.id", max_length=36)
    status: str = Field(default="pending", index=True, max_length=16)
    filename: str = Field(max_length=1024)
    metadata_json: str = Field(sa_column=Column(Text, nullable=False))
    claimed_sha256: str | None = Field(default=None, max_length=64)
    staging_key: str | None = Field(default=None, max_length=512)
    sha256: str | None = Field(default=None, max_length=64)
    sha512: str | None = Field(default=None, max_length=128)
    size: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    media_type: str | None = Field(default=None, max_length=255)
    object_key: str | None = Field(default=None, max_length=512)
    object_version: str | None = Field(default=None, max_length=255)
    created_at: datetime
    heartbeat_at: datetime | None = None
    finished_at: datetime | None = None
    outcome: str | None = Field(default=None, max_length=1024)


class Incident(SQLModel, table=True):
    """Something that happened, as its latest version describes it.

    The versions themselves are in `incident_version` (append-only); this row, its
    places, terms and search document are the current view, rewritten on each edit.
    """

    id: str = Field(primary_key=True, max_length=36)
    organisation_id: str = Field(foreign_key="organisation.id", index=True, max_length=36)
    version: int
    title: str = Field(max_length=500)
    status: str = Field(max_length=32, index=True)
    document_json: str = Field(sa_column=Column(Text, nullable=False))
    occurred_from: datetime | None = None
    occurred_to: datetime | None = None
    created_by: str = Field(foreign_key="user_account.id", max_length=36)
    created_at: datetime
    updated_at: datetime
    custody_index: int = Field(sa_column=Column(BigInteger, nullable=False, unique=True))

    # Lists walk this narrow index in log order and test every filter on it (PostgreSQL
    # reads it without touching the wide rows), then fetch only the rows of the page.
    __table_args__ = (
        Index(
            "ix_incident_listing",
            "organisation_id",
            "custody_index",
            postgresql_include=["id", "status", "occurred_from", "occurred_to"],
        ),
    )


class IncidentVersion(SQLModel, table=True):
    """One version of an incident's record, whose digest the custody log holds."""

    __tablename__ = "incident_version"

    incident_id: str = Field(foreign_key="incident.id", primary_key=True, max_length=36)
    version: int = Field(sa_column=Column(Integer, primary_key=True, autoincrement=False))
    organisation_id: str = Field(foreign_key="organisation.id", max_length=36)
    document_json: str = Field(sa_column=Column(Text, nullable=False))
    document_sha256: str = Field(max_length=64)
    reason: str = Field(default="", max_length=2000)
    recorded_by: str = Field(foreign_key="user_account.id", max_length=36)
    recorded_at: datetime
    custody_index: int = Field(sa_column=Column(BigInteger, nullable=False, unique=True))


class EvidenceVersion(SQLModel, table=True):
    """One version of what the collector asserts about an item (its asserted metadata)."""

    __tablename__ = "evidence_version"

    evidence_id: str = Field(foreign_key="evidence.id", primary_key=True, max_length=36)
    version: int = Field(sa_column=Column(Integer, primary_key=True, autoincrement=False))
    organisation_id: str = Field(foreign_key="organisation.id", max_length=36)
    asserted_json: str = Field(sa_column=Column(Text, nullable=False))
    asserted_sha256: str = Field(max_length=64)
    reason: str = Field(default="", max_length=2000)
    recorded_by: str = Field(foreign_key="user_account.id", max_length=36)
    recorded_at: datetime
    custody_index: int = Field(sa_column=Column(BigInteger, nullable=False, unique=True))


class EvidenceProfile(SQLModel, table=True):
    """The current descriptive view of an item, for lists and filters."""

    __tablename__ = "evidence_profile"

    evidence_id: str = Field(foreign_key="evidence.id", primary_key=True, max_length=36)
    organisation_id: str = Field(foreign_key="organisation.id", index=True, max_length=36)
    version: int
    title: str = Field(default="", max_length=500)
    captured_at: datetime | None = None


class EvidenceAnalysis(SQLModel, table=True):
    """What the bytes themselves say (extracted metadata, perceptual hashes), once."""

    __tablename__ = "evidence_analysis"

    evidence_id: str = Field(foreign_key="evidence.id", primary_key=True, max_length=36)
    organisation_id: str = Field(foreign_key="organisation.id", index=True, max_length=36)
    extracted_json: str = Field(sa_column=Column(Text, nullable=False))
    perceptual_json: str = Field(sa_column=Column(Text, nullable=False))
    error: str | None = Field(default=None, max_length=1024)
    analysed_at: datetime
    custody_index: int = Field(sa_column=Column(BigInteger, nullable=False, unique=True))


class NearDuplicate(SQLModel, table=True):
    """Two items that look the same (perceptual hashes within the threshold)."""

    __tablename__ = "near_duplicate"

    evidence_id: str = Field(foreign_key="evidence.id", primary_key=True, max_length=36)
    similar_id: str = Field(foreign_key="evidence.id", primary_key=True, max_length=36)
    distance: int
    found_at: datetime
    custody_index: int = Field(sa_column=Column(BigInteger, nullable=False))


class Place(SQLModel, table=True):
    """A point an item is about (an incident's locations, an item's location)."""

    subject: str = Field(primary_key=True, max_length=80)
    position: int = Field(sa_column=Column(Integer, primary_key=True, autoincrement=False))
    latitude: float = Field(index=True)
    longitude: float


class Term(SQLModel, table=True):
    """A category or tag on an item, for filters."""

    __table_args__ = (Index("ix_term_kind_term", "kind", "term"),)

    subject: str = Field(primary_key=True, max_length=80)
    kind: str = Field(primary_key=True, max_length=16)
    term: str = Field(primary_key=True, max_length=100)


class SearchDocument(SQLModel, table=True):
    """An item's normalised search text (indexed by PostgreSQL full text or SQLite FTS5)."""

    __tablename__ = "search_document"

    subject: str = Field(primary_key=True, max_length=80)
    organisation_id: str = Field(foreign_key="organisation.id", index=True, max_length=36)
    body: str = Field(sa_column=Column(Text, nullable=False))


class Note(SQLModel, table=True):
    """An analyst's annotation on an incident or an item: append-only, logged."""

    id: str = Field(primary_key=True, max_length=36)
    organisation_id: str = Field(foreign_key="organisation.id", max_length=36)
    subject: str = Field(index=True, max_length=80)
    body: str = Field(sa_column=Column(Text, nullable=False))
    author: str = Field(foreign_key="user_account.id", max_length=36)
    created_at: datetime
    custody_index: int = Field(sa_column=Column(BigInteger, nullable=False, unique=True))


class IncidentEvidence(SQLModel, table=True):
    """A link between an incident and an evidence item, with the reason given."""

    __tablename__ = "incident_evidence"
    __table_args__ = (UniqueConstraint("incident_id", "evidence_id"),)

    id: str = Field(primary_key=True, max_length=36)
    incident_id: str = Field(foreign_key="incident.id", index=True, max_length=36)
    evidence_id: str = Field(foreign_key="evidence.id", index=True, max_length=36)
    reason: str = Field(max_length=2000)
    linked_by: str = Field(foreign_key="user_account.id", max_length=36)
    linked_at: datetime
    custody_index: int = Field(sa_column=Column(BigInteger, nullable=False, unique=True))


class LinkEnd(SQLModel, table=True):
    """The end of a link: unlinking never deletes it, it records why it ended."""

    __tablename__ = "link_end"

    link_id: str = Field(foreign_key="incident_evidence.id", primary_key=True, max_length=36)
    reason: str = Field(max_length=2000)
    ended_by: str = Field(foreign_key="user_account.id", max_length=36)
    ended_at: datetime
    custody_index: int = Field(sa_column=Column(BigInteger, nullable=False, unique=True))


class CustodyEntry(SQLModel, table=True):
    """One leaf of the custody log: its exact canonical bytes and their leaf hash."""

    __tablename__ = "custody_entry"

    index: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    leaf: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    organisation_id: str = Field(index=True, max_length=36)
    action: str = Field(max_length=64)
    recorded_at: datetime


class CustodySubject(SQLModel, table=True):
    """Which items an entry concerns (an entry linking two items concerns both)."""

    __tablename__ = "custody_subject"

    entry_index: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    subject: str = Field(primary_key=True, max_length=80)


class TreeNode(SQLModel, table=True):
    """A complete (perfect) subtree hash; storing them makes every proof O(log n) reads."""

    __tablename__ = "tree_node"

    level: int = Field(sa_column=Column(Integer, primary_key=True, autoincrement=False))
    index: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    hash: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class LogHead(SQLModel, table=True):
    """The log's size; its single row is locked to give appends gap-free indexes."""

    __tablename__ = "log_head"

    id: int = Field(default=1, primary_key=True)
    size: int = Field(sa_column=Column(BigInteger, nullable=False))


class SignedCheckpoint(SQLModel, table=True):
    """A checkpoint signed over committed entries (C2SP signed note, kept verbatim)."""

    __tablename__ = "checkpoint"

    size: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    root_hash: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    note: str = Field(sa_column=Column(Text, nullable=False))
    signed_at: datetime


class CheckpointTimestamp(SQLModel, table=True):
    """An RFC 3161 token from a TSA over one checkpoint's note bytes, kept verbatim (one
    per checkpoint and authority: a later checkpoint's token attests every earlier state
    too)."""

    __tablename__ = "checkpoint_timestamp"
    __table_args__ = (
        UniqueConstraint("checkpoint_size", "tsa_url", name="uq_checkpoint_timestamp_tsa"),
    )

    id: int | None = Field(default=None, primary_key=True)
    checkpoint_size: int = Field(
        sa_column=Column(BigInteger, ForeignKey("checkpoint.size"), nullable=False)
    )
    tsa_url: str = Field(max_length=1024)  # the authority that issued it
    response: bytes = Field(sa_column=Column(LargeBinary, nullable=False))  # DER TimeStampResp
    sha256: str = Field(max_length=64)  # the message imprint: SHA-256 of the note
    attested_at: datetime  # the TSA's genTime
    authority: str = Field(max_length=1024)
    serial_number: str = Field(max_length=64)  # decimal; up to 160 bits (RFC 3161 §2.4.2)
    fetched_at: datetime


class OrphanObject(SQLModel, table=True):
    """A stored object that no evidence record explains, found by fsck and kept."""

    __tablename__ = "orphan_object"

    object_key: str = Field(primary_key=True, max_length=512)
    object_version: str | None = Field(default=None, max_length=255)
    size: int = Field(sa_column=Column(BigInteger, nullable=False))
    found_at: datetime
    note: str = Field(default="", max_length=1024)


class Restriction(SQLModel, table=True):
    """An item visible only to members granted access to it. Never lifted silently."""

    subject: str = Field(primary_key=True, max_length=80)
    organisation_id: str = Field(foreign_key="organisation.id", index=True, max_length=36)
    restricted_by: str = Field(foreign_key="user_account.id", max_length=36)
    restricted_at: datetime
    custody_index: int = Field(sa_column=Column(BigInteger, nullable=False, unique=True))


class AccessGrant(SQLModel, table=True):
    """A member's access to one restricted item; granting and revoking are logged."""

    __tablename__ = "access_grant"
    # One live grant per member and item: a second would survive revoking the first.
    __table_args__ = (
        Index(
            "uq_access_grant_active",
            "subject",
            "user_id",
            unique=True,
            postgresql_where=text("revoked_at IS NULL"),
            sqlite_where=text("revoked_at IS NULL"),
        ),
    )

    id: str = Field(primary_key=True, max_length=36)
    subject: str = Field(index=True, max_length=80)
    organisation_id: str = Field(foreign_key="organisation.id", max_length=36)
    user_id: str = Field(foreign_key="user_account.id", index=True, max_length=36)
    granted_by: str = Field(foreign_key="user_account.id", max_length=36)
    granted_at: datetime
    custody_index: int = Field(sa_column=Column(BigInteger, nullable=False, unique=True))
    revoked_at: datetime | None = None


class SecurityEvent(SQLModel, table=True):
    """An authentication failure or refused escalation: the security log."""

    __tablename__ = "security_event"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime
    client: str = Field(max_length=100)
    kind: str = Field(max_length=64)
    detail: str = Field(max_length=1024)


class Export(SQLModel, table=True):
    """An evidence bundle: requested (a custody event), built in the background, kept."""

    id: str = Field(primary_key=True, max_length=36)
    organisation_id: str = Field(foreign_key="organisation.id", index=True, max_length=36)
    requested_by: str = Field(foreign_key="user_account.id", max_length=36)
    request_json: str = Field(sa_column=Column(Text, nullable=False))
    status: str = Field(default="pending", max_length=16)
    created_at: datetime
    custody_index: int = Field(sa_column=Column(BigInteger, nullable=False, unique=True))
    finished_at: datetime | None = None
    object_key: str | None = Field(default=None, max_length=512)
    object_version: str | None = Field(default=None, max_length=255)
    size: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    sha256: str | None = Field(default=None, max_length=64)
    error: str | None = Field(default=None, max_length=1024)


class EvidenceQuarantine(SQLModel, table=True):
    """An item whose stored bytes were found not to match their digests. Never removed.

    Written with the `evidence.integrity_failure` entry that records the finding, when
    a download or a re-read caught it; the item stays readable as a record, and its
    content is never again served as if it were intact.
    """

    __tablename__ = "evidence_quarantine"

    evidence_id: str = Field(primary_key=True, foreign_key="evidence.id", max_length=36)
    organisation_id: str = Field(foreign_key="organisation.id", index=True, max_length=36)
    detected_at: datetime
    custody_index: int = Field(sa_column=Column(BigInteger, nullable=False, unique=True))
    reason: str = Field(max_length=1024)


class IdempotencyRecord(SQLModel, table=True):
    """The first answer to a creating request sent with an Idempotency-Key (kept 24 h).

    Not evidence: rows are updated when the answer is known and deleted when they
    expire. `id` binds the key to its owner; neither the key nor the answer is stored
    readable (see service.accounts.idempotency).
    """

    __tablename__ = "idempotency_record"

    id: str = Field(primary_key=True, max_length=64)
    owner_id: str = Field(max_length=36)
    fingerprint: str | None = Field(default=None, max_length=64)
    status: int | None = None
    answer: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    created_at: datetime = Field(index=True)


class ResumableUpload(SQLModel, table=True):
    """A tus upload in progress: what it will be, and how many bytes the store holds.

    Any process can take the next PATCH, after a restart too: what it needs is here and
    in the store. `received` only grows, by a conditional UPDATE that names the offset
    the chunk started at, so two requests cannot both append at one offset. The bytes
    are written once, as pieces of the object at the upload's own key (`write_id` names
    that unfinished write; `next_piece` hands out piece numbers, each used once).
    Evidence is recorded only when the last byte arrives (then `evidence_id` is set).
    """

    __tablename__ = "resumable_upload"
    __table_args__ = (Index("ix_resumable_upload_status_expires", "status", "expires_at"),)

    id: str = Field(primary_key=True, max_length=36)
    organisation_id: str = Field(foreign_key="organisation.id", index=True, max_length=36)
    user_id: str = Field(foreign_key="user_account.id", max_length=36)
    length: int = Field(sa_column=Column(BigInteger, nullable=False))
    received: int = Field(sa_column=Column(BigInteger, nullable=False))
    filename: str = Field(max_length=1024)
    metadata_json: str = Field(sa_column=Column(Text, nullable=False))
    claimed_sha256: str | None = Field(default=None, max_length=64)
    # receiving -> completing -> done; or failed (with its outcome)
    status: str = Field(default="receiving", max_length=16)
    outcome: str | None = Field(default=None, max_length=1024)
    evidence_id: str | None = Field(default=None, max_length=36)
    custody_index: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    duplicate: bool = False
    expires_at: datetime
    created_at: datetime
    updated_at: datetime
    # Set while a PATCH streams into the store, cleared once its bytes are counted or
    # dropped: a HEAD or PATCH arriving meanwhile waits, so it sees the final offset.
    # `writers` PATCHes are writing; the mark is cleared when the last of them ends.
    writing_since: datetime | None = None
    writers: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    write_id: str | None = Field(default=None, max_length=1024)
    next_piece: int = 1


class ResumablePart(SQLModel, table=True):
    """Counted bytes of a tus upload, from `start`: a piece of its object (`number`,
    `tag`), or bytes held aside as a staging object (`staging_key`) until the next PATCH
    makes a piece of them: too few for the store's smallest piece, or written before
    uploads were stored in pieces."""

    __tablename__ = "resumable_part"

    upload_id: str = Field(primary_key=True, foreign_key="resumable_upload.id", max_length=36)
    start: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    size: int = Field(sa_column=Column(BigInteger, nullable=False))
    staging_key: str | None = Field(default=None, max_length=512)
    number: int | None = None
    tag: str | None = Field(default=None, max_length=1024)
