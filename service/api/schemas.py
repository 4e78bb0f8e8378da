"""Response and request bodies of the API."""

from __future__ import annotations

import base64
import json
from datetime import datetime

from pydantic import BaseModel, Field

from service.api.bodies import RequestBody
from service.api.documentation import DescriptionPublic
from service.core.entry import decode_entry
from service.db.models import (
    AccessGrant,
    ApiKey,
    CheckpointTimestamp,
    CustodyEntry,
    Evidence,
    EvidenceAnalysis,
    Submission,
    User,
)


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


class SubmissionPublic(BaseModel):
    filename: str
    metadata: dict[str, object]
    received_at: datetime
    custody_index: int
    submitted_by: str

    @classmethod
    def of(cls, submission: Submission) -> SubmissionPublic:
        return cls(
            filename=submission.filename,
            metadata=json.loads(submission.metadata_json),
            received_at=submission.received_at,
            custody_index=submission.custody_index,
            submitted_by=submission.submitted_by,
        )


class EvidencePublic(BaseModel):
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
        return cls(
            id=evidence.id,
            sha256=evidence.sha256,
            sha512=evidence.sha512,
            size=evidence.size,
            media_type=evidence.media_type,
            filename=submission.filename,
            received_at=submission.received_at,
            custody_index=submission.custody_index,
            duplicate=duplicate,
        )


class AnalysisPublic(BaseModel):
    """What the bytes themselves say, extracted at ingest without trusting the file."""

    extracted: dict[str, object]
    perceptual_hashes: list[dict[str, object]]
    error: str | None
    analysed_at: datetime
    custody_index: int

    @classmethod
    def of(cls, analysis: EvidenceAnalysis) -> AnalysisPublic:
        return cls(
            extracted=json.loads(analysis.extracted_json),
            perceptual_hashes=json.loads(analysis.perceptual_json),
            error=analysis.error,
            analysed_at=analysis.analysed_at,
            custody_index=analysis.custody_index,
        )


class NearDuplicatePublic(BaseModel):
    evidence_id: str
    distance: int = Field(description="Differing bits of the 256-bit PDQ perceptual hashes.")


class QuarantinePublic(BaseModel):
    """Why the item's stored bytes are no longer trusted (see `evidence.integrity_failure`)."""

    detected_at: datetime
    custody_index: int
    reason: str


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


class EntryPublic(BaseModel):
    index: int
    leaf_b64: str
    fields: dict[str, object]

    @classmethod
    def of(cls, entry: CustodyEntry) -> EntryPublic:
        return cls(index=entry.index, leaf_b64=b64(entry.leaf), fields=decode_entry(entry.leaf))


class ProvenEntryPublic(EntryPublic):
    inclusion_proof: list[str]


class CustodyTrail(BaseModel):
    checkpoint: str
    tree_size: int
    entries: list[ProvenEntryPublic]


class InclusionProof(BaseModel):
    index: int
    tree_size: int
    hashes: list[str]


class ConsistencyProof(BaseModel):
    first: int
    second: int
    hashes: list[str]


class MemberCreate(RequestBody):
    email: str = Field(min_length=3, max_length=320)
    role: str = Field(max_length=32)


class MemberPublic(BaseModel):
    id: str
    email: str
    role: str
    created_at: datetime

    @classmethod
    def of(cls, user: User) -> MemberPublic:
        return cls(id=user.id, email=user.email, role=user.role, created_at=user.created_at)


class KeyCreate(RequestBody):
    name: str = Field(default="", max_length=200)
    role: str | None = Field(default=None, max_length=32)
    expires_days: int | None = Field(default=None, ge=1, le=3650)
    email: str | None = Field(default=None, max_length=320)


class KeyPublic(BaseModel):
    prefix: str
    name: str
    role: str
    user_id: str
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None

    @classmethod
    def of(cls, key: ApiKey) -> KeyPublic:
        return cls(
            prefix=key.prefix,
            name=key.name,
            role=key.role,
            user_id=key.user_id,
            created_at=key.created_at,
            expires_at=key.expires_at,
            last_used_at=key.last_used_at,
            revoked_at=key.revoked_at,
        )


class KeyIssued(KeyPublic):
    key: str = Field(description="The secret; shown this once and never again.")


class GrantCreate(RequestBody):
    email: str = Field(min_length=3, max_length=320)


class GrantPublic(BaseModel):
    id: str
    subject: str
    user_id: str
    granted_by: str
    granted_at: datetime
    custody_index: int
    revoked_at: datetime | None

    @classmethod
    def of(cls, grant: AccessGrant) -> GrantPublic:
        return cls(
            id=grant.id,
            subject=grant.subject,
            user_id=grant.user_id,
            granted_by=grant.granted_by,
            granted_at=grant.granted_at,
            custody_index=grant.custody_index,
            revoked_at=grant.revoked_at,
        )


class CheckpointTimestampPublic(BaseModel):
    """An RFC 3161 token over a checkpoint's note bytes; `response` is the DER, base64."""

    tree_size: int
    tsa_url: str
    attested_at: datetime
    authority: str
    serial_number: str
    sha256: str
    response: str

    @classmethod
    def of(cls, token: CheckpointTimestamp) -> CheckpointTimestampPublic:
        return cls(
            tree_size=token.checkpoint_size,
            tsa_url=token.tsa_url,
            attested_at=token.attested_at,
            authority=token.authority,
            serial_number=token.serial_number,
            sha256=token.sha256,
            response=b64(token.response),
        )
