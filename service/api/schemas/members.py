"""An organisation's members and their roles."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from service.api.bodies import RequestBody
from service.api.schemas.base import PublicModel


class MemberCreate(RequestBody):
    email: str = Field(min_length=3, max_length=320)
    role: str = Field(max_length=32)


class MemberPublic(PublicModel):
    id: str
    email: str
    role: str
    created_at: datetime
