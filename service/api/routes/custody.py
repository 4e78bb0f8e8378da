"""/v1/custody: checkpoint, verifier key, entries and proofs."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.responses import PlainTextResponse

from service.api.deps import CustodyReader, Public, RuntimeDep
from service.api.filtering import Position
from service.api.schemas.base import b64
from service.api.schemas.custody import (
    CheckpointTimestampPublic,
    ConsistencyProof,
    EntryPublic,
    InclusionProof,
)
from service.custody.rotation import published_key_history
from service.custody.timestamps import list_timestamps
from service.evidence.reading import prove_consistency, prove_inclusion
from service.evidence.trails import list_entries
from service.search.catalogue import MAX_POSITION

router = APIRouter(prefix="/v1/custody", tags=["custody"])
_NOTE = "text/plain; charset=utf-8"


@router.get("/checkpoint", response_class=PlainTextResponse)
def get_checkpoint(runtime: RuntimeDep, principal: CustodyReader) -> PlainTextResponse:
    """The latest checkpoint, a C2SP signed note over every committed entry."""
    return PlainTextResponse(runtime.log.latest_checkpoint(runtime.database).note, media_type=_NOTE)


@router.get("/checkpoint/timestamps", response_model=list[CheckpointTimestampPublic])
def get_checkpoint_timestamps(
    runtime: RuntimeDep, principal: CustodyReader, tree_size: Position
) -> list[CheckpointTimestampPublic]:
    """RFC 3161 tokens (DER TimeStampResp, base64) over the checkpoint of `tree_size`."""
    return [
        CheckpointTimestampPublic.model_validate(t) for t in list_timestamps(runtime, tree_size)
    ]


@router.get("/verifier-key", response_class=PlainTextResponse, dependencies=[Depends(Public())])
def get_verifier_key(runtime: RuntimeDep) -> PlainTextResponse:
    """The C2SP verifier key that checks the checkpoints' signatures (public)."""
    return PlainTextResponse(runtime.log.verifier.to_text() + "\n", media_type=_NOTE)


@router.get("/key-history", response_class=PlainTextResponse, dependencies=[Depends(Public())])
def get_key_history(runtime: RuntimeDep) -> PlainTextResponse:
    """Every verifier key the log has had, oldest first, one per line (public).

    `locker verify --key` accepts this file: a checkpoint signed by any of them verifies.
    """
    current = runtime.log.verifier.to_text()
    return PlainTextResponse(
        "".join(f"{key}\n" for key in published_key_history(runtime.database, current)),
        media_type=_NOTE,
    )


@router.get("/entries", response_model=list[EntryPublic])
def get_entries(
    runtime: RuntimeDep,
    principal: CustodyReader,
    start: Position = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[EntryPublic]:
    """The caller's organisation's entries from index `start`, with exact leaf bytes."""
    entries = list_entries(runtime, principal, start=start, limit=limit)
    return [EntryPublic.model_validate(e) for e in entries]


@router.get("/proof/inclusion", response_model=InclusionProof)
def get_inclusion_proof(
    runtime: RuntimeDep,
    principal: CustodyReader,
    index: Position,
    tree_size: Annotated[int, Query(ge=1, le=MAX_POSITION)],
) -> InclusionProof:
    """RFC 9162 inclusion proof of entry `index` in the tree of `tree_size`."""
    proof = prove_inclusion(runtime, principal, index=index, tree_size=tree_size)
    return InclusionProof(index=index, tree_size=tree_size, hashes=[b64(h) for h in proof])


@router.get("/proof/consistency", response_model=ConsistencyProof)
def get_consistency_proof(
    runtime: RuntimeDep,
    principal: CustodyReader,
    first: Annotated[int, Query(ge=1, le=MAX_POSITION)],
    second: Annotated[int, Query(ge=1, le=MAX_POSITION)],
) -> ConsistencyProof:
    """RFC 9162 consistency proof between the trees of sizes `first` and `second`."""
    proof = prove_consistency(runtime, principal, first=first, second=second)
    return ConsistencyProof(first=first, second=second, hashes=[b64(h) for h in proof])
