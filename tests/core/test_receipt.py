"""Upload receipts: a true one verifies; every altered part of one is named and refused."""

from __future__ import annotations

import dataclasses
import hashlib
import json

import pytest

from service.core import merkle
from service.core.checkpoint import Checkpoint, NoteSigner, sign_checkpoint
from service.core.entry import encode_entry
from service.core.receipt import Receipt, verify_receipt
from service.errors import (
    DigestMismatch,
    FormatError,
    ProofError,
    RootMismatch,
    SignatureError,
    VerificationError,
)

CONTENT = "شهادة الشاهد".encode()
SHA256 = hashlib.sha256(CONTENT).hexdigest()
SIGNER = NoteSigner.generate("locker.example/custody")


def _entry(at: int, **changes: object) -> bytes:
    fields: dict[str, object] = {
        "index": at,
        "time": "2026-11-29T12:00:00Z",
        "organisation": "org-1",
        "actor": "user:1",
        "action": "evidence.ingested",
        "subject": "evidence:e-1",
        "sha256": SHA256,
        "size": len(CONTENT),
    }
    fields |= changes
    return encode_entry(fields | {"subjects": [fields["subject"]]})


def _receipt(at: int = 5, log_size: int = 11, changes: dict[str, object] | None = None) -> Receipt:
    """A receipt for leaf `at` of a log of `log_size` entries."""
    index, size = at, log_size
    leaves = [_entry(i, subject=f"incident:{i}", action="incident.created") for i in range(size)]
    leaves[index] = _entry(index, **(changes or {}))
    hashes = [merkle.leaf_hash(leaf) for leaf in leaves]
    proof = [
        merkle.root_from_leaf_hashes(hashes[a:b]) for a, b in merkle.inclusion_ranges(index, size)
    ]
    root = merkle.root_from_leaf_hashes(hashes)
    note = sign_checkpoint(Checkpoint(origin=SIGNER.name, size=size, root_hash=root), SIGNER)
    return Receipt(
        evidence_id="e-1",
        sha256=SHA256,
        size=len(CONTENT),
        leaf=leaves[index],
        index=index,
        inclusion_proof=tuple(proof),
        checkpoint=note,
    )


@pytest.mark.parametrize(("index", "size"), [(0, 1), (0, 2), (1, 2), (5, 11), (10, 11), (63, 64)])
def test_a_true_receipt_verifies_and_survives_its_file(index: int, size: int) -> None:
    receipt = Receipt.from_json(_receipt(index, size).to_json())
    facts = verify_receipt(receipt, SIGNER.verifier(), content_sha256=SHA256)
    assert facts.checkpoint.size == size
    assert facts.entry["subject"] == "evidence:e-1" and facts.entry["index"] == index


def test_a_resubmission_is_a_receipt_too() -> None:
    receipt = _receipt(changes={"action": "evidence.resubmitted"})
    assert verify_receipt(receipt, SIGNER.verifier()).entry["action"] == "evidence.resubmitted"


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"action": "evidence.read"}, "not an upload"),
        ({"subject": "evidence:e-2"}, "subject"),
        ({"sha256": "0" * 64}, "sha256"),
        ({"size": 1}, "size"),
        ({"index": 4}, "index"),
    ],
)
def test_an_entry_that_is_not_this_upload_is_refused(
    changes: dict[str, object], named: str
) -> None:
    with pytest.raises(FormatError, match=named):
        verify_receipt(_receipt(changes=changes), SIGNER.verifier())


def test_every_altered_part_is_refused() -> None:
    good = _receipt()
    verifier = SIGNER.verifier()
    flipped = bytes([good.inclusion_proof[0][0] ^ 1]) + good.inclusion_proof[0][1:]
    cases: list[tuple[Receipt, type[VerificationError]]] = [
        (
            dataclasses.replace(good, inclusion_proof=(flipped, *good.inclusion_proof[1:])),
            RootMismatch,
        ),
        (dataclasses.replace(good, inclusion_proof=good.inclusion_proof[:-1]), ProofError),
        (dataclasses.replace(good, index=6), FormatError),
        (dataclasses.replace(good, leaf=good.leaf.replace(b"12:00", b"12:01")), RootMismatch),
        (
            dataclasses.replace(good, checkpoint=good.checkpoint.replace("\n11\n", "\n12\n")),
            SignatureError,
        ),
    ]
    for receipt, error in cases:
        with pytest.raises(error):
            verify_receipt(receipt, verifier)
    with pytest.raises(SignatureError):
        verify_receipt(good, NoteSigner.generate(SIGNER.name).verifier())
    with pytest.raises(DigestMismatch):
        verify_receipt(good, verifier, content_sha256=hashlib.sha256(b"other").hexdigest())


@pytest.mark.parametrize(
    ("edit", "named"),
    [
        (lambda d: d.update(format="other"), "format"),
        (lambda d: d.update(size="12"), "size"),
        (lambda d: d.update(index=True), "index"),
        (lambda d: d.update(leaf_b64="not base64!"), "leaf_b64"),
        (lambda d: d.update(inclusion_proof="AAAA"), "inclusion_proof"),
        (lambda d: d.pop("checkpoint"), "checkpoint"),
        (lambda d: d.update(inclusion_proof=[7]), "'inclusion_proof' must hold base64 text"),
    ],
)
def test_a_malformed_receipt_file_names_its_field(edit: object, named: str) -> None:
    document = json.loads(_receipt().to_json())
    edit(document)  # type: ignore[operator]
    with pytest.raises(FormatError, match=named):
        Receipt.from_json(json.dumps(document))
    with pytest.raises(FormatError, match="JSON"):
        Receipt.from_json("{")


@pytest.mark.parametrize("text", ["[]", '"receipt"', "null"])
def test_a_receipt_file_must_be_a_json_object(text: str) -> None:
    with pytest.raises(FormatError, match="receipt must be a JSON object"):
        Receipt.from_json(text)


@pytest.mark.parametrize("sha256", [SHA256.upper(), SHA256[:-1], "", f"sha256:{SHA256}"])
def test_a_receipt_digest_must_be_lowercase_hex(sha256: str) -> None:
    receipt = dataclasses.replace(_receipt(), sha256=sha256)
    with pytest.raises(FormatError, match="receipt sha256 must be 64 lowercase hex characters"):
        verify_receipt(receipt, SIGNER.verifier())
