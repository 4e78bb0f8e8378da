"""Search results and the vocabulary incidents are described with."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel


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
