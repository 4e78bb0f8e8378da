"""Evidence bundles: a BagIt 1.0 bag (RFC 8493) of evidence with its custody proofs.

The exporter writes bags with the helpers at the top; `verify_bundle` checks one through
an abstract `BundleReader`, so this module does no I/O and the same code serves the
server's tests and a court expert's offline verifier. It never raises on bad input:
every problem becomes a `Finding` naming the file, entry or item concerned.

What the signature proves: the checkpoint is signed; its root commits to every custody
entry (RFC 9162 inclusion proofs); each ingest entry commits to its evidence's SHA-256.
The manifests, records and report are checked for consistency, but are not signed.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import unicodedata
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from cryptography import x509

from service.core import merkle
from service.core.canonical import canonical_json
from service.core.checkpoint import Checkpoint, NoteVerifier, open_checkpoint
from service.core.digests import ContentDigests, digest_stream
from service.core.entry import decode_entry
from service.core.timestamp import (
    AttestedTime,
    TimestampMismatch,
    load_certificates,
    verify_timestamp,
)
from service.errors import Error, FormatError

BAGIT_TXT = "BagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8\n"  # RFC 8493 §2.1.1
BAG_INFO_LABELS = (
    "Source-Organization",
    "Bagging-Date",
    "External-Identifier",
    "Payload-Oxum",
    "Bag-Software-Agent",
    "Locker-Log-Origin",
)
PAYLOAD_ALGORITHMS = ("sha256", "sha512")
TAG_LIMIT = 64 * 1024 * 1024  # the largest tag file read whole (proofs of many entries)
CHECKPOINT_PATH = "custody/checkpoint.txt"
KEY_PATH = "custody/verifier-key.txt"
PROOFS_PATH = "custody/proofs.json"
ITEMS_PATH = "custody/items.json"
TIMESTAMP_PATH = "custody/checkpoint.tsr"  # RFC 3161 TimeStampResp over checkpoint.txt
TSA_CA_PATH = "custody/tsa-ca.pem"  # the TSA's CA as the locker knew it (do not rely on it)

# The names of the checks, as findings and `Verdict.checked` report them.
PATHS, BAGIT, BAG_INFO, MANIFESTS, PAYLOAD, TAGS = (
    "paths",
    "bagit.txt",
    "bag-info.txt",
    "payload manifests",
    "payload digests",
    "tag manifest",
)
CHECKPOINT, ENTRIES, PROOFS, ITEMS = ("checkpoint", "custody entries", "inclusion proofs", "items")
TIMESTAMP = "trusted timestamp"

_MAX_NAME = 200
_ENTRY_LIMIT = 1024 * 1024
_ENTRY_NAME = re.compile(r"custody/entries/([0-9]{12})\.json")
_TAG_MANIFEST = re.compile(r"tagmanifest-[^/]*\.txt")
_HEX_LENGTHS = {"sha256": 64, "sha512": 128}
_MANIFEST_LINE = re.compile(r"([0-9a-fA-F]+)[ \t]+(.+)")  # RFC 8493 §2.1.3
_LABEL = re.compile(r"[^\s:](?:[^:\r\n]*[^\s:])?")  # RFC 8493 §2.2.2
_NEWLINE = re.compile(r"\r\n|\r|\n")  # RFC 8493 §2.1: any of the three ends a line
_PERCENT = re.compile(r"%(25|0[dD]|0[aA])")
_DECIMAL = re.compile(r"0|[1-9][0-9]*")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_DRIVE = re.compile(r"[A-Za-z]:")


# --- Writing (the exporter) ---------------------------------------------------------


def safe_filename(name: str) -> str:
    """`name` as one harmless path segment: NFC, no separators, controls or leading dots."""
    text = unicodedata.normalize("NFC", name)
    text = "".join("_" if c in "/\\" or unicodedata.category(c) == "Cc" else c for c in text)
    body = text.lstrip(".")
    return ("_" * (len(text) - len(body)) + body)[:_MAX_NAME] or "_"


def _encode_path(path: str) -> str:
    """RFC 8493 §2.1.3: a manifest path percent-encodes CR, LF and %."""
    return path.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _decode_path(text: str) -> str:
    return _PERCENT.sub(lambda m: {"25": "%", "0d": "\r", "0a": "\n"}[m[1].lower()], text)


def manifest_text(entries: Iterable[tuple[str, str]]) -> str:
    """A manifest of (path, hex) pairs: "<hex>  <path>" lines sorted by path (sha256sum -c)."""
    return "".join(f"{hex_}  {_encode_path(path)}\n" for path, hex_ in sorted(entries))


def bag_info_text(fields: Mapping[str, str]) -> str:
    """bag-info.txt (RFC 8493 §2.2.2): one "Label: value" line per field, in order."""
    for label, value in fields.items():
        if not _LABEL.fullmatch(label) or "\r" in value or "\n" in value:
            raise FormatError(f"bag-info field cannot be written: {label!r}: {value!r}")
    return "".join(f"{label}: {value}\n" for label, value in fields.items())


def proofs_json(tree_size: int, proofs: Mapping[int, Sequence[bytes]]) -> bytes:
    """custody/proofs.json: each entry's inclusion proof (base64 hashes) in the tree."""
    encoded = {str(i): [base64.b64encode(h).decode("ascii") for h in p] for i, p in proofs.items()}
    return canonical_json({"tree_size": tree_size, "proofs": encoded})


