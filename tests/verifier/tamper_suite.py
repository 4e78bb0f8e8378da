"""The generated tamper suite: over a thousand changes to a valid bundle, by kind.

Each mutation changes a copy of the bag's files in memory (a few change the zip
itself) the way a forger would: flip bytes in every file, truncate every file, remove,
insert, replace or swap whole items (an inserted item comes with its genuine ingest
entry and an inclusion proof in the bundle's own tree, from this organisation or
another), edit records, report and bag-info field by field, reorder entries. Most are
tried three ways: as is, with the manifests, Payload-Oxum and tag manifest
regenerated, and with custody/seal.json regenerated too.

A mutation `touches_signed` when it changes the bytes or the set of the bag's files:
all of those must be refused. The rest change only the zip container's own metadata
(member order, timestamps, comment, compression), which the verifier ignores by design:
all of those must verify. `python -m tests.verifier.tamper_suite` prints the rates.
"""

from __future__ import annotations

import base64
import hashlib
import io
import itertools
import json
import tempfile
import zipfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from service.client.verifier import verify_path
from service.core import bundle
from service.core.bagit import BundleReader
from service.core.canonical import canonical_json
from service.errors import Error, FormatError
from tests.verifier.bundles import ORG, Built, Outsider, read_members, reseal_files

Files = dict[str, bytes]
_FLIPS = 8  # positions flipped in each file, spread over its length


@dataclass(frozen=True, slots=True)
class Mutation:
    """One change to a bundle: its kind, what it did, and whether it touches signed
    content (a file's bytes or the set of files) or only the zip's own metadata."""

    kind: str
    description: str
    touches_signed: bool
    files: Files | None = None  # the changed bag, checked in memory ...
    zip_bytes: bytes | None = None  # ... or the changed zip, checked as a file


class MemoryReader:
    """A BundleReader over a dict of bag files."""

    def __init__(self, files: Mapping[str, bytes]) -> None:
        self.files = files

    def names(self) -> list[str]:
        return list(self.files)

    def open(self, name: str) -> Iterator[bytes]:
        yield self.files[name]

    def read(self, name: str, limit: int) -> bytes:
        if len(self.files[name]) > limit:
            raise FormatError("too long")
        return self.files[name]


def refused(mutation: Mutation, key: str) -> bool:
    """Whether the verifier, given the locker's key, refuses the mutated bundle."""
    if mutation.files is not None:
        reader: BundleReader = MemoryReader(mutation.files)
        return not bundle.verify_bundle(reader, verifier_key=key).ok
    assert mutation.zip_bytes is not None
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "t.zip"
        path.write_bytes(mutation.zip_bytes)
        return not verify_path(path, key).ok


def _variants(kind: str, description: str, files: Files) -> Iterator[Mutation]:
    """The change as is, resealed, and resealed with a regenerated seal."""
    yield Mutation(kind, description, True, files)
    for seal_too, how in (
        (False, "manifests regenerated"),
        (True, "manifests and seal regenerated"),
    ):
        try:
            resealed = reseal_files(files, seal_too=seal_too)
        except (Error, ValueError, KeyError):
            continue  # the change left nothing a forger could regenerate from
        yield Mutation(kind, f"{description}, {how}", True, resealed)


def _flip(data: bytes, position: int) -> bytes:
    return data[:position] + bytes([data[position] ^ 0x01]) + data[position + 1 :]


def _category(path: str) -> str:
    if path.startswith("data/evidence/"):
        return "evidence file"
    if path.startswith("data/records/"):
        return "record"
    if path.startswith("custody/entries/"):
        return "custody entry"
    return path


