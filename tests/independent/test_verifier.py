"""Tests of the independent verifier: known-answer Merkle vectors and signed checkpoints."""

import base64
import hashlib
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from service.core.entry import decode_entry, entry_subjects
from tests.independent.verifier import (
    check_bundle_claims,
    open_checkpoint,
    parse_entry,
    parse_verifier_key,
    signed_subjects,
    verify_consistency,
    verify_inclusion,
    verify_inclusion_hash,
)
from tests.verifier import tamper_suite
from tests.verifier.bundles import build, read_members

# transparency-dev/merkle's vectors, shipped with the tests (see their README there).
VECTORS = Path(__file__).resolve().parents[1] / "core" / "testdata" / "merkle"


def _vector_files(kind: str) -> list[Path]:
    # Never let a missing folder turn into an empty (silently skipped) parameter set.
    return sorted((VECTORS / kind).glob("*/*.json")) or [VECTORS / kind / "MISSING"]


def _vector_id(path: Path) -> str:
    return f"{path.parent.name}/{path.stem}"


def _load(path: Path) -> tuple[dict, list[bytes]]:
    if not path.is_file():
        pytest.fail(f"Merkle known-answer vectors missing: expected JSON files under {path.parent}")
    data = json.loads(path.read_text())
    return data, [base64.b64decode(h) for h in data["proof"] or []]


def test_vectors_are_present() -> None:
    assert VECTORS.is_dir(), (
        f"Merkle known-answer vectors not found at {VECTORS}; "
        "they ship in tests/core/testdata/merkle"
    )
    assert len(_vector_files("inclusion")) > 50, f"too few inclusion vectors in {VECTORS}"
    assert len(_vector_files("consistency")) > 50, f"too few consistency vectors in {VECTORS}"


@pytest.mark.parametrize("path", _vector_files("inclusion"), ids=_vector_id)
def test_inclusion_vector(path: Path) -> None:
    v, proof = _load(path)
    args = (
        base64.b64decode(v["leafHash"]),
        v["leafIdx"],
        v["treeSize"],
        proof,
        base64.b64decode(v["root"]),
    )
    if v["wantErr"]:
        with pytest.raises(ValueError):
            verify_inclusion_hash(*args)
    else:
        verify_inclusion_hash(*args)


@pytest.mark.parametrize("path", _vector_files("consistency"), ids=_vector_id)
def test_consistency_vector(path: Path) -> None:
    v, proof = _load(path)
    r1, r2 = base64.b64decode(v["root1"]), base64.b64decode(v["root2"])
    args = (v["size1"], v["size2"], r1, r2, proof)
    if v["wantErr"]:
        with pytest.raises(ValueError):
            verify_consistency(*args)
    else:
        verify_consistency(*args)


# --- a tiny reference tree built straight from RFC 9162 §2.1.1 MTH ----------------


def _mth(leaves: list[bytes]) -> bytes:
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return hashlib.sha256(b"\x01" + _mth(leaves[:k]) + _mth(leaves[k:])).digest()


def _path(m: int, leaves: list[bytes]) -> list[bytes]:  # RFC 9162 §2.1.3.1 PATH(m, D[n])
    if len(leaves) <= 1:
        return []
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    if m < k:
        return [*_path(m, leaves[:k]), _mth(leaves[k:])]
    return [*_path(m - k, leaves[k:]), _mth(leaves[:k])]


def test_inclusion_from_raw_leaf_bytes() -> None:
    leaves = [f"entry {i}".encode() for i in range(7)]
    root = _mth(leaves)
    for i, leaf in enumerate(leaves):
        verify_inclusion(leaf, i, len(leaves), _path(i, leaves), root)
    with pytest.raises(ValueError):
        verify_inclusion(b"entry 9", 2, len(leaves), _path(2, leaves), root)


def _subproof(m: int, leaves: list[bytes], whole: bool) -> list[bytes]:  # RFC 9162 §2.1.4.1
    n = len(leaves)
    if m == n:
        return [] if whole else [_mth(leaves)]
    k = 1
    while k * 2 < n:
        k *= 2
    if m <= k:
        return [*_subproof(m, leaves[:k], whole), _mth(leaves[k:])]
    return [*_subproof(m - k, leaves[k:], False), _mth(leaves[:k])]


def test_consistency_against_reference_trees() -> None:
    leaves = [f"entry {i}".encode() for i in range(20)]
    for n in range(1, len(leaves) + 1):
        for m in range(1, n + 1):
            proof = _subproof(m, leaves[:n], True)
            verify_consistency(m, n, _mth(leaves[:m]), _mth(leaves[:n]), proof)
            if m < n:
                with pytest.raises(ValueError):
                    verify_consistency(m, n, _mth(leaves[1 : m + 1]), _mth(leaves[:n]), proof)


