"""Evidence bundles: a BagIt 1.0 bag (RFC 8493) of evidence with its custody proofs.

The exporter writes the custody tag files with the helpers at the top (the bag's own
files with `bagit`); `verify_bundle` checks a bundle through an abstract `BundleReader`,
so this module does no I/O and the same code serves the server's tests and a court
expert's offline verifier. It never raises on bad input: every problem becomes a
`Finding` naming the file, entry or item concerned.

What the signature proves: the checkpoint is signed; its root commits to every custody
entry (RFC 9162 inclusion proofs); each ingest entry commits to its evidence's SHA-256;
the export's own entries commit to its organisation, its exact items and (through
custody/seal.json, see `seal`) the digest of every file a reader relies on.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from dataclasses import field as _field
from typing import Literal

from cryptography import x509

from service.core import merkle
from service.core.bagit import (
    BagCheck,
    BundleReader,
    Finding,
    check_bag_info,
    check_bagit,
    check_payload,
    check_tag_manifests,
)
from service.core.canonical import canonical_json
from service.core.checkpoint import Checkpoint, open_checkpoint, parse_verifier_keys
from service.core.digests import ContentDigests
from service.core.entry import decode_entry, entry_subjects
from service.core.seal import check_export, check_organisation, check_seal, read_document
from service.core.timestamp import (
    AttestedTime,
    TimestampMismatch,
    load_certificates,
    verify_timestamp,
)
from service.errors import Error, FormatError

BAG_INFO_LABELS = (
    "Source-Organization",
    "Bagging-Date",
    "External-Identifier",
    "Payload-Oxum",
    "Bag-Software-Agent",
    "Locker-Log-Origin",
)
CHECKPOINT_PATH = "custody/checkpoint.txt"
KEY_PATH = "custody/verifier-key.txt"
PROOFS_PATH = "custody/proofs.json"
ITEMS_PATH = "custody/items.json"
TIMESTAMP_PATH = "custody/checkpoint.tsr"  # RFC 3161 TimeStampResp over checkpoint.txt
TSA_CA_PATH = "custody/tsa-ca.pem"  # the TSA's CA as the locker knew it (do not rely on it)

# The names of the custody checks, as findings and `Verdict.checked` report them.
CHECKPOINT, ENTRIES, PROOFS, ITEMS = ("checkpoint", "custody entries", "inclusion proofs", "items")
TIMESTAMP = "trusted timestamp"

_ENTRY_LIMIT = 1024 * 1024
_ENTRY_NAME = re.compile(r"custody/entries/([0-9]{12})\.json")
_DECIMAL = re.compile(r"0|[1-9][0-9]*")
_TOKEN_NAME = re.compile(r"custody/checkpoint(?:\.([a-z0-9][a-z0-9.-]*))?\.tsr")


# --- Writing (the exporter) ---------------------------------------------------------


def proofs_json(tree_size: int, proofs: Mapping[int, Sequence[bytes]]) -> bytes:
    """custody/proofs.json: each entry's inclusion proof (base64 hashes) in the tree."""
    encoded = {str(i): [base64.b64encode(h).decode("ascii") for h in p] for i, p in proofs.items()}
    return canonical_json({"tree_size": tree_size, "proofs": encoded})


def items_json(evidence: Sequence[Mapping[str, object]], incidents: Sequence[str]) -> bytes:
    """custody/items.json: the evidence items (id, digests, size, ingest entry, path)."""
    return canonical_json({"evidence": [dict(e) for e in evidence], "incidents": list(incidents)})


def timestamp_paths(authority: str | None) -> tuple[str, str]:
    """Where a bundle keeps an authority's token and its CA certificate: checkpoint.tsr
    and tsa-ca.pem for the primary (None, the first configured), else named after it."""
    if authority is None:
        return TIMESTAMP_PATH, TSA_CA_PATH
    return f"custody/checkpoint.{authority}.tsr", f"custody/tsa-ca.{authority}.pem"


def entry_path(index: int) -> str:
    """The tag file holding the exact leaf bytes of custody entry `index`."""
    return f"custody/entries/{index:012d}.json"


# --- Reading ------------------------------------------------------------------------


