"""Custody log entries: the exact bytes of each Merkle leaf.

A leaf is the RFC 8785 canonical JSON of an object with a fixed "format" tag and the
required fields below. Because the encoding is canonical, one entry has one leaf, and
anyone can re-encode a leaf to check that nothing was slipped in beside the JSON.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from service.core.canonical import canonical_json
from service.errors import FormatError

ENTRY_FORMAT = "locker.custody.v1"

_REQUIRED: dict[str, type] = {
    "index": int,
    "time": str,
    "organisation": str,
    "actor": str,
    "action": str,
    "subject": str,
}


def _check_fields(fields: Mapping[str, object]) -> None:
    for name, kind in _REQUIRED.items():
        value = fields.get(name)
        # bool is an int subclass in Python but not a JSON number.
        if not isinstance(value, kind) or isinstance(value, bool):
            raise FormatError(f"custody entry field {name!r} must be a {kind.__name__}")
    index = fields["index"]
    if isinstance(index, int) and index < 0:
        raise FormatError(f"custody entry index must not be negative, got {index}")


def encode_entry(fields: Mapping[str, object]) -> bytes:
    """The leaf bytes for an entry with `fields` (which must not set "format")."""
    if "format" in fields:
        raise FormatError("custody entry fields must not set 'format'")
    _check_fields(fields)
    return canonical_json({"format": ENTRY_FORMAT, **fields})


def decode_entry(leaf: bytes) -> dict[str, object]:
    """The fields of a leaf (with "format"); FormatError unless it is a canonical entry."""
    try:
        value = json.loads(leaf.decode("utf-8"))
    except (ValueError, RecursionError) as exc:  # covers UnicodeDecodeError too
        raise FormatError(f"custody leaf is not UTF-8 JSON: {exc}") from None
    if not isinstance(value, dict):
        raise FormatError("custody leaf is not a JSON object")
    if value.get("format") != ENTRY_FORMAT:
        raise FormatError(f"custody leaf format is not {ENTRY_FORMAT!r}")
    _check_fields(value)
    # Re-encoding must give the same bytes: this refuses duplicate keys, odd spacing,
    # escapes and number spellings that would give one entry two leaf hashes.
    if canonical_json(value) != leaf:
        raise FormatError("custody leaf is not canonical JSON (RFC 8785)")
    return value
