"""Analyst notes on incidents and items (append-only, each a custody event)."""

from __future__ import annotations

from fastapi import APIRouter, status

from service.api.deps import ITEM_KIND, Annotator, IncidentReader, ItemPath, RuntimeDep
from service.api.idempotency import Idempotency, IdempotentRoute
from service.api.schemas.notes import NoteCreate, NotePublic
from service.documentation.notes import add_note, list_notes

router = APIRouter(prefix="/v1", tags=["notes"], route_class=IdempotentRoute)


@router.post(
    "/{kind}/{item_id}/notes", status_code=status.HTTP_201_CREATED, response_model=NotePublic
)
def post_note(
    kind: ItemPath,
    item_id: str,
    body: NoteCreate,
    runtime: RuntimeDep,
    principal: Annotator,
    _: Idempotency,
) -> NotePublic:
    """Add a note to an incident or an item; notes are never edited or removed."""
    note = add_note(runtime, principal, kind=ITEM_KIND[kind], item_id=item_id, body=body.body)
    return NotePublic.model_validate(note)


@router.get("/{kind}/{item_id}/notes", response_model=list[NotePublic])
def get_notes(
    kind: ItemPath, item_id: str, runtime: RuntimeDep, principal: IncidentReader
) -> list[NotePublic]:
    """The notes on an incident or an item, oldest first."""
    notes = list_notes(runtime, principal, kind=ITEM_KIND[kind], item_id=item_id)
    return [NotePublic.model_validate(n) for n in notes]