def items_json(evidence: Sequence[Mapping[str, object]], incidents: Sequence[str]) -> bytes:
    """custody/items.json: the evidence items (id, digests, size, ingest entry, path)."""
    return canonical_json({"evidence": [dict(e) for e in evidence], "incidents": list(incidents)})


def entry_path(index: int) -> str:
    """The tag file holding the exact leaf bytes of custody entry `index`."""
    return f"custody/entries/{index:012d}.json"


# --- Reading ------------------------------------------------------------------------


class BundleReader(Protocol):
    """A bag's files by path relative to its root; reads raise Error or OSError."""

    def names(self) -> list[str]:
        """Every file in the bag (not directories)."""
        ...

    def open(self, name: str) -> Iterator[bytes]:
        """The file's content as a stream of chunks."""
        ...

    def read(self, name: str, limit: int) -> bytes:
        """A small file whole; Error if it is longer than `limit` bytes."""
        ...


@dataclass(frozen=True, slots=True)
class Finding:
    """One failed check: which check, on what (file, entry, item), and what was wrong."""

    check: str
    subject: str
    message: str


@dataclass(slots=True)
class Verdict:
    """The outcome of verifying a bundle: ok only if there are no findings."""

    findings: list[Finding]
    checked: dict[str, int]
    key_source: Literal["given", "bundle"]
    checkpoint: Checkpoint | None
    timestamp: AttestedTime | None = None
    tsa_source: Literal["given", "bundle"] = "bundle"

    @property
    def ok(self) -> bool:
        """Whether every check passed."""
        return not self.findings


def unsafe_path(name: str) -> bool:
    """Whether `name` is absolute, has a backslash, '..' or empty part: never to be opened."""
    parts = name.split("/")
    return (
        "\\" in name
        or "\0" in name
        or bool(_DRIVE.match(name))
        or any(part in ("", ".", "..") for part in parts)
    )


class _Run:
    """The state of one verification: the bag's safe names, findings and counts."""

    def __init__(self, reader: BundleReader) -> None:
        self.reader = reader
        self.findings: list[Finding] = []
        self.checked: dict[str, int] = {}
        self.names: set[str] = set()
        for name in reader.names():
            if unsafe_path(name):
                self.fail(PATHS, name, "unsafe path (absolute, '..', backslash); not read")
            else:
                self.names.add(name)
        self.count(PATHS, len(self.names))

    def fail(self, check: str, subject: str, message: str) -> None:
        self.findings.append(Finding(check, subject, message))

    def count(self, check: str, n: int = 1) -> None:
        self.checked[check] = self.checked.get(check, 0) + n

    def read(self, check: str, name: str, limit: int = TAG_LIMIT) -> bytes | None:
        """The file's bytes, or None after a finding if it is missing or unreadable."""
        if name not in self.names:
            self.fail(check, name, "missing from the bag")
            return None
        try:
            return self.reader.read(name, limit)
        except (Error, OSError) as exc:
            self.fail(check, name, f"unreadable: {exc}")
            return None

    def text(self, check: str, name: str) -> str | None:
        """The file as UTF-8 text (RFC 8493 §2.1.1), or None after a finding."""
        raw = self.read(check, name)
        try:
            return None if raw is None else raw.decode("utf-8")
        except UnicodeDecodeError:
            self.fail(check, name, "not UTF-8 text")
            return None

    def digest(self, check: str, name: str) -> ContentDigests | None:
        """SHA-256, SHA-512 and size in one streamed pass, or None after a finding."""
        try:
            return digest_stream(self.reader.open(name))
        except (Error, OSError) as exc:
            self.fail(check, name, f"unreadable: {exc}")
            return None

    def document(self, check: str, name: str) -> dict[str, object] | None:
        """A canonical JSON object (RFC 8785) tag file, or None after a finding."""
        raw = self.read(check, name)
        if raw is None:
            return None
        try:
            value = json.loads(raw.decode("utf-8"))
            if canonical_json(value) != raw:
                raise FormatError("not canonical JSON (RFC 8785)")
        except (ValueError, RecursionError, FormatError) as exc:
            self.fail(check, name, f"not a canonical JSON document: {exc}")
            return None
        if not isinstance(value, dict):
            self.fail(check, name, "not a JSON object")
            return None
        return value


