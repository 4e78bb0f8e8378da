"""C2SP signed notes and checkpoints: known answers, round trips, tampering."""

from __future__ import annotations

import base64
import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.core.checkpoint import (
    Checkpoint,
    NoteSigner,
    NoteVerifier,
    open_checkpoint,
    sign_checkpoint,
)
from service.errors import FormatError, SignatureError

# The example key and note of golang.org/x/mod/sumdb/note, the reference implementation.
GO_SEED = base64.b64decode("AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz")[1:]
GO_VERIFIER = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
GO_NOTE = (
    GO_TEXT + "\n— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNX"
    "gKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)

SIGNER = NoteSigner.generate("locker.example/log")
VERIFIER = SIGNER.verifier()
ROOT = hashlib.sha256(b"root").digest()
CHECKPOINT = Checkpoint(origin="locker.example/log", size=42, root_hash=ROOT)
ROOT_B64 = base64.b64encode(ROOT).decode()

origins = st.text(
    alphabet=st.characters(exclude_categories=["Cc", "Cs"]), min_size=1
) | st.sampled_from(["سجل-الأدلة.مثال/١", "منظمة حقوق الإنسان", "example.com/log+1"])


def test_reference_key_and_note() -> None:
    signer = NoteSigner.from_private_bytes("PeterNeumann", GO_SEED)
    assert signer.private_bytes() == GO_SEED
    assert signer.verifier().to_text() == GO_VERIFIER
    assert signer.sign(GO_TEXT) == GO_NOTE
    assert NoteVerifier.from_text(GO_VERIFIER).open(GO_NOTE) == GO_TEXT


def test_key_hash_definition() -> None:
    verifier = NoteVerifier.from_text(GO_VERIFIER)
    raw = verifier.public_key.public_bytes_raw()
    assert verifier.name == "PeterNeumann"
    assert verifier.key_hash == hashlib.sha256(b"PeterNeumann\n\x01" + raw).digest()[:4]


def test_checkpoint_text() -> None:
    assert CHECKPOINT.to_text() == f"locker.example/log\n42\n{ROOT_B64}\n"
    with_extensions = Checkpoint(origin="o", size=0, root_hash=ROOT, extensions=("a b", "c"))
    assert with_extensions.to_text() == f"o\n0\n{ROOT_B64}\na b\nc\n"
    assert Checkpoint.from_text(with_extensions.to_text()) == with_extensions


@given(
    origin=origins,
    size=st.integers(min_value=0, max_value=2**64 - 1),
    root=st.binary(min_size=32, max_size=32),
    extensions=st.lists(
        st.text(alphabet=st.characters(exclude_categories=["Cc", "Cs"]), min_size=1), max_size=3
    ),
)
def test_checkpoint_round_trips(origin: str, size: int, root: bytes, extensions: list[str]) -> None:
    checkpoint = Checkpoint(origin=origin, size=size, root_hash=root, extensions=tuple(extensions))
    assert Checkpoint.from_text(checkpoint.to_text()) == checkpoint
    note = sign_checkpoint(checkpoint, SIGNER)
    assert open_checkpoint(note, VERIFIER, origin=origin) == checkpoint


@pytest.mark.parametrize(
    "text",
    [
        f"o\n1\n{ROOT_B64}",  # no final newline
        "o\n1\n",
        "",
        f"\n1\n{ROOT_B64}\n",  # empty origin
        f"o\n01\n{ROOT_B64}\n",
        f"o\n-1\n{ROOT_B64}\n",
        f"o\n+1\n{ROOT_B64}\n",
        f"o\n 1\n{ROOT_B64}\n",
        f"o\n1_0\n{ROOT_B64}\n",
        f"o\n١\n{ROOT_B64}\n",  # Arabic-Indic digit one
        f"o\n{2**64}\n{ROOT_B64}\n",
        f"o\n1\n{base64.b64encode(ROOT[:31]).decode()}\n",
        f"o\n1\n{ROOT_B64[:-1]}\n",  # bad padding
        f"o\n1\n{ROOT_B64[:-2]}9=\n",  # non-canonical trailing bits
        f"o\n1\n{ROOT_B64} \n",
        f"o\n1\n{ROOT_B64}\n\n",  # empty extension line
        f"o\n1\n{ROOT_B64}\nx\r\n",
        f"o\t\n1\n{ROOT_B64}\n",
    ],
)
def test_checkpoint_from_text_is_strict(text: str) -> None:
    with pytest.raises(FormatError):
        Checkpoint.from_text(text)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"origin": "a\nb"}, "one non-empty line"),
        ({"origin": "\ud800"}, "not valid UTF-8"),
        ({"size": -1}, "size must be in"),
        ({"root_hash": b"x"}, "root hash has wrong size: expected 32, got 1"),
        ({"extensions": ("",)}, "extension line must be one non-empty line"),
    ],
)
def test_checkpoint_constructor_validates(kwargs: dict[str, object], message: str) -> None:
    fields: dict[str, object] = {"origin": "o", "size": 1, "root_hash": ROOT, **kwargs}
    with pytest.raises(FormatError, match=message):
        Checkpoint(**fields)  # type: ignore[arg-type]


