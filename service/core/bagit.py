"""BagIt 1.0 (RFC 8493): writing a bag's tag files, and checking a bag as it is read.

Writing is a few text helpers; checking goes through an abstract `BundleReader`, so this
module does no I/O. A check never raises on bad input: every problem becomes a `Finding`
in the `BagCheck` that names the file or manifest line concerned. What a locker bundle
adds on top of the bag (custody entries, proofs, checkpoint) is checked in `bundle`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from service.core.digests import ContentDigests, digest_stream
from service.core.names import safe_filename as safe_filename  # re-exported for writers
from service.errors import Error, FormatError

BAGIT_TXT = "BagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8\n"  # RFC 8493 §2.1.1
PAYLOAD_ALGORITHMS = ("sha256", "sha512")
TAG_LIMIT = 64 * 1024 * 1024  # the largest tag file read whole (proofs of many entries)

# The names of the checks, as findings and `Verdict.checked` report them.
PATHS, BAGIT, BAG_INFO, MANIFESTS, PAYLOAD, TAGS = (
    "paths",
    "bagit.txt",
    "bag-info.txt",
    "payload manifests",
    "payload digests",
    "tag manifest",
)

_TAG_MANIFEST = re.compile(r"tagmanifest-[^/]*\.txt")
_HEX_LENGTHS = {"sha256": 64, "sha512": 128}
_MANIFEST_LINE = re.compile(r"([0-9a-fA-F]+)[ \t]+(.+)")  # RFC 8493 §2.1.3
_LABEL = re.compile(r"[^\s:](?:[^:\r\n]*[^\s:])?")  # RFC 8493 §2.2.2
_NEWLINE = re.compile(r"\r\n|\r|\n")  # RFC 8493 §2.1: any of the three ends a line
_PERCENT = re.compile(r"%(25|0[dD]|0[aA])")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_DRIVE = re.compile(r"[A-Za-z]:")


# --- Writing (the exporter) ---------------------------------------------------------


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


def unsafe_path(name: str) -> bool:
    """Whether `name` is absolute, has a backslash, '..' or empty part: never to be opened."""
    parts = name.split("/")
    return (
        "\\" in name
        or "\0" in name
        or bool(_DRIVE.match(name))
        or any(part in ("", ".", "..") for part in parts)
    )


class BagCheck:
    """The state of one bag's check: its safe names, the findings and the counts."""

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


def check_bagit(run: BagCheck) -> None:
    """bagit.txt declares BagIt 1.0 in UTF-8, and nothing is left to fetch."""
    if "fetch.txt" in run.names:  # RFC 8493 §2.2.3: a bundle must be complete
        run.fail(BAGIT, "fetch.txt", "a bundle must hold every file, not fetch them")
    text = run.text(BAGIT, "bagit.txt")
    if text is not None and text != BAGIT_TXT:
        run.fail(BAGIT, "bagit.txt", f"expected {BAGIT_TXT!r}, got {text[:200]!r}")
    run.count(BAGIT)


def _lines(text: str) -> list[str]:
    lines = _NEWLINE.split(text)
    return lines[:-1] if lines and lines[-1] == "" else lines


def _read_manifest(run: BagCheck, check: str, name: str, algorithm: str) -> dict[str, str] | None:
    """A manifest's path → lowercase hex (RFC 8493 §2.1.3), each bad line a finding."""
    text = run.text(check, name)
    if text is None:
        return None
    payload = not name.startswith("tag")
    listed: dict[str, str] = {}
    if text and not text.endswith(("\n", "\r")):  # RFC 8493 §2.1.3: every line ends
        run.fail(check, name, "the last line has no line ending: the file was cut short")
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
    # Nothing signs a tag manifest (it lists the seal), so it must be the one spelling
    # of its listing the exporter writes: sorted "<lowercase hex>  <path>" lines. Then
    # it holds no byte that the signed files it lists do not determine.
    if not payload and text != manifest_text(listed.items()):
        run.fail(check, name, "not sorted '<lowercase hex>  <path>' lines, one per tag file")
    return listed


def _check_listing(
    run: BagCheck, check: str, name: str, listed: Mapping[str, str], files: Iterable[str]
) -> None:
    """Every file in `files` is listed in manifest `name`; every listed file is present."""
    for path in files:
        if path not in listed:
            run.fail(check, path, f"not listed in {name}")
    for path in sorted(listed.keys() - run.names):
        run.fail(check, path, f"listed in {name} but missing from the bag")


def _compare(
    run: BagCheck,
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


def check_payload(run: BagCheck) -> dict[str, ContentDigests]:
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


def check_bag_info(
    run: BagCheck, payload: Mapping[str, ContentDigests], required: Sequence[str]
) -> dict[str, list[str]] | None:
    """The `required` labels once each, a real date and a true Payload-Oxum; the fields."""
    text = run.text(BAG_INFO, "bag-info.txt")
    run.count(BAG_INFO)
    try:
        fields = _parse_bag_info(text) if text is not None else None
    except FormatError as exc:
        run.fail(BAG_INFO, "bag-info.txt", str(exc))
        fields = None
    if fields is None:
        return None
    for label in required:
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
    return fields


def check_tag_manifests(run: BagCheck) -> None:
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
