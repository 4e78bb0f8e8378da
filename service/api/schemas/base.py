"""What every response model shares: built from rows, stored JSON read back, bytes as base64."""

from __future__ import annotations

import base64
import json
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict


def b64(raw: bytes) -> str:
    """Bytes as standard base64 text (RFC 4648 §4), the API's spelling of hashes and leaves."""
    return base64.b64encode(raw).decode("ascii")


def _from_json_text(value: object) -> object:
    return json.loads(value) if isinstance(value, str) else value


def _from_bytes(value: object) -> object:
    return b64(value) if isinstance(value, bytes) else value


# A column that holds JSON text, shown as the JSON it holds.
StoredJson = Annotated[dict[str, Any], BeforeValidator(_from_json_text)]
StoredJsonList = Annotated[list[dict[str, object]], BeforeValidator(_from_json_text)]
# A binary column, shown as base64.
Base64 = Annotated[str, BeforeValidator(_from_bytes)]


class PublicModel(BaseModel):
    # Built from a row's attributes; fields renamed from their column (`validation_alias`)
    # still accept their own name, because FastAPI validates the dumped response again.
    model_config = ConfigDict(from_attributes=True, populate_by_name=True)
