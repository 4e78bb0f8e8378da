"""A published key history verifies checkpoints signed by any of its keys, and only those."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.client.verifier import verify_path
from service.core.checkpoint import (
    Checkpoint,
    KeyHistory,
    NoteSigner,
    NoteVerifier,
    cosign,
    open_checkpoint,
    parse_verifier_keys,
    sign_checkpoint,
)
from service.errors import FormatError, SignatureError
from tests.verifier import bundles

ORIGIN = "example.org/log"
CHECKPOINT = Checkpoint(origin=ORIGIN, size=3, root_hash=bytes(32))


def test_history_opens_checkpoints_of_each_key_and_of_no_other() -> None:
    old, new, stranger = (NoteSigner.generate(ORIGIN) for _ in range(3))
    history = parse_verifier_keys(old.verifier().to_text() + "\n" + new.verifier().to_text())
    assert isinstance(history, KeyHistory)
    assert open_checkpoint(sign_checkpoint(CHECKPOINT, old), history) == CHECKPOINT
    assert open_checkpoint(sign_checkpoint(CHECKPOINT, new), history) == CHECKPOINT
    both = cosign(sign_checkpoint(CHECKPOINT, new), old)
    assert open_checkpoint(both, old.verifier()) == open_checkpoint(both, new.verifier())
    with pytest.raises(SignatureError):
        open_checkpoint(sign_checkpoint(CHECKPOINT, stranger), history)


def test_a_bad_signature_by_a_key_of_the_history_is_refused() -> None:
    old, new = NoteSigner.generate(ORIGIN), NoteSigner.generate(ORIGIN)
    history = KeyHistory((old.verifier(), new.verifier()))
    good = sign_checkpoint(CHECKPOINT, new)
    other = sign_checkpoint(Checkpoint(origin=ORIGIN, size=4, root_hash=bytes(32)), old)
    forged = good + other.splitlines(keepends=True)[-1]  # old's signature over another text
    with pytest.raises(SignatureError):
        open_checkpoint(forged, history)


def test_one_line_is_one_key_and_a_history_names_one_log() -> None:
    key = NoteSigner.generate(ORIGIN).verifier()
    assert isinstance(parse_verifier_keys(key.to_text() + "\n\n"), NoteVerifier)
    elsewhere = NoteSigner.generate("other.example/log").verifier()
    with pytest.raises(FormatError):
        parse_verifier_keys(key.to_text() + "\n" + elsewhere.to_text())
    with pytest.raises(FormatError):
        KeyHistory(())


def test_history_round_trips_as_text() -> None:
    keys = tuple(NoteSigner.generate(ORIGIN).verifier() for _ in range(3))
    text = KeyHistory(keys).to_text()
    parsed = parse_verifier_keys(text)
    assert isinstance(parsed, KeyHistory)
    assert [v.to_text() for v in parsed.verifiers] == [k.to_text() for k in keys]


def test_a_bundle_verifies_against_the_published_key_history(tmp_path: Path) -> None:
    """A bundle signed by a rotated-out key, and one signed by the new key: both verify."""
    old, new, stranger = (NoteSigner.generate(bundles.ORIGIN) for _ in range(3))
    history = KeyHistory((old.verifier(), new.verifier())).to_text()
    for signer in (old, new):
        built = bundles.build(
            tmp_path, signer=signer, name=f"{signer.verifier().key_hash.hex()}.zip"
        )
        verdict = verify_path(built.path, history)
        assert verdict.ok, verdict.findings
    foreign = bundles.build(tmp_path, signer=stranger, name="stranger.zip")
    assert not verify_path(foreign.path, history).ok
