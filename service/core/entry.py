"""Custody log entries: the exact bytes of each Merkle leaf.

A leaf is the RFC 8785 canonical JSON of an object with a fixed "format" tag and the
required fields below. Because the encoding is canonical, one entry has one leaf, and
anyone can re-encode a leaf to check that nothing was slipped in beside the JSON.

Two formats exist. v1 ("locker.custody.v1") signed one `subject`. v2
("locker.custody.v2") also signs `subjects`, every party the entry concerns, the
first of which is `subject` (kept so v1 readers of the primary subject still work):
the grantee of a grant, the owner of a key, both items of a near-duplicate. New
entries are v2; v1 entries keep decoding, so old logs and bundles keep verifying.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from service.core.canonical import canonical_json
from service.errors import FormatError

ENTRY_FORMAT_V1 = "locker.custody.v1"
ENTRY_FORMAT = "locker.custody.v2"
FORMATS = (ENTRY_FORMAT_V1, ENTRY_FORMAT)

_REQUIRED: dict[str, type] = {
    "index": int,
    "time": str,
    "organisation": str,
    "actor": str,
    "action": str,
    "subject": str,
}
# The names an entry's details may not use: each would shadow a signed field.
RESERVED = frozenset({"format", "subjects", *_REQUIRED})


def rfc3339(moment: datetime) -> str:
    """RFC 3339 UTC with microseconds and a Z, the one time format of the log."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _check_fields(fields: Mapping[str, object]) -> None:
    for name, kind in _REQUIRED.items():
        value = fields.get(name)
        # bool is an int subclass in Python but not a JSON number.
        if not isinstance(value, kind) or isinstance(value, bool):
            raise FormatError(f"custody entry field {name!r} must be a {kind.__name__}")
    index = fields["index"]
    if isinstance(index, int) and index < 0:
        raise FormatError(f"custody entry index must not be negative, got {index}")


def _check_subjects(fields: Mapping[str, object]) -> None:
    """v2: `subjects` is a list of distinct strings whose first is `subject`."""
    subjects = fields.get("subjects")
    if not isinstance(subjects, list) or not all(isinstance(s, str) for s in subjects):
        raise FormatError("custody entry field 'subjects' must be a list of str")
    if not subjects or subjects[0] != fields["subject"]:
        raise FormatError("custody entry 'subjects' must start with its 'subject'")
    if len(set(subjects)) != len(subjects):
        raise FormatError("custody entry 'subjects' must not repeat a subject")


def entry_fields(
    *,
    index: int,
    time: str,
    organisation: str,
    actor: str,
    action: str,
    subjects: Sequence[str],
    details: Mapping[str, object] | None = None,
) -> dict[str, object]:
    """The fields of a v2 entry; FormatError if a detail would shadow a signed field."""
    shadowing = sorted(RESERVED.intersection(details or {}))
    if shadowing:
        raise FormatError(f"custody entry details must not set signed fields: {shadowing}")
    distinct = list(dict.fromkeys(subjects))
    if not distinct:
        raise FormatError("a custody entry needs at least one subject")
    return {
        "index": index,
        "time": time,
        "organisation": organisation,
        "actor": actor,
        "action": action,
        "subject": distinct[0],
        "subjects": distinct,
        **(details or {}),
    }


def encode_entry(fields: Mapping[str, object], *, entry_format: str = ENTRY_FORMAT) -> bytes:
    """The leaf bytes for an entry with `fields` (which must not set "format")."""
    if "format" in fields:
        raise FormatError("custody entry fields must not set 'format'")
    if entry_format not in FORMATS:
        raise FormatError(f"custody entry format must be one of {FORMATS}, got {entry_format!r}")
    _check_fields(fields)
    if entry_format == ENTRY_FORMAT:
        _check_subjects(fields)
    return canonical_json({"format": entry_format, **fields})


def decode_entry(leaf: bytes) -> dict[str, object]:
    """The fields of a leaf (with "format"); FormatError unless it is a canonical entry."""
    try:
        value = json.loads(leaf.decode("utf-8"))
    except (ValueError, RecursionError) as exc:  # covers UnicodeDecodeError too
        raise FormatError(f"custody leaf is not UTF-8 JSON: {exc}") from None
    if not isinstance(value, dict):
        raise FormatError("custody leaf is not a JSON object")
    if value.get("format") not in FORMATS:
        raise FormatError(f"custody leaf format is not one of {FORMATS}")
    _check_fields(value)
    if value["format"] == ENTRY_FORMAT:
        _check_subjects(value)
    elif "subjects" in value:  # v1 signed one subject; a list beside it would mislead
        raise FormatError("a locker.custody.v1 entry cannot carry 'subjects'")
    # Re-encoding must give the same bytes: this refuses duplicate keys, odd spacing,
    # escapes and number spellings that would give one entry two leaf hashes.
    if canonical_json(value) != leaf:
        raise FormatError("custody leaf is not canonical JSON (RFC 8785)")
    return value


def entry_subjects(fields: Mapping[str, object]) -> list[str]:
    """Every subject a decoded entry signs: v2's `subjects`, v1's single `subject`."""
    subjects = fields.get("subjects")
    if fields.get("format") == ENTRY_FORMAT and isinstance(subjects, list):
        return [str(s) for s in subjects]
    return [str(fields["subject"])]
