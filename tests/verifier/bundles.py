"""Builds valid evidence bundles for the verifier's tests from the pure core alone.

A small custody log (other organisations' entries included, so proofs are not trivial),
two evidence items (one with an Arabic file name) linked to one incident, with the
export's signed entries and seal, in a BagIt zip exactly as the exporter writes it.
Helpers then tamper with the zip.
"""

from __future__ import annotations

import hashlib
import json
import stat
import uuid
import warnings
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from service.core import bagit, bundle, merkle, seal
from service.core.canonical import canonical_json
from service.core.checkpoint import Checkpoint, NoteSigner, sign_checkpoint
from service.core.entry import ENTRY_FORMAT_V1, encode_entry, entry_fields

ORIGIN = "locker.example/custody"
ORG = "org-0001"
OTHER_ORG = "org-0002"
EXPORT_ID = "0f0e0d0c-0000-4000-8000-000000000001"
INCIDENT = str(uuid.UUID(int=0x1C))
ARABIC_NAME = "شهادة الشاهد.txt"
DEFAULT_EVIDENCE = (
    (ARABIC_NAME, "رأيت الدبابات تدخل المدينة عند الفجر.\n".encode()),
    ("../../.hidden photo.jpg", bytes(range(256)) * 400),
)
TOP = f"export-{EXPORT_ID}"
EVIDENCE_PATHS = tuple(
    f"data/evidence/{uuid.UUID(int=n)}/{bagit.safe_filename(name)}"
    for n, (name, _) in enumerate(DEFAULT_EVIDENCE, start=1)
)
PAYLOAD_PATHS = (
    *EVIDENCE_PATHS,
    *(f"data/records/evidence/{uuid.UUID(int=n)}.json" for n in (1, 2)),
    f"data/records/incidents/{INCIDENT}.json",
)


@dataclass(frozen=True, slots=True)
class Outsider:
    """An item in the same log but not in the bundle, with its real ingest entry and
    its inclusion proof in the bundle's tree: what a forger would insert."""

    evidence_id: str
    filename: str
    content: bytes
    organisation: str
    ingest_index: int
    leaf: bytes
    proof: list[bytes]


@dataclass(frozen=True, slots=True)
class Built:
    """A bundle on disk and what a test needs to know about it."""

    path: Path
    top: str
    key: str  # the verifier key text
    signer: NoteSigner
    evidence_ids: tuple[str, ...]
    entry_indexes: tuple[int, ...]
    outsiders: tuple[Outsider, ...] = ()

    def name(self, rel: str) -> str:
        """The zip member name of bag path `rel`."""
        return f"{self.top}/{rel}"


class _Log:
    """An in-memory custody log: the leaves and their hashes."""

    def __init__(self, *, v1: bool = False) -> None:
        self.leaves: list[bytes] = []
        self.v1 = v1  # write entries as before format v2 (the export's own stay v2)

    def append(
        self,
        action: str,
        subjects: str | list[str],
        organisation: str = ORG,
        **details: object,
    ) -> int:
        index = len(self.leaves)
        fields = entry_fields(
            index=index,
            time=f"2025-03-01T10:00:{index:02d}Z",
            organisation=organisation,
            actor="user:7",
            action=action,
            subjects=[subjects] if isinstance(subjects, str) else subjects,
            details=details,
        )
        if self.v1 and not action.startswith("export."):
            del fields["subjects"]
            self.leaves.append(encode_entry(fields, entry_format=ENTRY_FORMAT_V1))
        else:
            self.leaves.append(encode_entry(fields))
        return index

    def proof(self, index: int) -> list[bytes]:
        """PATH(index, D[n]) (RFC 9162 §2.1.3.1): each range's hash straight from the RFC."""
        hashes = [merkle.leaf_hash(leaf) for leaf in self.leaves]
        ranges = merkle.inclusion_ranges(index, len(hashes))
        return [merkle.root_from_leaf_hashes(hashes[start:end]) for start, end in ranges]

    def root(self) -> bytes:
        return merkle.root_from_leaf_hashes([merkle.leaf_hash(leaf) for leaf in self.leaves])


def _ingest(log: _Log, evidence_id: str, content: bytes, organisation: str = ORG) -> int:
    return log.append(
        "evidence.ingested",
        f"evidence:{evidence_id}",
        organisation,
        sha256=hashlib.sha256(content).hexdigest(),
        sha512=hashlib.sha512(content).hexdigest(),
        size=len(content),
        media_type="application/octet-stream",
    )