def verify_bundle(
    reader: BundleReader,
    *,
    verifier_key: str | None,
    tsa_roots: Sequence[x509.Certificate] | None = None,
) -> Verdict:
    """Check everything a bundle claims; with no `verifier_key` (or `tsa_roots` for the
    checkpoint's timestamp), trust the bundled one."""
    run = _Run(reader)
    _check_bagit(run)
    payload = _check_payload(run)
    origin = _check_bag_info(run, payload)
    _check_tag_manifests(run)
    checkpoint = _check_checkpoint(run, verifier_key, origin)
    entries = _check_entries(run)
    _check_proofs(run, checkpoint, entries)
    _check_items(run, payload, entries)
    timestamp = _check_timestamp(run, tsa_roots)
    key_source: Literal["given", "bundle"] = "bundle" if verifier_key is None else "given"
    tsa_source: Literal["given", "bundle"] = "bundle" if tsa_roots is None else "given"
    return Verdict(run.findings, run.checked, key_source, checkpoint, timestamp, tsa_source)


def _check_bagit(run: _Run) -> None:
    if "fetch.txt" in run.names:  # RFC 8493 §2.2.3: a bundle must be complete
        run.fail(BAGIT, "fetch.txt", "a bundle must hold every file, not fetch them")
    text = run.text(BAGIT, "bagit.txt")
    if text is not None and text != BAGIT_TXT:
        run.fail(BAGIT, "bagit.txt", f"expected {BAGIT_TXT!r}, got {text[:200]!r}")
    run.count(BAGIT)


def _lines(text: str) -> list[str]:
    lines = _NEWLINE.split(text)
    return lines[:-1] if lines and lines[-1] == "" else lines


def _read_manifest(run: _Run, check: str, name: str, algorithm: str) -> dict[str, str] | None:
    """A manifest's path → lowercase hex (RFC 8493 §2.1.3), each bad line a finding."""
    text = run.text(check, name)
    if text is None:
        return None
    payload = not name.startswith("tag")
    listed: dict[str, str] = {}
    for number, line in enumerate(_lines(text), start=1):
        match = _MANIFEST_LINE.fullmatch(line)
        path = _decode_path(match[2]) if match else ""
        where = f"{name} line {number}"
        if not match or len(match[1]) != _HEX_LENGTHS[algorithm]:
            run.fail(check, where, f"not a '<{algorithm} hex>  <path>' line: {line[:200]!r}")
        elif unsafe_path(path):
            run.fail(PATHS, where, f"unsafe path {path!r}")
        elif payload != path.startswith("data/") or _TAG_MANIFEST.fullmatch(path):
            run.fail(check, where, f"{path!r} does not belong in {name}")
        elif path in listed:
            run.fail(check, where, f"{path!r} is listed twice")
        else:
            listed[path] = match[1].lower()
    return listed


def _check_listing(
    run: _Run, check: str, name: str, listed: Mapping[str, str], files: Iterable[str]
) -> None:
    """Every file in `files` is listed in manifest `name`; every listed file is present."""
    for path in files:
        if path not in listed:
            run.fail(check, path, f"not listed in {name}")
    for path in sorted(listed.keys() - run.names):
        run.fail(check, path, f"listed in {name} but missing from the bag")


def _compare(
    run: _Run,
    check: str,
    path: str,
    digests: ContentDigests,
    manifests: Mapping[str, tuple[str, Mapping[str, str]]],
) -> None:
    """The file's digests against every manifest (name → (algorithm, listing)) naming it."""
    for name, (algorithm, listed) in manifests.items():
        want, got = listed.get(path), getattr(digests, algorithm).hex
        if want is not None and want != got:
            run.fail(check, path, f"{algorithm} mismatch: {name} says {want}, file has {got}")


