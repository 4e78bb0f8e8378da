"""What an edit of a versioned record (an incident, an item's description) carries."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class EditBody(BaseModel):
    """The body of an edit: the fields to change, why, and the version it was made on."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field(default="", max_length=2000)
    base_version: int | None = Field(
        default=None, ge=1, description="Refuse (409) unless this is still the latest version."
    )

    def changes(self) -> dict[str, Any]:
        """The fields the caller set, without the edit's own reason and base version."""
        return self.model_dump(mode="json", exclude_unset=True, exclude={"reason", "base_version"})