@given(body=st.text(alphabet=st.characters(exclude_categories=["Cc", "Cs"]) | st.just("\n")))
def test_sign_and_open_any_text(body: str) -> None:
    body += "\n"
    assert VERIFIER.open(SIGNER.sign(body)) == body


@given(origin=origins.filter(lambda o: "+" not in o and not any(c.isspace() for c in o)))
def test_verifier_key_round_trips(origin: str) -> None:
    signer = NoteSigner.generate(origin)
    text = signer.verifier().to_text()
    verifier = NoteVerifier.from_text(text)
    assert verifier.to_text() == text
    assert verifier.key_hash == signer.verifier().key_hash
    again = NoteSigner.from_private_bytes(origin, signer.private_bytes())
    assert again.verifier().to_text() == text


def test_open_checkpoint_checks_origin() -> None:
    note = sign_checkpoint(CHECKPOINT, SIGNER)
    assert open_checkpoint(note, VERIFIER) == CHECKPOINT
    with pytest.raises(FormatError, match=r"origin is 'locker\.example/log', expected 'other'"):
        open_checkpoint(note, VERIFIER, origin="other")


def test_open_checkpoint_refuses_signed_garbage() -> None:
    with pytest.raises(FormatError):
        open_checkpoint(SIGNER.sign("not a checkpoint\n"), VERIFIER)


def _tamper_signature(note: str) -> str:
    text, line = note.rsplit("\n\n", 1)
    prefix, encoded = line.rsplit(" ", 1)
    raw = bytearray(base64.b64decode(encoded))
    raw[10] ^= 1
    return f"{text}\n\n{prefix} {base64.b64encode(bytes(raw)).decode()}\n"


def test_tampering_is_detected() -> None:
    note = sign_checkpoint(CHECKPOINT, SIGNER)
    with pytest.raises(SignatureError, match=r"invalid signature by locker\.example/log"):
        VERIFIER.open(note.replace("\n42\n", "\n43\n"))
    with pytest.raises(SignatureError, match="invalid signature"):
        VERIFIER.open(_tamper_signature(note))
    impostor = NoteSigner.generate("locker.example/log")  # same name, other key
    with pytest.raises(SignatureError, match=r"no signature by locker\.example/log"):
        impostor.verifier().open(note)


def test_unknown_signatures_are_ignored() -> None:
    note = sign_checkpoint(CHECKPOINT, SIGNER)
    witness = NoteSigner.generate("witness.example")
    witness_line = witness.sign(CHECKPOINT.to_text()).rsplit("\n\n", 1)[1]
    cosigned = note + witness_line
    assert open_checkpoint(cosigned, VERIFIER) == CHECKPOINT
    assert open_checkpoint(cosigned, witness.verifier()) == CHECKPOINT
    only_witness = CHECKPOINT.to_text() + "\n" + witness_line
    with pytest.raises(SignatureError, match=r"no signature by locker\.example/log"):
        VERIFIER.open(only_witness)