def flips(files: Files) -> Iterator[Mutation]:
    """A flipped bit at `_FLIPS` positions of every file."""
    for path, data in sorted(files.items()):
        positions = sorted({n * len(data) // _FLIPS for n in range(_FLIPS)} | {len(data) - 1})
        for position in positions:
            changed = {**files, path: _flip(data, position)}
            yield from _variants(
                f"flip a byte: {_category(path)}", f"{path} byte {position}", changed
            )


def every_byte(files: Files) -> Iterator[Mutation]:
    """Every byte of the checkpoint and the key, and the last character of every proof
    hash (where base64 hides unused bits), flipped with the tag manifest regenerated:
    no second spelling of a signature, key or proof may verify."""
    proofs = files[bundle.PROOFS_PATH]
    hash_ends = [n for n in range(len(proofs) - 1) if proofs[n + 1 : n + 2] == b"="]
    for path, positions in (
        (bundle.CHECKPOINT_PATH, range(len(files[bundle.CHECKPOINT_PATH]))),
        (bundle.KEY_PATH, range(len(files[bundle.KEY_PATH]))),
        (bundle.PROOFS_PATH, hash_ends),
    ):
        for position in positions:
            changed = reseal_files({**files, path: _flip(files[path], position)})
            yield Mutation(f"flip every byte: {path}", f"byte {position}", True, changed)


def truncations(files: Files) -> Iterator[Mutation]:
    """Every file emptied, cut in half and cut by its last byte."""
    for path, data in sorted(files.items()):
        for keep in sorted({0, len(data) // 2, len(data) - 1}):
            changed = {**files, path: data[:keep]}
            yield from _variants("truncate a file", f"{path} cut to {keep} bytes", changed)


def _items(files: Files) -> dict[str, list[dict[str, object]]]:
    return dict(json.loads(files[bundle.ITEMS_PATH]))


def _without(files: Files, evidence_id: str) -> Files:
    """The bag without one item: its file, its record and its items.json entry."""
    changed = {p: d for p, d in files.items() if evidence_id not in p}
    items = _items(files)
    items["evidence"] = [e for e in items["evidence"] if e["id"] != evidence_id]
    changed[bundle.ITEMS_PATH] = canonical_json(items)
    return changed


def _with(files: Files, outsider: Outsider, *, entry: bool = True) -> Files:
    """The bag with one more item, its ingest entry and its genuine inclusion proof."""
    changed = dict(files)
    rel = f"data/evidence/{outsider.evidence_id}/{outsider.filename}"
    changed[rel] = outsider.content
    leaf = json.loads(outsider.leaf)
    record = {"id": outsider.evidence_id, "path": rel, "filename": outsider.filename}
    changed[f"data/records/evidence/{outsider.evidence_id}.json"] = canonical_json(record)
    item = {k: leaf[k] for k in ("sha256", "sha512", "size")}
    item |= {"id": outsider.evidence_id, "ingest_index": outsider.ingest_index, "path": rel}
    items = _items(files)
    items["evidence"].append(item)
    changed[bundle.ITEMS_PATH] = canonical_json(items)
    if entry:
        changed[bundle.entry_path(outsider.ingest_index)] = outsider.leaf
        proofs = json.loads(files[bundle.PROOFS_PATH])
        encoded = [base64.b64encode(h).decode() for h in outsider.proof]
        proofs["proofs"][str(outsider.ingest_index)] = encoded
        changed[bundle.PROOFS_PATH] = canonical_json(proofs)
    return changed


def whole_items(built: Built, files: Files) -> Iterator[Mutation]:
    """Items removed, inserted (same or other organisation), replaced and swapped."""
    ids = built.evidence_ids
    for evidence_id in ids:
        yield from _variants(
            "remove an item", f"evidence:{evidence_id}", _without(files, evidence_id)
        )
        for outsider in built.outsiders:
            swapped = _with(_without(files, evidence_id), outsider)
            yield from _variants(
                "replace an item by another",
                f"evidence:{evidence_id} by {outsider.organisation}'s {outsider.evidence_id}",
                swapped,
            )
    yield from _variants("remove an item", "every item", _without(_without(files, ids[0]), ids[1]))
    for outsider in built.outsiders:
        kind = (
            f"insert an item ({'other' if outsider.organisation != ORG else 'same'} organisation)"
        )
        for entry in (True, False):
            yield from _variants(
                kind,
                f"{outsider.evidence_id} {'with' if entry else 'without'} its ingest entry",
                _with(files, outsider, entry=entry),
            )
    for evidence_id in ids:
        for content in (b"", b"forged", b"\x00" * 1000):
            yield from _variants(
                "replace an item's bytes",
                f"{evidence_id} by {len(content)} bytes",
                _replaced(files, evidence_id, content),
            )


def _replaced(files: Files, evidence_id: str, content: bytes) -> Files:
    """The item's file holding `content`, items.json updated to match."""
    changed = dict(files)
    [path] = [p for p in files if p.startswith(f"data/evidence/{evidence_id}/")]
    changed[path] = content
    items = _items(files)
    for item in items["evidence"]:
        if item["id"] == evidence_id:
            item |= {
                "sha256": hashlib.sha256(content).hexdigest(),
                "sha512": hashlib.sha512(content).hexdigest(),
                "size": len(content),
            }
    changed[bundle.ITEMS_PATH] = canonical_json(items)
    return changed


def _edited_values(value: object) -> Iterator[object]:
    if isinstance(value, bool) or value is None:
        yield "forged"
    elif isinstance(value, int):
        yield from (value + 1, -1)
    elif isinstance(value, str):
        yield from (value + "x", "")
    else:
        yield None


def field_edits(files: Files) -> Iterator[Mutation]:
    """Every top-level field of every JSON record and of items.json, re-encoded."""
    documents = [p for p in files if p.startswith("data/records/")] + [bundle.ITEMS_PATH]
    for path in sorted(documents):
        document = json.loads(files[path])
        for field, value in sorted(document.items()):
            for edited in _edited_values(value):
                changed = {**files, path: canonical_json({**document, field: edited})}
                yield from _variants(
                    f"edit a field: {_category(path)}", f"{path} {field}={edited!r}", changed
                )
            without = {k: v for k, v in document.items() if k != field}
            yield from _variants(
                f"edit a field: {_category(path)}",
                f"{path} without {field}",
                {**files, path: canonical_json(without)},
            )


def text_edits(files: Files) -> Iterator[Mutation]:
    """bag-info labels, the report and bagit.txt edited as text."""
    lines = files["bag-info.txt"].decode().splitlines(keepends=True)
    for number, line in enumerate(lines):
        label = line.split(":")[0]
        for value in ("forged", "2020-01-01", ""):
            edited = [f"{label}: {value}\n" if n == number else x for n, x in enumerate(lines)]
            yield from _variants(
                "edit bag-info",
                f"{label}: {value}",
                {**files, "bag-info.txt": "".join(edited).encode()},
            )
        removed = [x for n, x in enumerate(lines) if n != number]
        yield from _variants(
            "edit bag-info",
            f"without {label}",
            {**files, "bag-info.txt": "".join(removed).encode()},
        )
    report = files["report/report.html"]
    for edit in (b"<p>the witness recanted</p>", b"", b" "):
        changed = {**files, "report/report.html": report.replace(b"</body>", edit + b"</body>")}
        yield from _variants("edit the report", f"inserted {edit!r}", changed)
    yield from _variants("edit the report", "emptied", {**files, "report/report.html": b""})


def structure(files: Files) -> Iterator[Mutation]:
    """Files added, removed, renamed, entries swapped; the tag manifest made malformed."""
    for path in sorted(files):
        yield from _variants("remove a file", path, {p: d for p, d in files.items() if p != path})
    for path in (
        "data/extra.txt",
        "report/extra.html",
        "custody/note.txt",
        "custody/extra.tsr",
        "fetch.txt",
        "tagmanifest-md5.txt",
    ):
        yield from _variants("add a file", path, {**files, path: b"planted\n"})
    entries = sorted(p for p in files if p.startswith("custody/entries/"))
    for first, second in itertools.pairwise(entries):
        changed = {**files, first: files[second], second: files[first]}
        yield from _variants("reorder entries", f"{first} <-> {second}", changed)
    for path in sorted(p for p in files if p.startswith("data/evidence/")):
        renamed = {(p + ".exe" if p == path else p): d for p, d in files.items()}
        yield from _variants("rename a file", f"{path} + .exe", renamed)
    tagmanifest = files["tagmanifest-sha256.txt"]
    for description, edited in (
        ("emptied", b""),
        ("a line without a path", tagmanifest + b"0" * 64 + b"\n"),
        ("a short digest", tagmanifest.replace(b"  ", b"0  ", 1)[1:]),
        ("one line dropped", b"\n".join(tagmanifest.split(b"\n")[1:])),
        ("a data file listed", tagmanifest + b"0" * 64 + b"  data/x\n"),
        ("not UTF-8", tagmanifest + b"\xff\n"),
    ):
        mutation = {**files, "tagmanifest-sha256.txt": edited}
        yield Mutation("malformed tag manifest", description, True, mutation)
    lines = tagmanifest.decode().splitlines(keepends=True)
    for description, text in (
        ("lines reversed", "".join(reversed(lines))),
        ("uppercase hex", "".join(x[:64].upper() + x[64:] for x in lines)),
        ("one space", "".join(x.replace("  ", " ", 1) for x in lines)),
        ("a tab", "".join(x.replace("  ", "\t", 1) for x in lines)),
        ("CRLF line endings", "".join(x.replace("\n", "\r\n") for x in lines)),
    ):
        mutation = {**files, "tagmanifest-sha256.txt": text.encode()}
        yield Mutation("reformat the tag manifest", description, True, mutation)


def zip_level(built: Built) -> Iterator[Mutation]:
    """The zip itself: truncated or with a flipped stored byte (refused), and its own
    metadata changed (ignored by design)."""
    raw = built.path.read_bytes()
    for n in range(1, 21):
        yield Mutation(
            "truncate the zip", f"{n * 5}% kept", True, zip_bytes=raw[: len(raw) * n // 21]
        )
    members = read_members(built.path)
    for name, data in sorted(members.items()):
        start = raw.index(data) if data and raw.count(data) == 1 else -1
        if start >= 0:
            flipped = _flip(raw, start + len(data) // 2)
            yield Mutation("flip a stored byte in the zip", name, True, zip_bytes=flipped)
    yield from _metadata(members)


def _zip(
    members: Mapping[str, bytes], info: Callable[[str], zipfile.ZipInfo], comment: bytes = b""
) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.comment = comment
        for name, data in members.items():
            archive.writestr(info(name), data)
    return out.getvalue()


def _metadata(members: Mapping[str, bytes]) -> Iterator[Mutation]:
    def stored(
        date: tuple[int, int, int, int, int, int], method: int = zipfile.ZIP_STORED
    ) -> Callable[[str], zipfile.ZipInfo]:
        def info(name: str) -> zipfile.ZipInfo:
            made = zipfile.ZipInfo(name, date_time=date)
            made.compress_type = method
            return made

        return info

    plain = stored((2025, 3, 2, 0, 0, 0))
    reordered = dict(reversed(list(members.items())))
    kind = "zip metadata only"
    yield Mutation(kind, "members in reverse order", False, zip_bytes=_zip(reordered, plain))
    yield Mutation(
        kind, "timestamps of 1999", False, zip_bytes=_zip(members, stored((1999, 1, 1, 0, 0, 0)))
    )
    yield Mutation(kind, "an archive comment", False, zip_bytes=_zip(members, plain, b"comment"))
    deflated = stored((2025, 3, 2, 0, 0, 0), zipfile.ZIP_DEFLATED)
    yield Mutation(kind, "deflate compression", False, zip_bytes=_zip(members, deflated))


def mutations(built: Built) -> Iterator[Mutation]:
    """Every mutation of the bundle `built`."""
    files = {n.removeprefix(f"{built.top}/"): d for n, d in read_members(built.path).items()}
    for generator in (flips, every_byte, truncations, field_edits, text_edits, structure):
        for mutation in generator(files):
            if mutation.files != files:  # an edit that changed nothing is no mutation
                yield mutation
    yield from whole_items(built, files)
    yield from zip_level(built)


def markdown(table: Mapping[str, tuple[int, int, bool]]) -> str:
    """The rates as the Markdown table docs/verification.md shows."""
    lines = ["| Mutation kind | Touches signed content | Refused | Rate |", "|---|---|---|---|"]
    for kind, (done, total, signed) in sorted(table.items()):
        rate = f"{100 * done / total:.0f} %"
        lines.append(f"| {kind} | {'yes' if signed else 'no'} | {done} / {total} | {rate} |")
    everything = sum(t for _, t, _ in table.values())
    return "\n".join(lines) + f"\n\n{everything} mutations in all\n"


def main() -> None:
    """Build a bundle, run every mutation, print the refusal rate per kind (Markdown)."""
    from tests.verifier.bundles import build

    table: dict[str, tuple[int, int, bool]] = {}
    with tempfile.TemporaryDirectory() as directory:
        built = build(Path(directory))
        for mutation in mutations(built):
            done, total, _ = table.get(mutation.kind, (0, 0, mutation.touches_signed))
            table[mutation.kind] = (
                done + refused(mutation, built.key),
                total + 1,
                mutation.touches_signed,
            )
    print(markdown(table), end="")


if __name__ == "__main__":
    main()