@dataclass(slots=True)
class Verdict:
    """The outcome of verifying a bundle: ok only if there are no findings."""

    findings: list[Finding]
    checked: dict[str, int]
    key_source: Literal["given", "bundle"]
    checkpoint: Checkpoint | None
    timestamp: AttestedTime | None = None  # the first of `timestamps`
    tsa_source: Literal["given", "bundle"] = "bundle"
    timestamps: dict[str, AttestedTime] = _field(default_factory=dict)  # by token file

    @property
    def ok(self) -> bool:
        """Whether every check passed."""
        return not self.findings


def verify_bundle(
    reader: BundleReader,
    *,
    verifier_key: str | None,
    tsa_roots: Sequence[x509.Certificate] | None = None,
) -> Verdict:
    """Check everything a bundle claims; with no `verifier_key` (or `tsa_roots` for the
    checkpoint's timestamp), trust the bundled one."""
    run = BagCheck(reader)
    check_bagit(run)
    payload = check_payload(run)
    fields = check_bag_info(run, payload, required=BAG_INFO_LABELS)
    origin = _single(fields, "Locker-Log-Origin")
    check_tag_manifests(run)
    checkpoint = _check_checkpoint(run, verifier_key, origin)
    entries = _check_entries(run)
    _check_proofs(run, checkpoint, entries)
    evidence, incidents = _check_items(run, payload, entries)
    organisation, export_id = (
        _single(fields, "Source-Organization"),
        _single(fields, "External-Identifier"),
    )
    check_organisation(run, organisation, entries)
    check_export(run, export_id, evidence, incidents, entries)
    check_seal(run, payload, (export_id, organisation), entries)
    timestamps = _check_timestamps(run, tsa_roots)
    first = next(iter(timestamps.values()), None)
    key_source: Literal["given", "bundle"] = "bundle" if verifier_key is None else "given"
    tsa_source: Literal["given", "bundle"] = "bundle" if tsa_roots is None else "given"
    return Verdict(run.findings, run.checked, key_source, checkpoint, first, tsa_source, timestamps)


def _single(fields: Mapping[str, list[str]] | None, label: str) -> str | None:
    """bag-info's one value for `label`, or None (a bag-info finding says why)."""
    values = (fields or {}).get(label, [])
    return values[0] if len(values) == 1 else None


def _check_checkpoint(run: BagCheck, given: str | None, origin: str | None) -> Checkpoint | None:
    """The checkpoint, if signed by the given key (or else by the bundled key)."""
    bundled = run.text(CHECKPOINT, KEY_PATH)
    text, subject = (bundled, KEY_PATH) if given is None else (given, "the given key")
    note = run.text(CHECKPOINT, CHECKPOINT_PATH)
    if text is None:
        return None
    try:
        verifier = parse_verifier_keys(text)  # one key, or the published key history
    except (Error, ValueError) as exc:
        run.fail(CHECKPOINT, subject, f"malformed verifier key: {exc}")
        return None
    if bundled is not None and bundled != bundled.strip() + "\n":
        run.fail(CHECKPOINT, KEY_PATH, "not one key on one line ending in a newline")
    # The given key may be the published key history: the bundled key must be one of it.
    if given is not None and bundled is not None and bundled.strip() not in given.split():
        run.fail(CHECKPOINT, KEY_PATH, f"the bundled key is not the given key {given.strip()}")
    if note is None:
        return None
    run.count(CHECKPOINT)
    try:
        return open_checkpoint(note, verifier, origin=origin)
    except Error as exc:
        run.fail(CHECKPOINT, CHECKPOINT_PATH, f"not verified: {exc.diagnostics()}")
        return None


def _check_entries(run: BagCheck) -> dict[int, tuple[bytes, dict[str, object]]]:
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
        hashes = [base64.b64decode(h, validate=True) for h in value]
    except binascii.Error:
        raise FormatError("a proof hash is not base64") from None
    # Canonical base64 only: unused low bits of the last character must be zero, so no
    # two spellings of one proof exist (each would be a bundle edit left unnoticed).
    if [base64.b64encode(h).decode("ascii") for h in hashes] != value:
        raise FormatError("a proof hash is not canonical base64")
    return hashes