def test_consistency_from_empty_tree_is_rejected() -> None:
    # The vectors treat size1 == 0 as an error (RFC 9162 §2.1.4 needs 0 < first).
    with pytest.raises(ValueError, match="0 < first"):
        verify_consistency(0, 3, _mth([]), _mth([b"a", b"b", b"c"]), [])


# --- signed checkpoints (C2SP signed-note + tlog-checkpoint) -----------------------

ORIGIN = "locker.example/custody"
ROOT = hashlib.sha256(b"some root").digest()
BODY = f"{ORIGIN}\n42\n{base64.b64encode(ROOT).decode()}\n"


def _raw_pub(priv: Ed25519PrivateKey) -> bytes:
    return priv.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def _keyhash(name: str, priv: Ed25519PrivateKey) -> bytes:
    return hashlib.sha256(name.encode() + b"\n\x01" + _raw_pub(priv)).digest()[:4]


def _vkey(name: str, priv: Ed25519PrivateKey) -> str:
    key_b64 = base64.b64encode(b"\x01" + _raw_pub(priv)).decode()
    return f"{name}+{_keyhash(name, priv).hex()}+{key_b64}"


def _sig_line(name: str, priv: Ed25519PrivateKey, body: str) -> str:
    sig = _keyhash(name, priv) + priv.sign(body.encode())
    return f"\u2014 {name} {base64.b64encode(sig).decode()}\n"


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def test_parse_verifier_key(key: Ed25519PrivateKey) -> None:
    name, keyhash, pub = parse_verifier_key(_vkey(ORIGIN, key) + "\n")
    assert (name, keyhash) == (ORIGIN, _keyhash(ORIGIN, key))
    assert pub.public_bytes(Encoding.Raw, PublicFormat.Raw) == _raw_pub(key)
    wrong_hash = f"{ORIGIN}+00000000+{_vkey(ORIGIN, key).split('+', 2)[2]}"
    for bad in ("", "nameonly", wrong_hash, f"{ORIGIN}+{'zz' * 4}+AAAA"):
        with pytest.raises(ValueError):
            parse_verifier_key(bad)


def test_open_good_checkpoint(key: Ed25519PrivateKey) -> None:
    note = BODY + "\n" + _sig_line(ORIGIN, key, BODY)
    assert open_checkpoint(note, _vkey(ORIGIN, key)) == (ORIGIN, 42, ROOT)


def test_extension_lines_are_signed_and_allowed(key: Ed25519PrivateKey) -> None:
    body = BODY + "extension one\n"
    note = body + "\n" + _sig_line(ORIGIN, key, body)
    assert open_checkpoint(note, _vkey(ORIGIN, key)) == (ORIGIN, 42, ROOT)


def test_unknown_second_signer_is_ignored(key: Ed25519PrivateKey) -> None:
    witness = Ed25519PrivateKey.generate()
    note = BODY + "\n" + _sig_line(ORIGIN, key, BODY) + _sig_line("witness.example", witness, BODY)
    assert open_checkpoint(note, _vkey(ORIGIN, key)) == (ORIGIN, 42, ROOT)


def test_tampered_body_is_rejected(key: Ed25519PrivateKey) -> None:
    note = BODY.replace("\n42\n", "\n43\n") + "\n" + _sig_line(ORIGIN, key, BODY)
    with pytest.raises(ValueError, match="does not verify"):
        open_checkpoint(note, _vkey(ORIGIN, key))


def test_tampered_signature_is_rejected(key: Ed25519PrivateKey) -> None:
    raw = bytearray(base64.b64decode(_sig_line(ORIGIN, key, BODY).split()[-1]))
    raw[10] ^= 1
    note = BODY + f"\n\u2014 {ORIGIN} {base64.b64encode(bytes(raw)).decode()}\n"
    with pytest.raises(ValueError, match="does not verify"):
        open_checkpoint(note, _vkey(ORIGIN, key))


def test_wrong_key_is_rejected(key: Ed25519PrivateKey) -> None:
    other = Ed25519PrivateKey.generate()
    note = BODY + "\n" + _sig_line(ORIGIN, key, BODY)
    with pytest.raises(ValueError, match="no signature by the trusted key"):
        open_checkpoint(note, _vkey(ORIGIN, other))


def test_only_unknown_signers_is_rejected(key: Ed25519PrivateKey) -> None:
    note = BODY + "\n" + _sig_line("someone.else", key, BODY)
    with pytest.raises(ValueError, match="no signature by the trusted key"):
        open_checkpoint(note, _vkey(ORIGIN, key))


def test_missing_blank_line_is_rejected(key: Ed25519PrivateKey) -> None:
    note = BODY + _sig_line(ORIGIN, key, BODY)
    with pytest.raises(ValueError, match="no blank line"):
        open_checkpoint(note, _vkey(ORIGIN, key))


