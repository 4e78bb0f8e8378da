"""Versioned records: written once, each version's canonical digest in the custody log.

An incident's record and an item's asserted metadata are both kept this way. An edit
is a new version made from the latest one; these are the rules both follow, so the two
cannot drift: a stale edit is refused (409), an edit that changes nothing is refused
(422), the log entry names the version and its digest, and history is oldest first.
"""

from __future__ import annotations

from typing import TypeVar

from sqlalchemy.orm import Mapped
from sqlmodel import Session, col, select

from service.db.models import EvidenceVersion, IncidentVersion
from service.errors import Conflict, InvalidInput

Version = TypeVar("Version", IncidentVersion, EvidenceVersion)


def require_latest(record: str, *, latest: int, base_version: int | None) -> None:
    """Raise Conflict unless the edit was made on the latest version (or names none).

    `record` names what is edited, as the message shows it ("incident <id>").
    """
    if base_version is not None and base_version != latest:
        raise Conflict(
            f"{record} is at version {latest}, not {base_version}; "
            "read it again and reapply the change"
        )


def require_change(record: str, *, latest_sha256: str, new_sha256: str) -> None:
    """Raise InvalidInput when the new version's digest is the latest one's: no new version."""
    if new_sha256 == latest_sha256:
        raise InvalidInput(f"the change leaves {record} as it is")


def version_details(
    *, version: int, digest_name: str, digest: str, reason: str
) -> dict[str, object]:
    """The details of the custody entry that records a version: its number, digest, reason."""
    details: dict[str, object] = {"version": version, digest_name: digest}
    if reason:
        details["reason"] = reason
    return details


def version_history(
    session: Session, table: type[Version], owner: Mapped[str], record_id: str
) -> list[Version]:
    """Every version of the record whose id is in column `owner`, oldest first.

    `owner` is the version table's column naming the record, as `col(...)` gives it.
    """
    query = select(table).where(owner == record_id).order_by(col(table.version))
    return list(session.exec(query))


def newest_version(
    session: Session, table: type[Version], owner: Mapped[str], record_id: str
) -> Version | None:
    """The record's latest version, or None if it has none."""
    query = select(table).where(owner == record_id).order_by(col(table.version).desc())
    return session.exec(query).first()
