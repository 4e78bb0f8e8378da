"""The custody log: entries with their exact leaf bytes, proofs, checkpoint timestamps."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from service.api.schemas.base import Base64, PublicModel


class EntryPublic(PublicModel):
    """A custody entry as the caller may see it (built from `evidence.trails.ShownEntry`)."""

    index: int
    leaf_b64: Base64 | None = Field(
        validation_alias="leaf", description="The exact leaf bytes; null when withheld."
    )
    leaf_hash: Base64 = Field(description="RFC 9162 leaf hash (base64): proves a withheld entry.")
    withheld: bool = Field(description="The entry names something hidden from the caller.")
    fields: dict[str, object]


class ProvenEntryPublic(EntryPublic):
    """An entry with its inclusion proof (the sibling hashes, leaf to root)."""

    inclusion_proof: list[Base64] = Field(validation_alias="proof")


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
