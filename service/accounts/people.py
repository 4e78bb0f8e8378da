"""Who the references in custody entries are: members by name and e-mail, the
organisation by name.

A member's name and e-mail are recorded when the member is added, and the
`member.added` entry signs both. Nothing changes them afterwards, and reports read
them from that entry, not from the member's row: a name is shown only as the log
signed it. Members added before names were recorded are named by e-mail alone (their
row's, which no use case changes either).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlmodel import Session, col, select

from service.core.entry import decode_entry, entry_subjects
from service.core.readable import plain
from service.db.models import CustodyEntry, Organisation, User
from service.errors import CONTROL_CHARACTERS, InvalidInput

if TYPE_CHECKING:
    from service.runtime import Runtime

OPERATOR = "operator"
MEMBER_ADDED = "member.added"
NAME_LIMIT = 200  # the user_account.name column
# Embeddings, overrides and isolates (UAX #9): a name holding one could reorder the
# e-mail shown beside it, or end early the isolate a report puts the name in.
_BIDI_CONTROLS = re.compile("[\u202a-\u202e\u2066-\u2069]")
# Actors that are no person: the operator's commands and the locker's own background work.
_MACHINE_NAMES = {
    OPERATOR: "the locker's operator (command line)",
    "system:analysis": "the locker's metadata analysis (automatic)",
}


def person_name(text: str | None) -> str | None:
    """A member's name as recorded: trimmed, in any script, one line of at most
    NAME_LIMIT characters without control characters; InvalidInput otherwise. None
    (no name given) stays None."""
    if text is None:
        return None
    name = text.strip()
    if not name:
        raise InvalidInput("name: must not be empty")
    if len(name) > NAME_LIMIT:
        raise InvalidInput(f"name: at most {NAME_LIMIT} characters")
    if CONTROL_CHARACTERS.search(name) or _BIDI_CONTROLS.search(name):
        raise InvalidInput("name: must not hold control characters")
    return name


def person_label(email: str, name: str | None) -> str:
    """A member as reports show them: `Name <e-mail>`, each part isolated if it runs
    right to left; the e-mail alone when no name was recorded."""
    return f"{plain(name)} <{plain(email)}>" if name else email


@dataclass(frozen=True, slots=True, kw_only=True)
class People:
    """The names behind `user:<id>`, `organisation:<id>` and `operator` in entries."""

    organisation: str = ""
    members: Mapping[str, str] = field(default_factory=dict)  # user id → person_label

    def name(self, reference: str) -> str:
        """A reader's name for a reference ("Name <e-mail>"), or "" if it names no one."""
        if reference in _MACHINE_NAMES:
            return _MACHINE_NAMES[reference]
        kind, _, identifier = reference.partition(":")
        if kind == "user":
            return self.members.get(identifier, "")
        if kind == "organisation":
            return self.organisation
        return ""

    def by_reference(self) -> dict[str, str]:
        """Every name by the reference entries use: `user:<id>` and `operator`."""
        return _MACHINE_NAMES | {f"user:{k}": v for k, v in self.members.items()}


def people_of(runtime: Runtime, organisation_id: str) -> People:
    """The organisation's name and every member's label, by user id."""
    with runtime.database.session() as session:
        organisation = session.get(Organisation, organisation_id)
        members = list(session.exec(select(User).where(User.organisation_id == organisation_id)))
        signed = signed_members(session, members)
    return People(
        organisation=organisation.name if organisation is not None else "",
        members={
            user.id: person_label(*signed.get(user.id, (user.email, None))) for user in members
        },
    )


def signed_members(session: Session, members: Iterable[User]) -> dict[str, tuple[str, str | None]]:
    """(e-mail, name) as each member's `member.added` entry signed them, by user id.

    Left out: members added before names were recorded (no entry), and rows that point
    at an entry adding someone else, which fsck reports.
    """
    by_index = {user.custody_index: user.id for user in members if user.custody_index is not None}
    leaves = session.exec(
        select(CustodyEntry.index, CustodyEntry.leaf).where(col(CustodyEntry.index).in_(by_index))
    )
    signed: dict[str, tuple[str, str | None]] = {}
    for index, leaf in leaves:
        user_id = by_index[index]
        fields = decode_entry(leaf)
        email, name = fields.get("email"), fields.get("name")
        if (
            fields.get("action") == MEMBER_ADDED
            and entry_subjects(fields)[:1] == [f"user:{user_id}"]
            and isinstance(email, str)
        ):
            signed[user_id] = (email, name if isinstance(name, str) else None)
    return signed
