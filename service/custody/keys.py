"""The deployment's Ed25519 log key: generated on first start, kept private on disk."""

from __future__ import annotations

import base64
import os
from pathlib import Path

from service.core.checkpoint import NoteSigner
from service.errors import ConfigurationError, FormatError


def load_or_create_signer(path: Path, *, name: str) -> NoteSigner:
    """Load the signing key at `path`, creating it (mode 0600) if it does not exist."""
    if path.exists():
        try:
            raw = base64.b64decode(path.read_text().strip(), validate=True)
            return NoteSigner.from_private_bytes(name, raw)
        # A file of the wrong length is FormatError, not base64's ValueError.
        except (ValueError, OSError, FormatError) as exc:
            raise ConfigurationError(
                f"LOCKER_SIGNING_KEY_FILE: cannot load {path}: {exc}"
            ) from None
    path.parent.mkdir(parents=True, exist_ok=True)
    signer = NoteSigner.generate(name)
    # O_EXCL: two processes starting at once must not each write a different key.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(base64.b64encode(signer.private_bytes()).decode() + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    return signer
