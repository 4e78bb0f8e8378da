"""`locker admin rotate-key`: a new key without forking the log's identity.

The rotation is a log entry whose checkpoint the old key signs; checkpoints are
co-signed by the old key during the overlap; the published key history verifies
checkpoints of either key.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from service.accounts.members import bootstrap
from service.core.checkpoint import NoteVerifier, open_checkpoint, parse_verifier_keys
from service.core.entry import decode_entry
from service.custody.rotation import KEY_ROTATED, published_key_history
from service.db.models import CustodyEntry, SignedCheckpoint
from service.errors import SignatureError
from service.operations.fsck import fsck
from service.runtime import Runtime, open_runtime
from service.settings import Settings


def _rotate(data_dir: Path, *extra: str) -> str:
    """Run the command as an operator would; returns the new verifier key it prints."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LOCKER_")}
    done = subprocess.run(
        [sys.executable, "-m", "service", "admin", "rotate-key", *extra],
        env=clean | {"LOCKER_DATA_DIR": str(data_dir)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.strip().splitlines()[-1]


def _grow(runtime: Runtime, name: str) -> str:
    """Append entries and sign a checkpoint over them; returns its note."""
    bootstrap(runtime, organisation=name, email=f"a@{name}.example")
    return runtime.log.latest_checkpoint(runtime.database).note


def test_rotation_keeps_one_log_identity(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    runtime = open_runtime(settings)
    before = _grow(runtime, "first")
    old_key = runtime.log.verifier.to_text()
    runtime.close()

    new_key = _rotate(tmp_path)
    assert new_key != old_key
    old, new = NoteVerifier.from_text(old_key), NoteVerifier.from_text(new_key)

    runtime = open_runtime(settings)  # starts: the latest checkpoint verifies under the new key
    try:
        assert runtime.log.verifier.to_text() == new_key
        with runtime.database.session() as session:
            rotation = session.exec(
                CustodyEntry.__table__.select().where(CustodyEntry.action == KEY_ROTATED)  # type: ignore[attr-defined]
            ).one()
            fields = decode_entry(rotation.leaf)
            over_rotation = session.get(SignedCheckpoint, rotation.index + 1)
        assert (fields["old_key"], fields["new_key"]) == (old_key, new_key)
        assert over_rotation is not None
        old.open(over_rotation.note)  # the old key vouches for the new one
        new.open(over_rotation.note)
        during_overlap = _grow(runtime, "second")
        assert during_overlap.count("\n— ") == 2
        old.open(during_overlap)
        new.open(during_overlap)
        history = published_key_history(runtime.database, new_key)
        assert history == [old_key, new_key]
        published = parse_verifier_keys("\n".join(history) + "\n")
        assert open_checkpoint(before, published).size > 0  # old key only
        with pytest.raises(SignatureError):
            new.open(before)
        assert fsck(runtime).findings == []
    finally:
        runtime.close()


def test_without_overlap_the_old_key_stops_signing(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    runtime = open_runtime(settings)
    _grow(runtime, "first")
    old = runtime.log.verifier
    runtime.close()
    new = NoteVerifier.from_text(_rotate(tmp_path, "--overlap-days", "0"))
    runtime = open_runtime(settings)
    try:
        after = _grow(runtime, "second")
        new.open(after)
        with pytest.raises(SignatureError):
            old.open(after)
    finally:
        runtime.close()
