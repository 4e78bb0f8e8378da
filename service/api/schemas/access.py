"""Grants of access to restricted items."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from service.api.bodies import RequestBody
from service.api.schemas.base import PublicModel


class GrantCreate(RequestBody):
    email: str = Field(min_length=3, max_length=320)


class GrantPublic(PublicModel):
    id: str
    subject: str
    user_id: str
    granted_by: str
    granted_at: datetime
    custody_index: int
    revoked_at: datetime | None
