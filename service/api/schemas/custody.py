"""The custody log: entries with their exact leaf bytes, proofs, checkpoint timestamps."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, Field

from service.api.schemas.base import Base64, PublicModel
from service.core.entry import decode_entry
from service.db.models import CustodyEntry


def _decoded(value: object) -> object:
    return decode_entry(value) if isinstance(value, bytes) else value


class EntryPublic(PublicModel):
    index: int
    leaf_b64: Base64 = Field(validation_alias="leaf")
    fields: Annotated[dict[str, object], BeforeValidator(_decoded)] = Field(validation_alias="leaf")


class ProvenEntryPublic(EntryPublic):
    inclusion_proof: list[Base64]

    @classmethod
    def of(cls, entry: CustodyEntry, proof: list[bytes]) -> ProvenEntryPublic:
        """An entry with its inclusion proof (the sibling hashes, leaf to root)."""
        return cls.model_validate(entry.model_dump() | {"inclusion_proof": proof})


class CustodyTrail(BaseModel):
    checkpoint: str
    tree_size: int
    entries: list[ProvenEntryPublic]


class InclusionProof(BaseModel):
    index: int
    tree_size: int
    hashes: list[str]


class ConsistencyProof(BaseModel):
    first: int
    second: int
    hashes: list[str]


class CheckpointTimestampPublic(PublicModel):
    """An RFC 3161 token over a checkpoint's note bytes; `response` is the DER, base64."""

    tree_size: int = Field(validation_alias="checkpoint_size")
    tsa_url: str
    attested_at: datetime
    authority: str
    serial_number: str
    sha256: str
    response: Base64
