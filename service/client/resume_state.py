"""Where an unfinished upload lives on the server, kept on the field machine between runs.

A run of `locker upload` that is killed (a laptop closed, a power cut) leaves the
server holding the bytes it received. The upload's URL is kept in a small file under
the user's cache folder (`$XDG_CACHE_HOME/locker/uploads`, else `~/.cache/...`), named
by the digest of what identifies the upload (server, file digest and size, name,
metadata), so the next run of the same upload asks the server for its offset and sends
only the rest. The file is removed once the evidence is recorded. Nothing secret is in
it: the URL is useless without the API key.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path
from typing import Any


def default_folder() -> Path:
    """The user's cache folder for unfinished uploads."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "locker" / "uploads"


class ResumeState:
    """The saved URL of one upload (identified by everything that makes it that upload)."""

    def __init__(self, folder: Path, identity: dict[str, Any]) -> None:
        canonical = json.dumps(identity, sort_keys=True, ensure_ascii=False).encode()
        self._path = folder / f"{hashlib.sha256(canonical).hexdigest()}.json"

    def location(self) -> str | None:
        """The URL saved by an earlier run, if any (an unreadable file counts as none)."""
        try:
            saved = json.loads(self._path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        location = saved.get("location") if isinstance(saved, dict) else None
        return location if isinstance(location, str) else None

    def save(self, location: str) -> None:
        """Remember the URL; a cache that cannot be written only loses the resume."""
        with contextlib.suppress(OSError):
            self._path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._path.write_text(json.dumps({"location": location}), encoding="utf-8")

    def forget(self) -> None:
        with contextlib.suppress(OSError):
            self._path.unlink(missing_ok=True)
