"""The audit export's tabular formats: JSON Lines for machines, CSV for readers.

Both hold the same entries, each with its inclusion proof, and close with the signed
checkpoint the proofs lead to. In the CSV the reader's columns come first (people as
"Name <e-mail>" beside their ids, the entry's details as labelled fields) and the machine's
columns last: the exact leaf, the proof and the leaf hash, base64. An entry that names
something hidden from the reader is withheld: its leaf is left out (empty, or null) and
every value naming the hidden thing reads "[withheld]"; its leaf hash and proof still
show it is in the log.
"""

from __future__ import annotations

import base64
import csv
import io
import json
from collections.abc import Iterator, Mapping

from service.accounts.people import People
from service.core.readable import label, plain
from service.db.models import SignedCheckpoint
from service.evidence.trails import ProvenEntry

CSV_COLUMNS = (
    "index",
    "time",
    "organisation",
    "actor",
    "actor_id",
    "action",
    "subject",
    "subject_id",
    "sha256",
    "details",
    "leaf_b64",
    "inclusion_proof",
    "leaf_hash",
)
# Fields every entry has, shown in their own columns; the rest are the entry's details.
_OWN_COLUMNS = frozenset({"format", "index", "time", "organisation", "actor", "action"})
_OWN_COLUMNS |= {"subject", "subjects", "sha256"}


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def jsonl_lines(
    checkpoint: SignedCheckpoint, entries: Iterator[ProvenEntry], people: People
) -> Iterator[bytes]:
    """One JSON object per entry (its fields, names, leaf and proof), then the checkpoint."""
    for proven in entries:
        fields = proven.fields
        line = {
            "index": proven.index,
            "leaf_b64": _b64(proven.leaf) if proven.leaf is not None else None,
            "leaf_hash": _b64(proven.leaf_hash),
            "withheld": proven.withheld,
            "fields": fields,
            "names": _names(fields, people),
            "inclusion_proof": [_b64(h) for h in proven.proof],
        }
        yield json.dumps(line, ensure_ascii=False).encode() + b"\n"
    closing = {"checkpoint": checkpoint.note, "tree_size": checkpoint.size}
    yield json.dumps(closing, ensure_ascii=False).encode() + b"\n"


def _names(fields: Mapping[str, object], people: People) -> dict[str, str]:
    """The people and organisation an entry refers to, by the reference it uses."""
    references = (fields.get(name) for name in ("organisation", "actor", "subject"))
    named = {str(ref): people.name(str(ref)) for ref in references if ref is not None}
    organisation = fields.get("organisation")
    if isinstance(organisation, str):
        named[organisation] = people.organisation
    return {ref: name for ref, name in named.items() if name}


def csv_rows(
    checkpoint: SignedCheckpoint, entries: Iterator[ProvenEntry], people: People
) -> Iterator[bytes]:
    """The header, one row per entry, and a last row holding the signed checkpoint."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    for proven in entries:
        fields = proven.fields
        actor, subject = str(fields["actor"]), str(fields["subject"])
        writer.writerow(
            [
                proven.index,
                fields["time"],
                people.organisation or fields["organisation"],
                people.name(actor) or actor,
                actor,
                fields["action"],
                people.name(subject) or subject,
                subject,
                fields.get("sha256", ""),
                labelled(fields),
                _b64(proven.leaf) if proven.leaf is not None else "",  # empty: withheld
                " ".join(_b64(h) for h in proven.proof),
                _b64(proven.leaf_hash),
            ]
        )
        yield buffer.getvalue().encode()
        buffer.seek(0)
        buffer.truncate()
    # The checkpoint the proofs lead to closes the file, in its machine column (base64).
    closing = ["checkpoint", "", "", "", "", "", "", "", "", f"tree size {checkpoint.size}"]
    writer.writerow([*closing, _b64(checkpoint.note.encode()), "", ""])
    yield buffer.getvalue().encode()


def labelled(fields: Mapping[str, object]) -> str:
    """An entry's details as `label: value` pairs (`; ` between), in the leaf's order.

    A v2 entry signs all its subjects; the first has its own column, the others (a
    grantee, the second of two look-alikes) are listed here as "also about".
    """
    subjects = fields.get("subjects")
    others = subjects[1:] if isinstance(subjects, list) else []
    pairs = [
        f"{label(name)}: {plain(value)}"
        for name, value in fields.items()
        if name not in _OWN_COLUMNS
    ]
    return "; ".join([*pairs, *(["also about: " + plain(others)] if others else [])])
