"""Evidence items: the record, its submissions, its description and what the bytes say."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from service.api.schemas.base import PublicModel, StoredJson, StoredJsonList
from service.api.schemas.versions import EditBody
from service.db.models import Evidence, EvidenceProfile, Submission


class SubmissionPublic(PublicModel):
    filename: str
    metadata: StoredJson = Field(validation_alias="metadata_json")
    received_at: datetime
    custody_index: int
    submitted_by: str


class EvidencePublic(PublicModel):
    id: str
    sha256: str
    sha512: str
    size: int
    media_type: str
    filename: str
    received_at: datetime
    custody_index: int
    duplicate: bool = False

    @classmethod
    def of(
        cls, evidence: Evidence, submission: Submission, *, duplicate: bool = False
    ) -> EvidencePublic:
        """The stored object as one submission delivered it (its name, time and entry)."""
        return cls.model_validate(evidence.model_dump() | _delivery(submission, duplicate))


def _delivery(submission: Submission, duplicate: bool) -> dict[str, Any]:
    return {
        "filename": submission.filename,
        "received_at": submission.received_at,
        "custody_index": submission.custody_index,
        "duplicate": duplicate,
    }


class AnalysisPublic(PublicModel):
    """What the bytes themselves say, extracted at ingest without trusting the file."""

    extracted: StoredJson = Field(validation_alias="extracted_json")
    perceptual_hashes: StoredJsonList = Field(validation_alias="perceptual_json")
    error: str | None
    analysed_at: datetime
    custody_index: int


class NearDuplicatePublic(PublicModel):
    evidence_id: str = Field(validation_alias="similar_id")
    distance: int = Field(description="Differing bits of the 256-bit PDQ perceptual hashes.")


class QuarantinePublic(PublicModel):
    """Why the item's stored bytes are no longer trusted (see `evidence.integrity_failure`)."""

    detected_at: datetime
    custody_index: int
    reason: str


class DescriptionPublic(PublicModel):
    """One version of what the collector asserts about the item."""

    version: int
    asserted: StoredJson = Field(validation_alias="asserted_json")
    asserted_sha256: str
    reason: str
    recorded_by: str
    recorded_at: datetime
    custody_index: int


class DescriptionUpdate(EditBody):
    """Asserted metadata fields to change (null removes one); the rest stay."""

    model_config = ConfigDict(extra="allow")


class EvidenceDetail(EvidencePublic):
    ingest_index: int
    submissions: list[SubmissionPublic]
    description: DescriptionPublic
    analysis: AnalysisPublic | None = Field(
        description="Extracted metadata; null until the background analysis has run."
    )
    near_duplicates: list[NearDuplicatePublic]
    quarantine: QuarantinePublic | None = Field(
        default=None,
        description="Set when a read found the stored bytes changed; null while they match.",
    )


class EvidenceSummary(PublicModel):
    id: str
    title: str
    sha256: str
    size: int
    media_type: str
    received_at: datetime
    captured_at: datetime | None
    ingest_index: int

    @classmethod
    def of(cls, evidence: Evidence, profile: EvidenceProfile) -> EvidenceSummary:
        """A list row: the stored object with its current title and capture time."""
        current = {"title": profile.title, "captured_at": profile.captured_at}
        return cls.model_validate(evidence.model_dump() | current)


class EvidencePage(BaseModel):
    items: list[EvidenceSummary]
    next_cursor: str | None
