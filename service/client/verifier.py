"""The offline verifier: opens a bundle zip and checks it with `service.core.bundle`.

It imports only the standard library, rich and the pure core (tests/verifier/
test_isolation.py holds it to that), so a court's expert can run it without the
server's database, object store or web framework.
"""

from __future__ import annotations

import json
import stat
import struct
import zipfile
import zlib
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Literal

from cryptography import x509
from rich.console import Console
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from service.core.bagit import PATHS, Finding, unsafe_path
from service.core.bundle import Verdict, verify_bundle
from service.core.names import visible_text
from service.core.timestamp import AttestedTime
from service.errors import FormatError

ZIP = "zip"
_CHUNK = 1024 * 1024
# What zipfile raises on damaged archives and members (CRC, inflate, encryption, method).
_ZIP_ERRORS = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    zlib.error,
    EOFError,
    RuntimeError,
    NotImplementedError,
    ValueError,
    struct.error,
)


def _top_folder(names: list[str]) -> str | None:
    """The bag's folder: the one holding bagit.txt, else the most common first part."""
    holding = {n.split("/")[0] for n in names if n.count("/") == 1 and n.endswith("/bagit.txt")}
    if len(holding) == 1:
        return holding.pop()
    tops = Counter(n.split("/")[0] for n in names if "/" in n)
    return tops.most_common(1)[0][0] if tops else None


def _is_symlink(info: zipfile.ZipInfo) -> bool:
    # Unix zips keep the st_mode in the high 16 bits of the external attributes.
    return info.create_system == 3 and stat.S_ISLNK(info.external_attr >> 16)


class ZipBundle:
    """A bundle zip as a `BundleReader` over the files in its single top folder.

    Entries that are unsafe, symlinks, duplicated or outside the folder are never read;
    each becomes a finding in `findings`.
    """

    def __init__(self, archive: zipfile.ZipFile) -> None:
        self._archive = archive
        self.findings: list[Finding] = []
        self._members: dict[str, zipfile.ZipInfo] = {}
        infos = archive.infolist()
        counts = Counter(info.filename for info in infos)
        self.top = _top_folder([i.filename for i in infos if not unsafe_path(i.filename)])
        if self.top is None:
            self.findings.append(Finding(ZIP, "(zip)", "no bag folder in the zip"))
        for info in infos:
            self._admit(info, counts[info.filename])
        self.entries = len(infos)

    def _admit(self, info: zipfile.ZipInfo, count: int) -> None:
        name = info.filename
        rel = name.removeprefix(f"{self.top}/")
        problem = None
        if unsafe_path(name.removesuffix("/") if info.is_dir() else name):
            problem = (PATHS, "unsafe path (absolute, '..', backslash); not extracted or read")
        elif count > 1:
            problem = (ZIP, f"the zip holds {count} entries with this name; none was read")
        elif _is_symlink(info):
            problem = (ZIP, "a symbolic link; not followed")
        elif rel == name and name != f"{self.top}/":
            problem = (ZIP, f"outside the bag folder {self.top}/")
        if problem is not None:
            self.findings.append(Finding(problem[0], name, problem[1]))
        elif not info.is_dir():
            self._members[rel] = info

    def names(self) -> list[str]:
        """Every file in the bag folder, relative to it."""
        return sorted(self._members)

    def open(self, name: str) -> Iterator[bytes]:
        """The member's content in chunks; FormatError if the zip cannot deliver it."""
        info = self._members.get(name)
        if info is None:
            raise FormatError(f"no file {name} in the bag")
        try:
            with self._archive.open(info) as handle:
                while chunk := handle.read(_CHUNK):
                    yield chunk
        except _ZIP_ERRORS as exc:
            raise FormatError(f"damaged zip entry: {exc}") from None

    def read(self, name: str, limit: int) -> bytes:
        """A small member whole; FormatError if it is longer than `limit` bytes."""
        data = bytearray()
        for chunk in self.open(name):
            data += chunk
            if len(data) > limit:
                raise FormatError(f"longer than the {limit}-byte limit for this file")
        return bytes(data)


def verify_path(
    path: Path | str,
    verifier_key_text: str | None,
    tsa_roots: Sequence[x509.Certificate] | None = None,
) -> Verdict:
    """Verify the bundle zip at `path`, against the given key and TSA CA certificates if
    any (else the bundled ones)."""
    key_source: Literal["given", "bundle"] = "bundle" if verifier_key_text is None else "given"
    try:
        archive = zipfile.ZipFile(path)
    except (*_ZIP_ERRORS, OSError) as exc:
        finding = Finding(ZIP, str(path), f"not a readable zip: {exc}")
        return Verdict([finding], {}, key_source, None)
    with archive:
        reader = ZipBundle(archive)
        verdict = verify_bundle(reader, verifier_key=verifier_key_text, tsa_roots=tsa_roots)
    verdict.findings[:0] = reader.findings
    verdict.checked = {ZIP: reader.entries, **verdict.checked}
    return verdict


