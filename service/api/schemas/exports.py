"""Export bundles: the request and the status of its build."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from service.api.bodies import RequestBody
from service.api.schemas.base import PublicModel


class ExportCreate(RequestBody):
    incident_id: str | None = Field(default=None, max_length=36)
    evidence_ids: list[str] = Field(default_factory=list, max_length=10_000)


class ExportStatus(PublicModel):
    id: str
    status: str
    created_at: datetime
    custody_index: int
    size: int | None = None
    sha256: str | None = None
    error: str | None = None
