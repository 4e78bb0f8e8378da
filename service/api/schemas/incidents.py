"""Incidents: the record as sent, as shown, and every version of it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from service.api.schemas.base import PublicModel
from service.api.schemas.links import LinkPublic
from service.api.schemas.versions import EditBody
from service.db.models import Incident, IncidentVersion
from service.documentation.documents import Actor, FuzzyDate, IncidentDocument, Place, Status
from service.documentation.languages import LanguageTag


class IncidentCreate(IncidentDocument):
    """An incident's first version. `title`/`summary` may be plain strings in `language`."""

    restricted: bool = False


class IncidentUpdate(EditBody):
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


class IncidentPublic(PublicModel):
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
        """The incident's current view with its document as the caller may read it."""
        return cls.model_validate(incident.model_dump() | {"document": document})


class IncidentDetail(IncidentPublic):
    evidence: list[LinkPublic]


class IncidentVersionPublic(PublicModel):
    version: int
    document: dict[str, Any]
    document_sha256: str
    reason: str
    recorded_by: str
    recorded_at: datetime
    custody_index: int

    @classmethod
    def of(cls, version: IncidentVersion, document: dict[str, Any]) -> IncidentVersionPublic:
        """One version with its document as the caller may read it."""
        return cls.model_validate(version.model_dump() | {"document": document})


class IncidentPage(BaseModel):
    items: list[IncidentPublic]
    next_cursor: str | None
