"""Upload receipts: what an investigator keeps to prove the locker logged their file.

A receipt holds the custody entry that recorded the upload (its exact leaf bytes), an
RFC 9162 inclusion proof of that entry, and the signed checkpoint the proof leads to.
Checked with nothing but the log's verifier key, it proves that the locker committed,
in its append-only log, to having received content with this SHA-256 — years later,
whatever happens to the server. Like Rekor's inclusion proof with its signed tree head.

Pure: JSON text in, facts or VerificationError out.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import TypeVar

from service.core import merkle
from service.core.checkpoint import Checkpoint, KeyHistory, NoteVerifier, open_checkpoint
from service.core.digests import sha256_hex_valid
from service.core.entry import decode_entry
from service.errors import DigestMismatch, FormatError

_T = TypeVar("_T")

RECEIPT_FORMAT = "locker.receipt.v1"
# The entries that record receiving content: the first upload and every later one.
RECEIVING_ACTIONS = frozenset({"evidence.ingested", "evidence.resubmitted"})


@dataclass(frozen=True, slots=True, kw_only=True)
class Receipt:
    """One upload's proof of receipt, as saved to disk."""

    evidence_id: str
    sha256: str
    size: int
    leaf: bytes
    index: int
    inclusion_proof: tuple[bytes, ...]
    checkpoint: str

    def to_json(self) -> str:
        """The receipt file's text: JSON, binary fields in standard base64."""
        document = {
            "format": RECEIPT_FORMAT,
            "evidence_id": self.evidence_id,
            "sha256": self.sha256,
            "size": self.size,
            "index": self.index,
            "leaf_b64": _b64(self.leaf),
            "inclusion_proof": [_b64(h) for h in self.inclusion_proof],
            "checkpoint": self.checkpoint,
        }
        return json.dumps(document, ensure_ascii=False, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Receipt:
        """Parse a receipt file; FormatError naming the first field that is wrong."""
        try:
            document = json.loads(text)
        except ValueError:
            raise FormatError("receipt is not JSON") from None
        if not isinstance(document, dict):
            raise FormatError("receipt must be a JSON object")
        if document.get("format") != RECEIPT_FORMAT:
            raise FormatError(f"receipt format must be {RECEIPT_FORMAT!r}")
        proof = _field(document, "inclusion_proof", list)
        return cls(
            evidence_id=_field(document, "evidence_id", str),
            sha256=_field(document, "sha256", str),
            size=_field(document, "size", int),
            leaf=_unb64(_field(document, "leaf_b64", str), "leaf_b64"),
            index=_field(document, "index", int),
            inclusion_proof=tuple(_unb64(h, "inclusion_proof") for h in proof),
            checkpoint=_field(document, "checkpoint", str),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class ReceiptFacts:
    """What a verified receipt proves."""

    entry: dict[str, object]
    checkpoint: Checkpoint


def verify_receipt(
    receipt: Receipt, verifier: NoteVerifier | KeyHistory, *, content_sha256: str | None = None
) -> ReceiptFacts:
    """Check a receipt against the log's key (and the file's digest, if given).

    Raises a VerificationError subclass naming what does not hold: the checkpoint's
    signature, the entry (not a receipt of this item and digest), the inclusion proof,
    or the file's digest.
    """
    checkpoint = open_checkpoint(receipt.checkpoint, verifier)
    entry = decode_entry(receipt.leaf)
    _check_entry(receipt, entry)
    merkle.verify_inclusion(
        index=receipt.index,
        size=checkpoint.size,
        leaf_hash=merkle.leaf_hash(receipt.leaf),
        proof=receipt.inclusion_proof,
        root=checkpoint.root_hash,
    )
    if content_sha256 is not None and content_sha256 != receipt.sha256:
        raise DigestMismatch("the file", expected=receipt.sha256, actual=content_sha256)
    return ReceiptFacts(entry=entry, checkpoint=checkpoint)


def _check_entry(receipt: Receipt, entry: dict[str, object]) -> None:
    if not sha256_hex_valid(receipt.sha256):
        raise FormatError("receipt sha256 must be 64 lowercase hex characters")
    expected: dict[str, object] = {
        "index": receipt.index,
        "subject": f"evidence:{receipt.evidence_id}",
        "sha256": receipt.sha256,
        "size": receipt.size,
    }
    for name, value in expected.items():
        if entry.get(name) != value:
            raise FormatError(f"the logged entry's {name} is {entry.get(name)!r}, not {value!r}")
    if entry.get("action") not in RECEIVING_ACTIONS:
        raise FormatError(f"the logged entry records {entry.get('action')!r}, not an upload")


def _field(document: dict[str, object], name: str, kind: type[_T]) -> _T:
    value = document.get(name)
    # bool is an int subclass in Python but not a JSON number.
    if not isinstance(value, kind) or isinstance(value, bool):
        raise FormatError(f"receipt field {name!r} must be a {kind.__name__}")
    return value


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _unb64(text: object, what: str) -> bytes:
    if not isinstance(text, str):
        raise FormatError(f"receipt field {what!r} must hold base64 text")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise FormatError(f"receipt field {what!r} is not valid base64") from None
