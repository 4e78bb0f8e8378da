"""Analyst notes on incidents and items."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from service.api.bodies import RequestBody
from service.api.schemas.base import PublicModel


class NoteCreate(RequestBody):
    body: str = Field(min_length=1, max_length=20_000)


class NotePublic(PublicModel):
    id: str
    subject: str
    body: str
    author: str
    created_at: datetime
    custody_index: int
