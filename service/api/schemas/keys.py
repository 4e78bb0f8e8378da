"""API keys: what is asked for, what is shown, and the secret shown once."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from service.accounts.members import IssuedKey
from service.api.bodies import RequestBody
from service.api.schemas.base import PublicModel


class KeyCreate(RequestBody):
    name: str = Field(default="", max_length=200)
    role: str | None = Field(default=None, max_length=32)
    expires_days: int | None = Field(default=None, ge=1, le=3650)
    email: str | None = Field(default=None, max_length=320)


class KeyPublic(PublicModel):
    prefix: str
    name: str
    role: str
    user_id: str
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None


class KeyIssued(KeyPublic):
    key: str = Field(description="The secret; shown this once and never again.")

    @classmethod
    def of(cls, issued: IssuedKey) -> KeyIssued:
        """The new key's record with its secret."""
        return cls.model_validate(issued.row.model_dump() | {"key": issued.secret})
