"""An organisation's members and their roles."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from service.accounts.people import NAME_LIMIT
from service.api.bodies import RequestBody
from service.api.schemas.base import PublicModel


class MemberCreate(RequestBody):
    email: str = Field(min_length=3, max_length=320)
    role: str = Field(max_length=32)
    # The rest of the rule (trimmed, not empty, no control characters) is the use case's
    # (service.accounts.people.person_name), which the CLI follows too.
    name: str | None = Field(
        default=None,
        max_length=NAME_LIMIT,
        description="The member's name in any script, without control characters; signed"
        " in the custody log with the e-mail.",
    )


class MemberPublic(PublicModel):
    id: str
    email: str
    name: str | None = Field(description="null for members added before names were recorded")
    role: str
    created_at: datetime