def bag_files(
    payload: Mapping[str, bytes], tags: Mapping[str, bytes], info: Mapping[str, str]
) -> dict[str, bytes]:
    """Payload, manifests, bag-info with Payload-Oxum and `tags`; no tag manifest yet."""
    size = sum(len(data) for data in payload.values())
    fields = {**info, "Payload-Oxum": f"{size}.{len(payload)}"}
    files = dict(payload)
    files["bagit.txt"] = bagit.BAGIT_TXT.encode()
    files["bag-info.txt"] = bagit.bag_info_text(fields).encode()
    for algorithm in bagit.PAYLOAD_ALGORITHMS:
        listing = ((p, hashlib.new(algorithm, d).hexdigest()) for p, d in payload.items())
        files[f"manifest-{algorithm}.txt"] = bagit.manifest_text(listing).encode()
    return files | dict(tags)


def with_tag_manifest(files: Mapping[str, bytes]) -> dict[str, bytes]:
    """`files` and a tag manifest listing every file outside data/."""
    listed = ((p, hashlib.sha256(d).hexdigest()) for p, d in files.items() if p[:5] != "data/")
    tagmanifest = bagit.manifest_text(p for p in listed if not p[0].startswith("tagmanifest-"))
    return {**files, "tagmanifest-sha256.txt": tagmanifest.encode()}


def seal_document(files: Mapping[str, bytes], export_id: str, organisation: str) -> bytes:
    """custody/seal.json over every file of `files` the seal covers."""
    digests = {p: hashlib.sha256(d).hexdigest() for p, d in files.items() if seal.is_sealed(p)}
    return seal.seal_json(export_id=export_id, organisation=organisation, files=digests)


def _outsider(log: _Log, number: int, organisation: str) -> tuple[str, str, bytes, int]:
    evidence_id = str(uuid.UUID(int=0x100 + number))
    content = f"an item of {organisation} that is not in the bundle\n".encode()
    return (
        evidence_id,
        f"outsider {number}.txt",
        content,
        _ingest(log, evidence_id, content, organisation),
    )


def build(
    directory: Path,
    *,
    evidence: Iterable[tuple[str, bytes]] = DEFAULT_EVIDENCE,
    signer: NoteSigner | None = None,
    name: str = "bundle.zip",
    v1: bool = False,
) -> Built:
    """Write a valid bundle of `evidence` (file name, content) linked to one incident,
    sealed as the exporter seals it (export.created, files, seal.json, export.sealed)."""
    signer = signer or NoteSigner.generate(ORIGIN)
    log, items, payload = _Log(v1=v1), [], {}
    log.append("organisation.created", "organisation:other", OTHER_ORG)
    outsiders = [_outsider(log, 0, OTHER_ORG), _outsider(log, 1, ORG)]
    included = [log.append("incident.created", f"incident:{INCIDENT}", title="Shelling")]
    for number, (filename, content) in enumerate(evidence, start=1):
        evidence_id = str(uuid.UUID(int=number))
        log.append("evidence.ingested", f"evidence:{uuid.uuid4()}", sha256="0" * 64)
        ingest = _ingest(log, evidence_id, content)
        link = log.append("incident.linked", [f"incident:{INCIDENT}", f"evidence:{evidence_id}"])
        included += [ingest, link]
        path = f"data/evidence/{evidence_id}/{bagit.safe_filename(filename)}"
        digests = {"sha256": hashlib.sha256(content).hexdigest(), "size": len(content)}
        digests["sha512"] = hashlib.sha512(content).hexdigest()
        item = {"id": evidence_id, **digests, "ingest_index": ingest, "path": path}
        items.append(item)
        payload[path] = content
        record = {**item, "filename": filename, "custody_index": [ingest, link]}
        payload[f"data/records/evidence/{evidence_id}.json"] = canonical_json(record)
    record = {"id": INCIDENT, "title": "Shelling", "evidence": [i["id"] for i in items]}
    payload[f"data/records/incidents/{INCIDENT}.json"] = canonical_json(record)
    included.append(
        log.append(
            seal.CREATED,
            [
                f"export:{EXPORT_ID}",
                *(f"evidence:{i['id']}" for i in items),
                f"incident:{INCIDENT}",
            ],
            evidence=[{"id": i["id"], "sha256": i["sha256"]} for i in items],
            incidents=[INCIDENT],
        )
    )
    info = {
        "Source-Organization": ORG,
        "Bagging-Date": "2025-03-02",
        "External-Identifier": EXPORT_ID,
        "Bag-Software-Agent": "evidence-locker tests",
        "Locker-Log-Origin": ORIGIN,
    }
    files = bag_files(
        payload,
        {
            "custody/items.json": bundle.items_json(items, [INCIDENT]),
            "report/report.html": "<html><body>تقرير</body></html>\n".encode(),
        },
        info,
    )
    files[seal.SEAL_PATH] = seal_document(files, EXPORT_ID, ORG)
    sealed = hashlib.sha256(files[seal.SEAL_PATH]).hexdigest()
    included.append(log.append(seal.SEALED, f"export:{EXPORT_ID}", seal_sha256=sealed))
    for _ in range(5):
        log.append("access.read", "organisation:other", OTHER_ORG)
    checkpoint = Checkpoint(origin=ORIGIN, size=len(log.leaves), root_hash=log.root())
    files["custody/checkpoint.txt"] = sign_checkpoint(checkpoint, signer).encode()
    files["custody/verifier-key.txt"] = (signer.verifier().to_text() + "\n").encode()
    files |= {bundle.entry_path(i): log.leaves[i] for i in included}
    proofs = {i: log.proof(i) for i in included}
    files["custody/proofs.json"] = bundle.proofs_json(len(log.leaves), proofs)
    zip_path = directory / name
    write_members(
        zip_path, [(f"{TOP}/{rel}", data) for rel, data in with_tag_manifest(files).items()]
    )
    ids = tuple(str(i["id"]) for i in items)
    return Built(
        zip_path,
        TOP,
        signer.verifier().to_text(),
        signer,
        ids,
        tuple(sorted(included)),
        tuple(
            Outsider(
                e,
                f,
                c,
                str(json.loads(log.leaves[i])["organisation"]),
                i,
                log.leaves[i],
                log.proof(i),
            )
            for e, f, c, i in outsiders
        ),
    )


