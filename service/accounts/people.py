"""Who the references in custody entries are: members by e-mail, the organisation by name.

A member's e-mail is fixed when the member is added (no use case changes it), so the
e-mail read now is the one recorded at the time of every entry that names them. The
locker records no other name for a person.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlmodel import select

from service.db.models import Organisation, User

if TYPE_CHECKING:
    from service.runtime import Runtime

OPERATOR = "operator"
# Actors that are no person: the operator's commands and the locker's own background work.
_MACHINE_NAMES = {
    OPERATOR: "the locker's operator (command line)",
    "system:analysis": "the locker's metadata analysis (automatic)",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class People:
    """The names behind `user:<id>`, `organisation:<id>` and `operator` in entries."""

    organisation: str = ""
    members: Mapping[str, str] = field(default_factory=dict)

    def name(self, reference: str) -> str:
        """A reader's name for a reference (an e-mail), or "" if it names no one."""
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
    """The organisation's name and every member's e-mail, by user id."""
    with runtime.database.session() as session:
        organisation = session.get(Organisation, organisation_id)
        members = session.exec(
            select(User.id, User.email).where(User.organisation_id == organisation_id)
        ).all()
    return People(
        organisation=organisation.name if organisation is not None else "",
        members={user_id: email for user_id, email in members},
    )
