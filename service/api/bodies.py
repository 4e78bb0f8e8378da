"""The base of every JSON request body."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class RequestBody(BaseModel):
    """A JSON request body: an unknown field is a 422, never silently dropped (a
    misspelt optional field would otherwise change nothing and say nothing)."""

    model_config = ConfigDict(extra="forbid")