# --- Reading and tampering with zips --------------------------------------------------


def read_members(path: Path) -> dict[str, bytes]:
    """Every member of the zip, by name, in order."""
    with zipfile.ZipFile(path) as archive:
        return {info.filename: archive.read(info) for info in archive.infolist()}


def write_members(
    path: Path, members: Iterable[tuple[str, bytes]], *, symlinks: Iterable[str] = ()
) -> Path:
    """A zip of `members` (duplicates allowed); names in `symlinks` become symlinks."""
    links = set(symlinks)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, data in members:
            info = zipfile.ZipInfo(name, date_time=(2025, 3, 2, 0, 0, 0))
            if name in links:
                info.create_system = 3
                info.external_attr = (stat.S_IFLNK | 0o777) << 16
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # zipfile warns on duplicate names
                archive.writestr(info, data)
    return path


def rewrite_member(source: Path, target: Path, name: str, data: bytes) -> Path:
    """A copy of the zip with member `name` holding `data` instead."""
    members = read_members(source)
    assert name in members, name
    members[name] = data
    return write_members(target, members.items())


def drop_member(source: Path, target: Path, name: str) -> Path:
    """A copy of the zip without member `name`."""
    members = read_members(source)
    del members[name]
    return write_members(target, members.items())


def add_member(source: Path, target: Path, name: str, data: bytes) -> Path:
    """A copy of the zip with one more member (any name, even an unsafe one)."""
    return write_members(target, [*read_members(source).items(), (name, data)])


def reseal_files(members: Mapping[str, bytes], *, seal_too: bool = False) -> dict[str, bytes]:
    """The bag's files (by bag path) with manifests, Payload-Oxum and tag manifest
    recomputed, as a careful forger would; with `seal_too`, custody/seal.json as well
    (which export.sealed then no longer signs)."""
    payload = {p: d for p, d in members.items() if p.startswith("data/")}
    generated = {"bagit.txt", "bag-info.txt", "tagmanifest-sha256.txt"}
    generated |= {f"manifest-{a}.txt" for a in bagit.PAYLOAD_ALGORITHMS}
    tags = {p: d for p, d in members.items() if p not in payload and p not in generated}
    lines = members["bag-info.txt"].decode(errors="replace").splitlines()
    info = dict(line.split(": ", 1) for line in lines if ": " in line)
    info.pop("Payload-Oxum", None)
    files = bag_files(payload, tags, info)
    if seal_too:
        files[seal.SEAL_PATH] = seal_document(
            files, info.get("External-Identifier", ""), info.get("Source-Organization", "")
        )
    return with_tag_manifest(files)


def reseal(source: Path, target: Path, top: str, *, seal_too: bool = False) -> Path:
    """A copy of the zip resealed by `reseal_files`."""
    members = {n.removeprefix(f"{top}/"): d for n, d in read_members(source).items()}
    sealed = reseal_files(members, seal_too=seal_too)
    return write_members(target, [(f"{top}/{rel}", data) for rel, data in sealed.items()])
