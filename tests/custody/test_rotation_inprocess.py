"""Rotating the log key, in process: the entry and its doubly signed checkpoint, the key
files moved into place, refusals that leave everything as it was, and a rotation a crash
interrupted finished (or dropped) at the next start."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlmodel import col, select

from service.core.checkpoint import NoteSigner, NoteVerifier, open_checkpoint
from service.core.entry import decode_entry
from service.custody.keys import load_key, write_key
from service.custody.rotation import (
    DEPLOYMENT,
    KEY_ROTATED,
    co_signers,
    finish_rotation,
    key_history,
    published_key_history,
    rotate_key,
)
from service.db.models import CustodyEntry, SignedCheckpoint
from service.errors import ConfigurationError, SignatureError
from service.runtime import Runtime, open_runtime
from service.settings import Settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path)


@pytest.fixture
def runtime(settings: Settings) -> Iterator[Runtime]:
    runtime = open_runtime(settings)
    yield runtime
    runtime.close()


def _grow(runtime: Runtime, count: int = 3) -> SignedCheckpoint:
    """Append entries and sign a checkpoint over them."""
    with runtime.database.session() as session:
        for n in range(count):
            runtime.log.append(
                session,
                organisation_id="org-1",
                actor="user:alice",
                action="evidence.ingested",
                subjects=[f"evidence:{n}"],
            )
    return runtime.log.latest_checkpoint(runtime.database)


def _sibling(path: Path, suffix: str) -> Path:
    return path.with_name(path.name + suffix)


def _size(runtime: Runtime) -> int:
    with runtime.database.session() as session:
        return runtime.log.size(session)


def test_a_rotation_records_both_keys_and_installs_the_new_one(
    runtime: Runtime, settings: Settings
) -> None:
    before = _grow(runtime)
    path = settings.effective_signing_key_file
    origin = settings.log_origin
    old = load_key(path, name=origin)
    old_key = old.verifier().to_text()
    assert published_key_history(runtime.database, old_key) == [old_key]  # never rotated

    rotation = rotate_key(runtime, overlap=timedelta(days=30))

    assert rotation.index == before.size
    assert rotation.old_key == old_key != rotation.new_key
    assert timedelta(days=29) < rotation.overlap_until - datetime.now(UTC) <= timedelta(days=30)
    # The files: the new key in place, the old one kept for co-signing, nothing pending.
    assert load_key(path, name=origin).verifier().to_text() == rotation.new_key
    assert _sibling(path, ".previous").read_bytes() != path.read_bytes()
    assert load_key(_sibling(path, ".previous"), name=origin).private_bytes() == (
        old.private_bytes()
    )
    assert not _sibling(path, ".next").exists()
    with runtime.database.session() as session:
        entry = session.get(CustodyEntry, rotation.index)
        assert entry is not None and entry.action == KEY_ROTATED
        assert entry.organisation_id == DEPLOYMENT
        fields = decode_entry(entry.leaf)
        assert (fields["old_key"], fields["new_key"]) == (rotation.old_key, rotation.new_key)
        assert fields["subject"] == "log:signing-key"
        over = session.get(SignedCheckpoint, rotation.index + 1)
        assert over is not None
        assert over.root_hash == runtime.log.root(session, rotation.index + 1)
        assert key_history(session, rotation.new_key) == [old_key, rotation.new_key]
    # Signed by both: the old key vouches for the new one.
    old_verifier, new_verifier = (NoteVerifier.from_text(k) for k in (old_key, rotation.new_key))
    for verifier in (old_verifier, new_verifier):
        assert open_checkpoint(over.note, verifier, origin=origin).size == rotation.index + 1

    assert published_key_history(runtime.database, rotation.new_key) == [old_key, rotation.new_key]

    reopened = open_runtime(settings)  # the next start signs with the new key, co-signed
    try:
        assert reopened.log.verifier.to_text() == rotation.new_key
        after = _grow(reopened, 1)
        old_verifier.open(after.note)
        new_verifier.open(after.note)
    finally:
        reopened.close()


def test_an_interrupted_rotation_blocks_the_next_until_a_start_finishes_it(
    runtime: Runtime, settings: Settings
) -> None:
    _grow(runtime)
    path = settings.effective_signing_key_file
    pending = _sibling(path, ".next")
    stray = NoteSigner.generate(settings.log_origin)
    write_key(pending, stray)
    key, size = path.read_bytes(), _size(runtime)
    interrupted = f"{re.escape(str(pending))} exists: a rotation was interrupted"
    with pytest.raises(ConfigurationError, match=interrupted):
        rotate_key(runtime, overlap=timedelta(days=1))
    assert path.read_bytes() == key and _size(runtime) == size  # nothing recorded
    assert load_key(pending, name=settings.log_origin).private_bytes() == stray.private_bytes()


def test_a_rotation_whose_entry_fails_leaves_the_old_key_alone(
    runtime: Runtime, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    checkpoint = _grow(runtime)
    path = settings.effective_signing_key_file
    key, size = path.read_bytes(), _size(runtime)

    def refuse(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the database went away")

    monkeypatch.setattr(runtime.log, "append", refuse)
    with pytest.raises(RuntimeError, match="went away"):
        rotate_key(runtime, overlap=timedelta(days=1))
    monkeypatch.undo()
    assert path.read_bytes() == key
    assert not _sibling(path, ".next").exists() and not _sibling(path, ".previous").exists()
    assert _size(runtime) == size
    with runtime.database.session() as session:
        latest = session.exec(
            select(SignedCheckpoint).order_by(col(SignedCheckpoint.size).desc())
        ).first()
    assert latest is not None and latest.size == checkpoint.size
    # And a later rotation goes through.
    assert rotate_key(runtime, overlap=timedelta(days=1)).index == size


def test_a_start_finishes_a_rotation_recorded_before_a_crash(
    runtime: Runtime, settings: Settings
) -> None:
    _grow(runtime)
    path = settings.effective_signing_key_file
    rotation = rotate_key(runtime, overlap=timedelta(days=30))
    # The state of a crash after the entry committed and before the renames.
    os.replace(path, _sibling(path, ".next"))
    os.replace(_sibling(path, ".previous"), path)
    assert load_key(path, name=settings.log_origin).verifier().to_text() == rotation.old_key

    finish_rotation(runtime.database, path, name=settings.log_origin)

    assert load_key(path, name=settings.log_origin).verifier().to_text() == rotation.new_key
    previous = load_key(_sibling(path, ".previous"), name=settings.log_origin)
    assert previous.verifier().to_text() == rotation.old_key
    assert not _sibling(path, ".next").exists()
    [co_signer] = co_signers(runtime.database, path, name=settings.log_origin)
    assert co_signer.verifier().to_text() == rotation.old_key


@pytest.mark.parametrize("rotated_before", [False, True])
def test_a_start_drops_a_new_key_that_was_never_recorded(
    runtime: Runtime, settings: Settings, rotated_before: bool
) -> None:
    _grow(runtime)
    path = settings.effective_signing_key_file
    if rotated_before:
        rotate_key(runtime, overlap=timedelta(days=30))
    previous = _sibling(path, ".previous")
    kept = previous.read_bytes() if rotated_before else None
    key, size = path.read_bytes(), _size(runtime)
    write_key(_sibling(path, ".next"), NoteSigner.generate(settings.log_origin))  # then a crash

    reopened = open_runtime(settings)  # finishes what it can at start
    try:
        assert not _sibling(path, ".next").exists()
        assert path.read_bytes() == key and _size(reopened) == size
        assert (previous.read_bytes() if previous.exists() else None) == kept
        assert (
            reopened.log.verifier.to_text()
            == load_key(path, name=settings.log_origin).verifier().to_text()
        )
    finally:
        reopened.close()


def test_without_overlap_no_key_co_signs(runtime: Runtime, settings: Settings) -> None:
    _grow(runtime)
    rotation = rotate_key(runtime, overlap=timedelta(0))
    path = settings.effective_signing_key_file
    assert co_signers(runtime.database, path, name=settings.log_origin) == []
    reopened = open_runtime(settings)
    try:
        after = _grow(reopened, 1)
        NoteVerifier.from_text(rotation.new_key).open(after.note)
        with pytest.raises(SignatureError):
            NoteVerifier.from_text(rotation.old_key).open(after.note)
    finally:
        reopened.close()
