"""What the chain-of-custody report says, once, for both its HTML and its PDF form.

Text between backticks in the verification steps is a literal (a command, a path);
each renderer sets it apart in its own way.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from service.core.names import safe_filename

TITLE = "Chain of custody report"
ACQUISITION_COLUMNS = ("received", "file name", "submitted by", "metadata")
TIMELINE_COLUMNS = ("entry", "time (UTC)", "actor", "action")
VERIFY_HEADING = "How to verify this bundle by hand"
VERIFY_STEPS = (
    "Unzip it, go into the bag folder and run `sha256sum -c manifest-sha256.txt` and"
    " `sha512sum -c manifest-sha512.txt`: every evidence file and record must say OK.",
    "Check the tag files the same way: `sha256sum -c tagmanifest-sha256.txt`.",
    "Each custody entry in `custody/entries/` is the exact leaf of the log; its leaf hash is"
    " SHA-256 of a 0x00 byte followed by the file's bytes (RFC 9162 §2.1.1). With the proof"
    " in `custody/proofs.json` it must lead to the root hash in `custody/checkpoint.txt`"
    " (RFC 9162 §2.1.3.2).",
    "The checkpoint is a signed note (C2SP signed-note, Ed25519): check its signature with the"
    " log's verifier key obtained from the locker's operator, not only the copy in this bundle.",
    "If the bundle holds `custody/checkpoint.tsr`, an independent time-stamping authority"
    " attested when the checkpoint existed (RFC 3161): `openssl ts -verify -in"
    " custody/checkpoint.tsr -data custody/checkpoint.txt -CAfile tsa-ca.pem`, with the"
    " authority's certificate obtained from the authority itself.",
    "Or run `locker verify BUNDLE.zip --key verifier-key.txt`, which does all of this.",
)

Row = tuple[str, str, str, str]


@dataclass(frozen=True, slots=True, kw_only=True)
class ItemSection:
    """One evidence item: its identity, how it was acquired, and every custody entry on it."""

    heading: str
    identity: tuple[tuple[str, str], ...]
    acquisition: tuple[Row, ...]
    timeline: tuple[Row, ...]


def item_section(
    record: Mapping[str, object], entries: Sequence[Mapping[str, object]]
) -> ItemSection:
    """The section of one evidence record (as exported) and its decoded custody entries."""
    submissions = record.get("submissions")
    listed = submissions if isinstance(submissions, list) else []
    first = listed[0] if listed else {}
    identity = (
        ("File name", _shown(first.get("filename", ""))),
        ("SHA-256", record["sha256"]),
        ("SHA-512", record["sha512"]),
        ("Size (bytes)", record["size"]),
        ("Media type (sniffed)", record["media_type"]),
        ("Received", record["received_at"]),
        ("Path in bundle", record["path"]),
        *_described(record),
    )
    return ItemSection(
        heading=_shown(first.get("filename", record["id"])),
        identity=tuple((name, str(value)) for name, value in identity),
        acquisition=tuple(
            _row(
                s.get("received_at"),
                _shown(s.get("filename", "")),
                s.get("submitted_by"),
                s.get("metadata"),
            )
            for s in listed
        ),
        timeline=tuple(_row(e["index"], e["time"], e["actor"], e["action"]) for e in entries),
    )


def _shown(filename: object) -> str:
    """A filename as the report shows it: its safe form, which cannot display as another."""
    return safe_filename(str(filename))


def _described(record: Mapping[str, object]) -> list[tuple[str, object]]:
    """What the collector asserts and what the file says, kept apart as in the record."""
    rows: list[tuple[str, object]] = []
    description = record.get("description")
    if isinstance(description, Mapping):
        rows.append(
            (
                f"Asserted by the collector (version {description.get('version')})",
                _compact(description.get("asserted")),
            )
        )
    extracted = record.get("extracted")
    if isinstance(extracted, Mapping):
        read = _compact(extracted.get("metadata"))
        error = extracted.get("error")
        rows.append(
            ("Read from the file", f"{read} (extraction failed: {error})" if error else read)
        )
    return rows


def _compact(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True) if value else "—"


def _row(a: object, b: object, c: object, d: object) -> Row:
    return (str(a), str(b), str(c), str(d))


def spans(text: str) -> list[tuple[str, bool]]:
    """`text` cut into (piece, is_literal) at its backticks."""
    return [(piece, n % 2 == 1) for n, piece in enumerate(text.split("`")) if piece]
