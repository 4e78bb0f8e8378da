"""The deployment's Ed25519 log key: generated once, for an empty log, kept private on disk.

One key for one log. Once the log holds entries, its checkpoints are signed with this
key and every verifier trusts only it: a new key would fork the log's identity. So a
key is created only while the log is empty; afterwards a missing key, or a key that
does not verify the latest checkpoint, stops the locker until the key is restored.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

from sqlmodel import col, select

from service.core.checkpoint import NoteSigner
from service.db.engine import Database
from service.db.models import LogHead, SignedCheckpoint
from service.errors import ConfigurationError, FormatError, VerificationError

_RESTORE = "restore the key from backup (see docs/operations.md); a new key would fork the log"


def load_or_create_signer(path: Path, *, name: str) -> NoteSigner:
    """Load the signing key at `path`, creating it (mode 0600) if it does not exist.

    Only for an empty log; `open_signer` decides that.
    """
    if path.exists():
        return load_key(path, name=name)
    path.parent.mkdir(parents=True, exist_ok=True)
    signer = NoteSigner.generate(name)
    write_key(path, signer)
    return signer


def write_key(path: Path, signer: NoteSigner) -> None:
    """Write a new key file, mode 0600, durably; never over an existing file."""
    # O_EXCL: two processes starting at once must not each write a different key.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(base64.b64encode(signer.private_bytes()).decode() + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def open_signer(database: Database, path: Path, *, name: str) -> NoteSigner:
    """The log's signing key: created for an empty log, else loaded and checked.

    Raises ConfigurationError when the log has entries and the key is missing or did
    not sign the latest checkpoint.
    """
    with database.session() as session:
        head = session.get(LogHead, 1)
        size = head.size if head is not None else 0
        latest = session.exec(
            select(SignedCheckpoint).order_by(col(SignedCheckpoint.size).desc()).limit(1)
        ).first()
    if size == 0 and latest is None:
        return load_or_create_signer(path, name=name)
    if not path.exists():
        raise ConfigurationError(
            f"LOCKER_SIGNING_KEY_FILE: {path} is missing but the log has {size} entries; "
            + _RESTORE
        )
    signer = load_key(path, name=name)
    if latest is not None:
        try:
            signer.verifier().open(latest.note)
        except VerificationError:
            raise ConfigurationError(
                f"LOCKER_SIGNING_KEY_FILE: {path} did not sign the log's checkpoint of size "
                f"{latest.size}; " + _RESTORE
            ) from None
    return signer


def load_key(path: Path, *, name: str) -> NoteSigner:
    """The key in `path`; ConfigurationError if it cannot be read."""
    try:
        raw = base64.b64decode(path.read_text().strip(), validate=True)
        return NoteSigner.from_private_bytes(name, raw)
    # A file of the wrong length is FormatError, not base64's ValueError.
    except (ValueError, OSError, FormatError) as exc:
        raise ConfigurationError(f"LOCKER_SIGNING_KEY_FILE: cannot load {path}: {exc}") from None