def _check_payload(run: _Run) -> dict[str, ContentDigests]:
    """Every payload file in both manifests, present, and with the listed digests."""
    files = sorted(name for name in run.names if name.startswith("data/"))
    manifests: dict[str, tuple[str, dict[str, str]]] = {}
    for algorithm in PAYLOAD_ALGORITHMS:
        name = f"manifest-{algorithm}.txt"
        listed = _read_manifest(run, MANIFESTS, name, algorithm)
        if listed is not None:
            _check_listing(run, MANIFESTS, name, listed, files)
            manifests[name] = (algorithm, listed)
    run.count(MANIFESTS, len(manifests))
    found: dict[str, ContentDigests] = {}
    for path in files:
        digests = run.digest(PAYLOAD, path)  # SHA-256 and SHA-512 in one pass
        if digests is not None:
            found[path] = digests
            _compare(run, PAYLOAD, path, digests, manifests)
    run.count(PAYLOAD, len(files))
    return found


def _parse_bag_info(text: str) -> dict[str, list[str]]:
    """Labels → values; RFC 8493 §2.2.2 lets a value continue on indented lines."""
    fields: dict[str, list[str]] = {}
    last: list[str] | None = None
    for line in _lines(text):
        if line[:1] in (" ", "\t") and last is not None:
            last[-1] += " " + line.strip()
            continue
        label, sep, value = line.partition(":")
        if not sep or not _LABEL.fullmatch(label):
            raise FormatError(f"not a 'Label: value' line: {line[:200]!r}")
        last = fields.setdefault(label, [])
        last.append(value.strip())
    return fields


def _check_bag_info(run: _Run, payload: Mapping[str, ContentDigests]) -> str | None:
    """The required labels once each, a real date and a true Payload-Oxum; the origin."""
    text = run.text(BAG_INFO, "bag-info.txt")
    run.count(BAG_INFO)
    try:
        fields = _parse_bag_info(text) if text is not None else None
    except FormatError as exc:
        run.fail(BAG_INFO, "bag-info.txt", str(exc))
        fields = None
    if fields is None:
        return None
    for label in BAG_INFO_LABELS:
        if len(fields.get(label, [])) != 1:
            run.fail(BAG_INFO, label, f"bag-info.txt needs {label} exactly once")
    if not all(_DATE.fullmatch(value) for value in fields.get("Bagging-Date", [])):
        run.fail(BAG_INFO, "Bagging-Date", "not a YYYY-MM-DD date")
    count = sum(1 for name in run.names if name.startswith("data/"))
    size = sum(d.size for d in payload.values())
    actual = f"{size}.{count}"
    for oxum in fields.get("Payload-Oxum", []):
        claimed_size, _, claimed_count = oxum.partition(".")
        # RFC 8493 §2.2.2: "<octet count>.<stream count>" of the payload files.
        if claimed_count != str(count) or (len(payload) == count and claimed_size != str(size)):
            run.fail(BAG_INFO, "Payload-Oxum", f"bag-info says {oxum!r}, payload is {actual!r}")
    origins = fields.get("Locker-Log-Origin", [])
    return origins[0] if len(origins) == 1 else None


def _check_tag_manifests(run: _Run) -> None:
    """Every tag file listed in each tag manifest (RFC 8493 §2.2.1), and intact."""
    tags = sorted(
        n for n in run.names if not n.startswith("data/") and not _TAG_MANIFEST.fullmatch(n)
    )
    manifests: dict[str, tuple[str, dict[str, str]]] = {}
    for name in sorted(n for n in run.names if _TAG_MANIFEST.fullmatch(n)):
        algorithm = name.removeprefix("tagmanifest-").removesuffix(".txt")
        if algorithm not in _HEX_LENGTHS:
            run.fail(TAGS, name, "unsupported tag manifest algorithm: nothing covers this file")
        elif (listed := _read_manifest(run, TAGS, name, algorithm)) is not None:
            _check_listing(run, TAGS, name, listed, tags)
            manifests[name] = (algorithm, listed)
    if "tagmanifest-sha256.txt" not in run.names:
        run.fail(TAGS, "tagmanifest-sha256.txt", "missing from the bag")
    for path in tags:
        listed_anywhere = any(path in listed for _, listed in manifests.values())
        if listed_anywhere and (digests := run.digest(TAGS, path)) is not None:
            _compare(run, TAGS, path, digests, manifests)
    run.count(TAGS, len(tags))


