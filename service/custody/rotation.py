"""Rotating the log's signing key without forking the log's identity.

A rotation is one entry, `log.key_rotated`, naming the old and the new verifier key.
The checkpoint over it is signed by both keys: whoever trusts the old key learns the
new one from a checkpoint the old key signed. For an overlap period every later
checkpoint carries both signatures, so verifiers holding only the old key keep
working while they fetch the key history (`GET /v1/custody/key-history`, oldest key
first), which `locker verify --key` accepts in place of a single key.

Files: the key stays at LOCKER_SIGNING_KEY_FILE; a rotation writes the new key to
`<file>.next`, records the entry, then moves the old key to `<file>.previous` (kept
for co-signing until the overlap ends) and the new one into place. A crash between
the entry and the renames is finished at the next start.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from sqlmodel import Session, col, select

from service.core.checkpoint import Checkpoint, NoteSigner, cosign, sign_checkpoint
from service.core.entry import decode_entry, rfc3339
from service.custody.keys import load_key, write_key
from service.custody.sequencer import DEPLOYMENT
from service.db.engine import Database
from service.db.models import CustodyEntry
from service.errors import ConfigurationError

if TYPE_CHECKING:
    from service.runtime import Runtime

KEY_ROTATED = "log.key_rotated"
_SUBJECT = "log:signing-key"


@dataclass(frozen=True, slots=True, kw_only=True)
class Rotation:
    """A finished rotation: its entry and the two verifier keys."""

    index: int
    old_key: str
    new_key: str
    overlap_until: datetime


def rotate_key(runtime: Runtime, *, overlap: timedelta) -> Rotation:
    """Replace the signing key by a new one, recorded in the log under both keys."""
    path = runtime.settings.effective_signing_key_file
    origin = runtime.settings.log_origin
    old = load_key(path, name=origin)
    new = NoteSigner.generate(origin)
    pending = _sibling(path, ".next")
    try:
        write_key(pending, new)
    except FileExistsError:
        raise ConfigurationError(
            f"{pending} exists: a rotation was interrupted; start the locker once to finish it"
        ) from None
    until = datetime.now(UTC) + overlap
    old_key, new_key = old.verifier().to_text(), new.verifier().to_text()

    # The checkpoint over the rotation is signed by both: the old key vouches for the
    # new one, and the new one can open the log.
    def sign(checkpoint: Checkpoint) -> str:
        return cosign(sign_checkpoint(checkpoint, new), old)

    try:
        with (
            runtime.log.signing_with(runtime.database, sign),
            runtime.database.session() as session,
        ):
            entry = runtime.log.append(
                session,
                organisation_id=DEPLOYMENT,
                actor="operator",
                action=KEY_ROTATED,
                subjects=[_SUBJECT],
                details={"old_key": old_key, "new_key": new_key, "overlap_until": rfc3339(until)},
            )
            runtime.log.sign_head(session, sign)
    except BaseException:
        pending.unlink()
        raise
    _install(path)
    return Rotation(index=entry.index, old_key=old_key, new_key=new_key, overlap_until=until)


def finish_rotation(database: Database, path: Path, *, name: str) -> None:
    """Finish a rotation a crash interrupted, or drop a new key it never recorded."""
    pending = _sibling(path, ".next")
    if not pending.exists():
        return
    with database.session() as session:
        latest = _latest_rotation(session)
    new_key = load_key(pending, name=name).verifier().to_text()
    if latest is not None and latest["new_key"] == new_key:
        _install(path)
    else:
        pending.unlink()


def co_signers(database: Database, path: Path, *, name: str) -> list[NoteSigner]:
    """The rotated-out key, while the overlap of the latest rotation lasts."""
    previous = _sibling(path, ".previous")
    if not previous.exists():
        return []
    with database.session() as session:
        latest = _latest_rotation(session)
    if latest is None or datetime.now(UTC) >= _parse_time(str(latest["overlap_until"])):
        return []
    signer = load_key(previous, name=name)
    return [signer] if signer.verifier().to_text() == latest["old_key"] else []


def published_key_history(database: Database, current: str) -> list[str]:
    """`key_history` in a transaction of its own."""
    with database.session() as session:
        return key_history(session, current)


def key_history(session: Session, current: str) -> list[str]:
    """Every verifier key of the log, oldest first (just `current` if never rotated)."""
    rotations = [
        decode_entry(e.leaf)
        for e in session.exec(
            select(CustodyEntry)
            .where(CustodyEntry.action == KEY_ROTATED)
            .order_by(col(CustodyEntry.index))
        )
    ]
    if not rotations:
        return [current]
    return [str(rotations[0]["old_key"]), *(str(r["new_key"]) for r in rotations)]


def _latest_rotation(session: Session) -> dict[str, object] | None:
    entry = session.exec(
        select(CustodyEntry)
        .where(CustodyEntry.action == KEY_ROTATED)
        .order_by(col(CustodyEntry.index).desc())
        .limit(1)
    ).first()
    return decode_entry(entry.leaf) if entry is not None else None


def _install(path: Path) -> None:
    """Move the old key aside (for co-signing) and the new one into place, durably."""
    os.replace(path, _sibling(path, ".previous"))
    os.replace(_sibling(path, ".next"), path)
    descriptor = os.open(path.parent, os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _sibling(path: Path, suffix: str) -> Path:
    return path.with_name(path.name + suffix)


def _parse_time(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
