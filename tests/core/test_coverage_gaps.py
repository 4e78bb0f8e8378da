"""Edge cases of the pure core: key histories beside witness signatures, and absent values
as a reader sees them."""

from __future__ import annotations

import pytest

from service.core.checkpoint import (
    Checkpoint,
    KeyHistory,
    NoteSigner,
    cosign,
    open_checkpoint,
    sign_checkpoint,
)
from service.core.readable import FSI, PDI, plain
from service.errors import SignatureError

ORIGIN = "example.org/log"
CHECKPOINT = Checkpoint(origin=ORIGIN, size=3, root_hash=bytes(32))


def test_a_history_ignores_witness_signatures_and_keys_it_does_not_hold() -> None:
    old, new = NoteSigner.generate(ORIGIN), NoteSigner.generate(ORIGIN)
    witness = NoteSigner.generate("witness.example/w1")
    unknown = NoteSigner.generate(ORIGIN)  # the log's name, but no key of the history
    history = KeyHistory((old.verifier(), new.verifier()))
    note = cosign(cosign(sign_checkpoint(CHECKPOINT, new), witness), unknown)
    assert note.count("\n— ") == 3
    assert open_checkpoint(note, history) == CHECKPOINT
    # The foreign lines are skipped, not the end of the check: a bad signature by a key
    # of the history after them is still refused.
    other = sign_checkpoint(Checkpoint(origin=ORIGIN, size=4, root_hash=bytes(32)), old)
    forged = note + other.splitlines(keepends=True)[-1]
    with pytest.raises(SignatureError, match="invalid signature"):
        open_checkpoint(forged, history)


def test_a_note_signed_only_by_witnesses_is_refused_by_a_history() -> None:
    old = NoteSigner.generate(ORIGIN)
    witness = NoteSigner.generate("witness.example/w1")
    history = KeyHistory((old.verifier(), NoteSigner.generate(ORIGIN).verifier()))
    with pytest.raises(SignatureError, match="no signature by any key"):
        open_checkpoint(sign_checkpoint(CHECKPOINT, witness), history)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, "—"),
        ({"closed_at": None, "open": True}, "closed at —, open true"),
        ([None, 2, None], "—, 2, —"),
        ({"notes": ["שלום", None]}, f"notes {FSI}שלום{PDI}, —"),
    ],
)
def test_absent_values_read_as_a_dash(value: object, text: str) -> None:
    assert plain(value) == text
