"""Request and response bodies of the documentation model (incidents, descriptions, notes)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from service.api.bodies import RequestBody
from service.db.models import (
    Evidence,
    EvidenceProfile,
    EvidenceVersion,
    Incident,
    IncidentEvidence,
    IncidentVersion,
    LinkEnd,
    Note,
)
from service.documentation.documents import Actor, FuzzyDate, IncidentDocument, Place, Status
from service.documentation.languages import LanguageTag


class IncidentCreate(IncidentDocument):
    """An incident's first version. `title`/`summary` may be plain strings in `language`."""

    restricted: bool = False


class _Edit(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(default="", max_length=2000)
    base_version: int | None = Field(
        default=None, ge=1, description="Refuse (409) unless this is still the latest version."
    )

    def changes(self) -> dict[str, Any]:
        """The fields the caller set, without the edit's own reason and base version."""
        return self.model_dump(mode="json", exclude_unset=True, exclude={"reason", "base_version"})


class IncidentUpdate(_Edit):
    """The fields to change; the rest stay as in the latest version."""

    title: str | dict[str, str] | None = Field(
        default=None,
        description="A string sets the text in `language` (else in the original language) "
        "and keeps the other languages; an object replaces every language's text.",
    )
    summary: str | dict[str, str] | None = Field(default=None, description="Like `title`.")
    language: LanguageTag | None = Field(
        default=None, description="The language of a plain-string title or summary."
    )
    original_language: LanguageTag | None = None
    start: FuzzyDate | None = None
    end: FuzzyDate | None = None
    locations: list[Place] | None = None
    categories: list[str] | None = None
    actors: list[Actor] | None = None
    status: Status | None = None
    tags: list[str] | None = None
    related_incidents: list[str] | None = None


class DescriptionUpdate(_Edit):
    """Asserted metadata fields to change (null removes one); the rest stay."""

    model_config = ConfigDict(extra="allow")


class LinkPublic(BaseModel):
    evidence_id: str
    reason: str
    linked_at: datetime
    linked_by: str
    custody_index: int
    sha256: str | None = None
    ended: LinkEndPublic | None = None

    @classmethod
    def of(
        cls,
        link: IncidentEvidence,
        evidence: Evidence | None = None,
        ended: LinkEnd | None = None,
    ) -> LinkPublic:
        return cls(
            evidence_id=link.evidence_id,
            reason=link.reason,
            linked_at=link.linked_at,
            linked_by=link.linked_by,
            custody_index=link.custody_index,
            sha256=evidence.sha256 if evidence else None,
            ended=LinkEndPublic.of(ended) if ended else None,
        )


class LinkEndPublic(BaseModel):
    reason: str
    ended_at: datetime
    ended_by: str
    custody_index: int

    @classmethod
    def of(cls, end: LinkEnd) -> LinkEndPublic:
        return cls(
            reason=end.reason,
            ended_at=end.ended_at,
            ended_by=end.ended_by,
            custody_index=end.custody_index,
        )


class LinkCreate(RequestBody):
    evidence_id: str = Field(min_length=1, max_length=36)
    reason: str = Field(min_length=1, max_length=2000)


class UnlinkRequest(RequestBody):
    reason: str = Field(min_length=1, max_length=2000)


class IncidentPublic(BaseModel):
    id: str
    version: int
    title: str = Field(description="The title in the record's original language.")
    status: str
    document: dict[str, Any]
    occurred_from: datetime | None
    occurred_to: datetime | None
    created_at: datetime
    updated_at: datetime
    custody_index: int

    @classmethod
    def of(cls, incident: Incident, document: dict[str, Any]) -> IncidentPublic:
        return cls(
            id=incident.id,
            version=incident.version,
            title=incident.title,
            status=incident.status,
            document=document,
            occurred_from=incident.occurred_from,
            occurred_to=incident.occurred_to,
            created_at=incident.created_at,
            updated_at=incident.updated_at,
            custody_index=incident.custody_index,
        )


class IncidentDetail(IncidentPublic):
    evidence: list[LinkPublic]


class IncidentVersionPublic(BaseModel):
    version: int
    document: dict[str, Any]
    document_sha256: str
    reason: str
    recorded_by: str
    recorded_at: datetime
    custody_index: int

    @classmethod
    def of(cls, version: IncidentVersion, document: dict[str, Any]) -> IncidentVersionPublic:
        return cls(
            version=version.version,
            document=document,
            document_sha256=version.document_sha256,
            reason=version.reason,
            recorded_by=version.recorded_by,
            recorded_at=version.recorded_at,
            custody_index=version.custody_index,
        )


class DescriptionPublic(BaseModel):
    """One version of what the collector asserts about the item."""

    version: int
    asserted: dict[str, Any]
    asserted_sha256: str
    reason: str
    recorded_by: str
    recorded_at: datetime
    custody_index: int

    @classmethod
    def of(cls, version: EvidenceVersion) -> DescriptionPublic:
        return cls(
            version=version.version,
            asserted=json.loads(version.asserted_json),
            asserted_sha256=version.asserted_sha256,
            reason=version.reason,
            recorded_by=version.recorded_by,
            recorded_at=version.recorded_at,
            custody_index=version.custody_index,
        )


class IncidentPage(BaseModel):
    items: list[IncidentPublic]
    next_cursor: str | None


class EvidenceSummary(BaseModel):
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
        return cls(
            id=evidence.id,
            title=profile.title,
            sha256=evidence.sha256,
            size=evidence.size,
            media_type=evidence.media_type,
            received_at=evidence.received_at,
            captured_at=profile.captured_at,
            ingest_index=evidence.ingest_index,
        )


class EvidencePage(BaseModel):
    items: list[EvidenceSummary]
    next_cursor: str | None


class NoteCreate(RequestBody):
    body: str = Field(min_length=1, max_length=20_000)


class NotePublic(BaseModel):
    id: str
    subject: str
    body: str
    author: str
    created_at: datetime
    custody_index: int

    @classmethod
    def of(cls, note: Note) -> NotePublic:
        return cls(
            id=note.id,
            subject=note.subject,
            body=note.body,
            author=note.author,
            created_at=note.created_at,
            custody_index=note.custody_index,
        )


class SearchHit(BaseModel):
    type: Literal["incident", "evidence"]
    id: str
    title: str
    custody_index: int
    media_type: str | None = None
    sha256: str | None = None
    status: str | None = None


class SearchPage(BaseModel):
    items: list[SearchHit]
    next_cursor: str | None


class Vocabulary(BaseModel):
    categories: list[str]
    statuses: list[str]
