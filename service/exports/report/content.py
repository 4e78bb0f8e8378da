"""What the chain-of-custody report says, once, for both its HTML and its PDF form.

Text between backticks in the verification steps is a literal (a command, a path);
each renderer sets it apart in its own way. People are named "Name <e-mail>" as their
`member.added` entry signed them, or by e-mail alone if it signed no name (the People
table pairs each with the id the custody log uses); metadata is `label: value`, one
field a line; a value holding right-to-left letters is isolated (FSI…PDI), which the
HTML renders as <bdi> and the PDF lays out with the bidirectional algorithm.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from service.core.names import safe_filename
from service.core.readable import label, plain

TITLE = "Chain of custody report"
ACQUISITION_COLUMNS = ("received", "file name", "submitted by", "metadata")
TIMELINE_COLUMNS = ("entry", "time (UTC)", "actor", "action")
PEOPLE_HEADING = "People"
PEOPLE_COLUMNS = ("who (name <e-mail>)", "id in the custody log")
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
    "Or run `locker verify BUNDLE.zip --verifier-key verifier-key.txt`, which does all of this.",
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
    record: Mapping[str, object],
    entries: Sequence[Mapping[str, object]],
    people: Mapping[str, str] | None = None,
) -> ItemSection:
    """The section of one evidence record (as exported) and its decoded custody entries;
    `people` names the references (`user:<id>` to "Name <e-mail>")."""
    names = people or {}

    def who(reference: object) -> str:
        return names.get(_reference(reference)) or str(reference)

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
                who(s.get("submitted_by")),
                fields(s),
            )
            for s in listed
        ),
        timeline=tuple(_row(e["index"], e["time"], who(e["actor"]), e["action"]) for e in entries),
    )


def people_rows(
    records: Sequence[Mapping[str, object]],
    timelines: Mapping[str, Sequence[Mapping[str, object]]],
    people: Mapping[str, str],
) -> tuple[tuple[str, str], ...]:
    """(name, id) of everyone the report names, in the order they first appear."""
    seen: dict[str, None] = {}
    for record in records:
        submissions = record.get("submissions")
        for submission in submissions if isinstance(submissions, list) else []:
            seen[_reference(submission.get("submitted_by"))] = None
        for entry in timelines.get(str(record["id"]), ()):
            seen[str(entry["actor"])] = None
    return tuple((people[ref], ref) for ref in seen if ref in people)


def _reference(actor: object) -> str:
    """The custody log's reference for an actor; a submission keeps the bare user id."""
    text = str(actor)
    return text if ":" in text or text == "operator" else f"user:{text}"


def fields(submission: Mapping[str, object]) -> str:
    """A submission's metadata as labelled fields."""
    return labelled(submission.get("metadata"))


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
                labelled(description.get("asserted")),
            )
        )
    extracted = record.get("extracted")
    if isinstance(extracted, Mapping):
        read = labelled(extracted.get("metadata"))
        error = extracted.get("error")
        rows.append(
            ("Read from the file", f"{read} (extraction failed: {error})" if error else read)
        )
    return rows


def labelled(value: object) -> str:
    """A metadata object as `label: value` lines, in its keys' order; "—" if empty."""
    if not isinstance(value, Mapping) or not value:
        return plain(value) if value else "—"
    return "\n".join(f"{label(k)}: {plain(v)}" for k, v in value.items())


def _row(a: object, b: object, c: object, d: object) -> Row:
    return (str(a), str(b), str(c), str(d))


def spans(text: str) -> list[tuple[str, bool]]:
    """`text` cut into (piece, is_literal) at its backticks."""
    return [(piece, n % 2 == 1) for n, piece in enumerate(text.split("`")) if piece]