def _check_checkpoint(run: _Run, given: str | None, origin: str | None) -> Checkpoint | None:
    """The checkpoint, if signed by the given key (or else by the bundled key)."""
    bundled = run.text(CHECKPOINT, KEY_PATH)
    text, subject = (bundled, KEY_PATH) if given is None else (given, "the given key")
    note = run.text(CHECKPOINT, CHECKPOINT_PATH)
    if text is None:
        return None
    try:
        verifier = NoteVerifier.from_text(text.strip())
    except (Error, ValueError) as exc:
        run.fail(CHECKPOINT, subject, f"malformed verifier key: {exc}")
        return None
    if given is not None and bundled is not None and bundled.strip() != given.strip():
        run.fail(CHECKPOINT, KEY_PATH, f"the bundled key is not the given key {given.strip()}")
    if note is None:
        return None
    run.count(CHECKPOINT)
    try:
        return open_checkpoint(note, verifier, origin=origin)
    except Error as exc:
        run.fail(CHECKPOINT, CHECKPOINT_PATH, f"not verified: {exc.diagnostics()}")
        return None


def _check_entries(run: _Run) -> dict[int, tuple[bytes, dict[str, object]]]:
    """Each custody/entries file: a canonical entry whose index is its file name's."""
    entries: dict[int, tuple[bytes, dict[str, object]]] = {}
    names = sorted(n for n in run.names if n.startswith("custody/entries/"))
    for name in names:
        match = _ENTRY_NAME.fullmatch(name)
        leaf = run.read(ENTRIES, name, _ENTRY_LIMIT) if match else None
        if match is None:
            run.fail(ENTRIES, name, "not named custody/entries/<12-digit index>.json")
        if match is None or leaf is None:
            continue
        try:
            fields = decode_entry(leaf)
        except FormatError as exc:
            run.fail(ENTRIES, name, exc.diagnostics())
            continue
        # Distinct file names and matching index fields make the entries distinct.
        if fields["index"] != int(match[1]):
            run.fail(ENTRIES, name, f"entry has index {fields['index']}, file name {match[1]}")
            continue
        entries[int(match[1])] = (leaf, fields)
    run.count(ENTRIES, len(names))
    return entries


def _decode_proof(value: object) -> list[bytes]:
    if not isinstance(value, list) or not all(isinstance(h, str) for h in value):
        raise FormatError("a proof must be a list of base64 strings")
    try:
        return [base64.b64decode(h, validate=True) for h in value]
    except binascii.Error:
        raise FormatError("a proof hash is not base64") from None


def _check_proofs(
    run: _Run, checkpoint: Checkpoint | None, entries: Mapping[int, tuple[bytes, object]]
) -> None:
    """Each entry's RFC 9162 §2.1.3.2 inclusion proof leads to the checkpoint's root."""
    document = run.document(PROOFS, PROOFS_PATH)
    proofs, size = (document or {}).get("proofs"), (document or {}).get("tree_size")
    if document is not None and (not isinstance(proofs, dict) or not isinstance(size, int)):
        run.fail(PROOFS, PROOFS_PATH, "needs an integer tree_size and a proofs object")
    if not isinstance(proofs, dict) or not isinstance(size, int) or checkpoint is None:
        return
    if size != checkpoint.size:
        run.fail(PROOFS, PROOFS_PATH, f"proofs are for size {size}, checkpoint {checkpoint.size}")
    for key in sorted(proofs):
        if not _DECIMAL.fullmatch(key) or entry_path(int(key)) not in run.names:
            run.fail(PROOFS, PROOFS_PATH, f"proof for entry {key!r}, which is not in the bag")
    for index, (leaf, _) in sorted(entries.items()):
        run.count(PROOFS)
        if str(index) not in proofs:
            run.fail(PROOFS, entry_path(index), "no inclusion proof in custody/proofs.json")
            continue
        try:
            merkle.verify_inclusion(
                index=index,
                size=checkpoint.size,
                leaf_hash=merkle.leaf_hash(leaf),
                proof=_decode_proof(proofs[str(index)]),
                root=checkpoint.root_hash,
            )
        except Error as exc:
            run.fail(PROOFS, entry_path(index), f"not in the checkpoint: {exc.diagnostics()}")


_ITEM_FIELDS: dict[str, type] = {
    "id": str,
    "sha256": str,
    "sha512": str,
    "size": int,
    "ingest_index": int,
    "path": str,
}