def test_signature_count_is_capped() -> None:
    note = SIGNER.sign(GO_TEXT)
    line = note.rsplit("\n\n", 1)[1]
    assert VERIFIER.open(note + line * 99) == GO_TEXT
    with pytest.raises(FormatError, match="more than 100 signatures"):
        VERIFIER.open(note + line * 100)


GOOD_LINE = GO_NOTE.rsplit("\n\n", 1)[1]


@pytest.mark.parametrize(
    "note",
    [
        GO_TEXT + GOOD_LINE,  # no blank line
        GO_NOTE[:-1],  # no final newline
        GO_TEXT + "\n",  # no signatures
        GO_NOTE + "\n",  # blank line after the signatures
        GO_TEXT + "\n- PeterNeumann x08go/ZJ\n",  # hyphen, not em dash
        GO_TEXT + "\n—PeterNeumann x08go/ZJ\n",
        GO_TEXT + "\n— PeterNeumann\n",  # no signature
        GO_TEXT + "\n— PeterNeumann x08go/ZJ!=\n",  # bad base64
        GO_TEXT + "\n— PeterNeumann AAAA\n",  # too short for a key hash and signature
        GO_TEXT + "\n—  x08go/ZJkuBS9UG/\n",  # empty name
        GO_TEXT + "\n— Peter+Neumann x08go/ZJkuBS9UG/\n",
        GO_NOTE.replace("problem,", "problem,\x07"),  # control character
        GO_NOTE.replace("\n", "\r\n"),
        "\ud800" + GO_NOTE,
    ],
)
def test_malformed_notes(note: str) -> None:
    with pytest.raises(FormatError):
        NoteVerifier.from_text(GO_VERIFIER).open(note)


def test_signature_of_wrong_length_by_known_key() -> None:
    key_hash = NoteVerifier.from_text(GO_VERIFIER).key_hash
    short = base64.b64encode(key_hash + b"\x00" * 10).decode()
    with pytest.raises(SignatureError):
        NoteVerifier.from_text(GO_VERIFIER).open(f"{GO_TEXT}\n— PeterNeumann {short}\n")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("PeterNeumann", "8 hex digits"),
        ("PeterNeumann+c74f20a+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "8 hex digits"),
        ("PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "hash mismatch"),
        ("PeterNeumanm+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "hash mismatch"),
        ("PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW=", "base64"),
        ("PeterNeumann+c74f20a3+AhpjMJEKJUqY6KbhVgsX3kVF7xJ9Nfs6Ml31cV4l4Z/M", "Ed25519"),
        ("PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy", "Ed25519"),
        ("+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "invalid key name"),
        ("Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "key name"),
    ],
)
def test_malformed_verifier_keys(text: str, message: str) -> None:
    with pytest.raises(FormatError, match=message):
        NoteVerifier.from_text(text)


def test_uppercase_key_hash_is_accepted_like_the_reference() -> None:
    verifier = NoteVerifier.from_text(GO_VERIFIER.replace("c74f20a3", "C74F20A3"))
    assert verifier.to_text() == GO_VERIFIER


@pytest.mark.parametrize("name", ["", "a b", "a+b", "a\u00a0b", "a\u2003b", "tab\there", "\ud800"])
def test_key_names_are_validated(name: str) -> None:
    with pytest.raises(FormatError):
        NoteSigner.generate(name)


def test_signer_inputs_are_validated() -> None:
    with pytest.raises(FormatError, match="32 bytes, got 31"):
        NoteSigner.from_private_bytes("name", b"x" * 31)
    with pytest.raises(FormatError, match="must end with a newline"):
        SIGNER.sign("no newline")
    with pytest.raises(FormatError, match="control character"):
        SIGNER.sign("bell\x07\n")
    assert NoteSigner.generate("منظمة/سجل").verifier().name == "منظمة/سجل"