_KEY_WARNING = (
    "No --verifier-key was given, so the checkpoint was checked against the key INSIDE the bundle. "
    "This proves the bundle is intact and self-consistent (integrity), NOT that it comes "
    "from the locker it names (origin): anyone can re-sign a bundle with a key of their "
    "own. Obtain the locker's verifier key through a separate channel and run again "
    "with --verifier-key."
)


_TSA_WARNING = (
    "The checkpoint's timestamps were checked against the TSA certificates INSIDE the "
    "bundle (custody/tsa-ca*.pem). Obtain each authority's CA certificate from the "
    "authority itself and run again with --tsa-ca to prove that it attested the time."
)


def _timestamp_line(verdict: Verdict, path: str, ts: AttestedTime) -> str:
    against = "--tsa-ca" if verdict.tsa_source == "given" else "the CA bundled beside it"
    return (
        f"Trusted timestamp (RFC 3161, {path}): the checkpoint existed at "
        f"{ts.time.isoformat()}, attested by {ts.authority} (serial {ts.serial_number}), "
        f"checked against {against}"
    )


def render(verdict: Verdict, console: Console) -> None:
    """Print a table of the checks, each finding in red and the verdict last."""
    failed = Counter(f.check for f in verdict.findings)
    table = Table(title="Bundle verification")
    for column in ("Check", "Checked", "Result"):
        table.add_column(column)
    for check in dict.fromkeys([*verdict.checked, *failed]):
        result = (
            Text(f"{failed[check]} failed", "bold red") if failed[check] else Text("ok", "green")
        )
        table.add_row(check, str(verdict.checked.get(check, 0)), result)
    console.print(table)
    if verdict.checkpoint is not None:
        cp = verdict.checkpoint
        console.print(
            Text(f"Checkpoint: {cp.origin}, tree size {cp.size}, root {cp.root_hash.hex()}")
        )
    for path, attested in verdict.timestamps.items():
        console.print(Text(_timestamp_line(verdict, path, attested), "green"))
    for finding in verdict.findings:
        line = f"✗ {finding.check}: {finding.subject}: {finding.message}"
        console.print(Text(visible_text(line), "red"))  # member names come from the bundle
    if verdict.key_source == "bundle":
        console.print(Panel(Text(_KEY_WARNING, "bold yellow"), title="WARNING", style="yellow"))
    if verdict.timestamps and verdict.tsa_source == "bundle":
        console.print(Panel(Text(_TSA_WARNING, "bold yellow"), title="WARNING", style="yellow"))
    if verdict.ok and verdict.key_source == "bundle":
        console.print(Text("INTACT, ORIGIN UNPROVEN (no --verifier-key)", "bold yellow"))
    elif verdict.ok:
        console.print(Text("VERIFIED", "bold green"))
    else:
        console.print(Text(f"NOT VERIFIED: {len(verdict.findings)} finding(s)", "bold red"))


def to_json(verdict: Verdict) -> str:
    """The verdict as a JSON document for tools: ok, key source, checkpoint, findings."""
    cp, ts = verdict.checkpoint, verdict.timestamp
    document = {
        "ok": verdict.ok,
        "key_source": verdict.key_source,
        "checkpoint": None
        if cp is None
        else {"origin": cp.origin, "tree_size": cp.size, "root_hash": cp.root_hash.hex()},
        "timestamp": None if ts is None else _timestamp_json(ts, verdict),
        "timestamps": [
            {"file": path, **_timestamp_json(attested, verdict)}
            for path, attested in verdict.timestamps.items()
        ],
        "checked": verdict.checked,
        "findings": [
            {"check": f.check, "subject": f.subject, "message": f.message} for f in verdict.findings
        ],
    }
    return json.dumps(document, indent=2, ensure_ascii=False)


def _timestamp_json(ts: AttestedTime, verdict: Verdict) -> dict[str, str]:
    return {
        "time": ts.time.isoformat(),
        "authority": ts.authority,
        "serial_number": str(ts.serial_number),
        "policy": ts.policy,
        "sha256": ts.sha256,
        "tsa_source": verdict.tsa_source,
    }