def _check_items(
    run: _Run,
    payload: Mapping[str, ContentDigests],
    entries: Mapping[int, tuple[bytes, dict[str, object]]],
) -> None:
    """Each evidence item: its file's digests, its ingest entry; each incident's record."""
    document = run.document(ITEMS, ITEMS_PATH)
    if document is None:
        return
    evidence, incidents = document.get("evidence"), document.get("incidents")
    if not isinstance(evidence, list) or not isinstance(incidents, list):
        run.fail(ITEMS, ITEMS_PATH, "needs an evidence list and an incidents list")
        return
    described = set()
    for position, item in enumerate(evidence):
        if not isinstance(item, dict) or any(
            not isinstance(item.get(k), t) or isinstance(item.get(k), bool)
            for k, t in _ITEM_FIELDS.items()
        ):
            run.fail(ITEMS, ITEMS_PATH, f"evidence item {position} is malformed")
            continue
        _check_item(run, item, payload, entries)
        described.add(item["path"])
    for path in sorted(payload.keys() - described):
        if path.startswith("data/evidence/"):
            run.fail(ITEMS, path, f"evidence file not described in {ITEMS_PATH}")
    for incident in incidents:
        record = f"data/records/incidents/{incident}.json"
        if not isinstance(incident, str) or record not in run.names:
            run.fail(ITEMS, f"incident:{incident}", f"no record file {record}")
    run.count(ITEMS, len(evidence) + len(incidents))


def _check_item(
    run: _Run,
    item: Mapping[str, object],
    payload: Mapping[str, ContentDigests],
    entries: Mapping[int, tuple[bytes, dict[str, object]]],
) -> None:
    subject, path = f"evidence:{item['id']}", str(item["path"])
    if not path.startswith(f"data/evidence/{item['id']}/") or path.count("/") != 3:
        run.fail(ITEMS, subject, f"path {path!r} is not data/evidence/{item['id']}/<name>")
    if f"data/records/evidence/{item['id']}.json" not in run.names:
        run.fail(ITEMS, subject, "no record file in data/records/evidence/")
    digests = payload.get(path)
    actual = {"size": digests.size, "sha256": digests.sha256.hex} if digests else {}
    actual |= {"sha512": digests.sha512.hex} if digests else {}
    if digests is None:
        run.fail(ITEMS, subject, f"payload file {path} is missing or unreadable")
    for field, value in actual.items():
        if item[field] != value:
            run.fail(ITEMS, subject, f"{field} mismatch: items.json {item[field]}, file {value}")
    index = item["ingest_index"]
    _, fields = entries.get(index, (b"", None)) if isinstance(index, int) else (b"", None)
    if fields is None:
        run.fail(ITEMS, subject, f"ingest entry {index} is not a valid entry in the bag")
        return
    want = {"action": "evidence.ingested", "subject": subject, "sha256": item["sha256"]}
    want |= {k: item[k] for k in ("sha512", "size") if k in fields}
    for field, value in want.items():
        if fields.get(field) != value:
            run.fail(ITEMS, subject, f"ingest entry {index} {field} is {fields.get(field)!r}")


def _check_timestamp(run: _Run, given: Sequence[x509.Certificate] | None) -> AttestedTime | None:
    """The RFC 3161 token, if any: over checkpoint.txt's exact bytes, signed by a TSA that
    chains to the given CA certificates (else to the bundled custody/tsa-ca.pem)."""
    if TIMESTAMP_PATH not in run.names:
        return None
    run.count(TIMESTAMP)
    token = run.read(TIMESTAMP, TIMESTAMP_PATH)
    note = run.read(TIMESTAMP, CHECKPOINT_PATH)
    roots = given
    if roots is None and TSA_CA_PATH not in run.names:
        run.fail(TIMESTAMP, TSA_CA_PATH, "missing: give the TSA's CA certificate (--tsa-ca)")
        return None
    if roots is None and (pem := run.read(TIMESTAMP, TSA_CA_PATH)) is not None:
        try:
            roots = load_certificates(pem)
        except FormatError as exc:
            run.fail(TIMESTAMP, TSA_CA_PATH, exc.diagnostics())
    if token is None or note is None or roots is None:
        return None
    try:
        return verify_timestamp(token, note, roots=roots)
    except TimestampMismatch as exc:
        run.fail(TIMESTAMP, TIMESTAMP_PATH, f"not a timestamp of {CHECKPOINT_PATH}: {exc}")
    except Error as exc:
        run.fail(TIMESTAMP, TIMESTAMP_PATH, f"not verified: {exc.diagnostics()}")
    return None
