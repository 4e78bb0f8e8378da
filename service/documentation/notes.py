"""Analyst notes: append-only annotations on incidents and items, each a custody event.

The log holds each note's digest, not its text: the text stays with the organisation,
and anyone holding the note can show it is the one recorded.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from sqlmodel import col, select

from service.accounts.access import visible_item
from service.accounts.members import Principal
from service.accounts.permissions import Permission
from service.core.digests import sha256
from service.db.models import Note

if TYPE_CHECKING:
    from service.runtime import Runtime


def add_note(runtime: Runtime, principal: Principal, *, kind: str, item_id: str, body: str) -> Note:
    """Annotate an incident or an item the caller can see."""
    principal.require(Permission.NOTE_WRITE, subject=f"{kind}:{item_id}")
    with runtime.database.session() as session:
        subject = visible_item(session, principal, kind, item_id)
        note_id = str(uuid.uuid4())
        entry = runtime.log.append(
            session,
            organisation_id=principal.organisation_id,
            actor=principal.actor,
            action="note.added",
            subjects=[subject, f"note:{note_id}"],
            details={"note": note_id, "body_sha256": sha256(body.encode()).hex},
        )
        note = Note(
            id=note_id,
            organisation_id=principal.organisation_id,
            subject=subject,
            body=body,
            author=principal.user_id,
            created_at=entry.time,
            custody_index=entry.index,
        )
        session.add(note)
    return note


def list_notes(runtime: Runtime, principal: Principal, *, kind: str, item_id: str) -> list[Note]:
    """The item's notes, oldest first."""
    with runtime.database.session() as session:
        subject = visible_item(session, principal, kind, item_id)
        return list(
            session.exec(
                select(Note).where(Note.subject == subject).order_by(col(Note.custody_index))
            )
        )