@pytest.mark.parametrize(
    "body",
    [
        f"{ORIGIN}\n42\n",  # no root line
        f"\n42\n{base64.b64encode(ROOT).decode()}\n",  # empty origin
        f"{ORIGIN}\n042\n{base64.b64encode(ROOT).decode()}\n",  # leading zero
        f"{ORIGIN}\n-1\n{base64.b64encode(ROOT).decode()}\n",  # negative size
        f"{ORIGIN}\n42\n{base64.b64encode(ROOT[:31]).decode()}\n",  # short root
        f"{ORIGIN}\n42\nnot base64!\n",
    ],
)
def test_malformed_checkpoint_body_is_rejected(key: Ed25519PrivateKey, body: str) -> None:
    note = body + "\n" + _sig_line(ORIGIN, key, body)
    with pytest.raises(ValueError):
        open_checkpoint(note, _vkey(ORIGIN, key))


@pytest.mark.parametrize(
    "mangle",
    [
        lambda n: n.rstrip("\n"),  # no final newline
        lambda n: n.replace("\u2014", "-"),  # ASCII dash instead of em dash
        lambda n: n + "trailing junk\n",  # non-signature line in signature block
        lambda n: n.replace("\n", "\r\n"),  # CRLF line endings
    ],
)
def test_malformed_note_is_rejected(key: Ed25519PrivateKey, mangle) -> None:
    note = mangle(BODY + "\n" + _sig_line(ORIGIN, key, BODY))
    with pytest.raises(ValueError):
        open_checkpoint(note, _vkey(ORIGIN, key))


# --- custody entries and a bundle's export claims ---------------------------------

V1_LEAF = (
    b'{"action":"evidence.ingested","actor":"user:1","format":"locker.custody.v1","index":3,'
    b'"organisation":"org-1","sha256":"ab","subject":"evidence:e-1","time":"2026-01-01T00:00:00Z"}'
)
V2_LEAF = (
    b'{"action":"access.granted","actor":"user:1","format":"locker.custody.v2","index":4,'
    b'"organisation":"org-1","subject":"evidence:e-1","subjects":["evidence:e-1","user:u-2"],'
    b'"time":"2026-01-01T00:00:00Z"}'
)


def test_entries_of_both_formats_parse() -> None:
    assert signed_subjects(parse_entry(V1_LEAF)) == ["evidence:e-1"]
    assert signed_subjects(parse_entry(V2_LEAF)) == ["evidence:e-1", "user:u-2"]


@pytest.mark.parametrize(
    "leaf",
    [
        V2_LEAF.replace(b'"subjects":["evidence:e-1","user:u-2"]', b'"subjects":["user:u-2"]'),
        V2_LEAF.replace(b'"user:u-2"]', b'"evidence:e-1"]'),
        V2_LEAF.replace(b',"subjects":["evidence:e-1","user:u-2"]', b""),
        V2_LEAF.replace(b"custody.v2", b"custody.v1"),
        V2_LEAF.replace(b"custody.v2", b"custody.v3"),
        V1_LEAF.replace(b'"index":3', b'"index":"3"'),
        V1_LEAF.replace(b",", b", "),
        V1_LEAF.replace(b'{"action":"evidence.ingested",', b"{")[:-1]
        + b',"action":"evidence.ingested"}',
    ],
)
def test_malformed_entries_are_refused(leaf: bytes) -> None:
    with pytest.raises(ValueError):
        parse_entry(leaf)


def test_every_entry_the_locker_writes_parses_the_same(tmp_path: Path) -> None:
    built = build(tmp_path)
    files = {n.removeprefix(f"{built.top}/"): d for n, d in read_members(built.path).items()}
    leaves = [d for p, d in files.items() if p.startswith("custody/entries/")]
    assert len(leaves) == len(built.entry_indexes)
    for leaf in leaves:
        assert parse_entry(leaf) == decode_entry(leaf)
        assert signed_subjects(parse_entry(leaf)) == entry_subjects(decode_entry(leaf))
    check_bundle_claims(files, built.key)


_CLAIM_KINDS = ("remove an item", "insert an item", "replace an item", "edit ", "add a file")


def test_bundle_claims_refuse_every_item_and_file_edit(tmp_path: Path) -> None:
    """The independent check agrees with the locker's on the whole-item and edit kinds
    of the generated tamper suite."""
    built = build(tmp_path)
    checked = 0
    for mutation in tamper_suite.mutations(built):
        if mutation.files is None or not mutation.kind.startswith(_CLAIM_KINDS):
            continue
        checked += 1
        with pytest.raises((ValueError, KeyError, TypeError)):
            check_bundle_claims(mutation.files, built.key)
    assert checked > 250
