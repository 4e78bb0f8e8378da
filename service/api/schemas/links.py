"""Links between an incident and an evidence item, and their ends."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from service.api.bodies import RequestBody
from service.api.schemas.base import PublicModel
from service.db.models import Evidence, IncidentEvidence, LinkEnd


class LinkEndPublic(PublicModel):
    reason: str
    ended_at: datetime
    ended_by: str
    custody_index: int


class LinkPublic(PublicModel):
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
        """The link, with the linked item's digest and the link's end when known."""
        sha256 = evidence.sha256 if evidence else None
        return cls.model_validate(link.model_dump() | {"sha256": sha256, "ended": ended})


class LinkCreate(RequestBody):
    evidence_id: str = Field(min_length=1, max_length=36)
    reason: str = Field(min_length=1, max_length=2000)


class UnlinkRequest(RequestBody):
    reason: str = Field(min_length=1, max_length=2000)