def _check_proofs(
    run: BagCheck, checkpoint: Checkpoint | None, entries: Mapping[int, tuple[bytes, object]]
) -> None:
    """Each entry's RFC 9162 §2.1.3.2 inclusion proof leads to the checkpoint's root."""
    document = read_document(run, PROOFS, PROOFS_PATH)
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
    run: BagCheck,
    payload: Mapping[str, ContentDigests],
    entries: Mapping[int, tuple[bytes, dict[str, object]]],
) -> tuple[list[dict[str, object]] | None, list[object] | None]:
    """Each evidence item: its file's digests, its ingest entry; each incident's record.
    The well-formed items and the incidents, or Nones after a finding."""
    document = read_document(run, ITEMS, ITEMS_PATH)
    if document is None:
        return None, None
    evidence, incidents = document.get("evidence"), document.get("incidents")
    if not isinstance(evidence, list) or not isinstance(incidents, list):
        run.fail(ITEMS, ITEMS_PATH, "needs an evidence list and an incidents list")
        return None, None
    described, wellformed = set(), []
    for position, item in enumerate(evidence):
        if not isinstance(item, dict) or any(
            not isinstance(item.get(k), t) or isinstance(item.get(k), bool)
            for k, t in _ITEM_FIELDS.items()
        ):
            run.fail(ITEMS, ITEMS_PATH, f"evidence item {position} is malformed")
            continue
        _check_item(run, item, payload, entries)
        described.add(item["path"])
        wellformed.append(item)
    for path in sorted(payload.keys() - described):
        if path.startswith("data/evidence/"):
            run.fail(ITEMS, path, f"evidence file not described in {ITEMS_PATH}")
    for incident in incidents:
        record = f"data/records/incidents/{incident}.json"
        if not isinstance(incident, str) or record not in run.names:
            run.fail(ITEMS, f"incident:{incident}", f"no record file {record}")
    run.count(ITEMS, len(evidence) + len(incidents))
    return wellformed, incidents


def _check_item(
    run: BagCheck,
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
    if entry_subjects(fields) != [subject]:
        run.fail(ITEMS, subject, f"ingest entry {index} signs {entry_subjects(fields)}")


def _check_timestamps(
    run: BagCheck, given: Sequence[x509.Certificate] | None
) -> dict[str, AttestedTime]:
    """Every RFC 3161 token in the bundle, the primary's first, by file name: each over
    checkpoint.txt's exact bytes, signed by a TSA that chains to the given CA certificates
    (else to the CA bundled beside it)."""
    tokens = sorted(
        (match[0], timestamp_paths(match[1])[1])
        for name in run.names
        if (match := _TOKEN_NAME.fullmatch(name))
    )
    tokens.sort(key=lambda paths: paths[0] != TIMESTAMP_PATH)
    found = {}
    for token_path, ca_path in tokens:
        if (attested := _check_timestamp(run, given, token_path, ca_path)) is not None:
            found[token_path] = attested
    return found


def _check_timestamp(
    run: BagCheck, given: Sequence[x509.Certificate] | None, token_path: str, ca_path: str
) -> AttestedTime | None:
    run.count(TIMESTAMP)
    token = run.read(TIMESTAMP, token_path)
    note = run.read(TIMESTAMP, CHECKPOINT_PATH)
    roots = given
    if roots is None and ca_path not in run.names:
        run.fail(TIMESTAMP, ca_path, "missing: give the TSA's CA certificate (--tsa-ca)")
        return None
    if roots is None and (pem := run.read(TIMESTAMP, ca_path)) is not None:
        try:
            roots = load_certificates(pem)
        except FormatError as exc:
            run.fail(TIMESTAMP, ca_path, exc.diagnostics())
    if token is None or note is None or roots is None:
        return None
    try:
        return verify_timestamp(token, note, roots=roots)
    except TimestampMismatch as exc:
        run.fail(TIMESTAMP, token_path, f"not a timestamp of {CHECKPOINT_PATH}: {exc}")
    except Error as exc:
        run.fail(TIMESTAMP, token_path, f"not verified: {exc.diagnostics()}")
    return None
