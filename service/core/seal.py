"""What makes a bundle complete or refused: its signed export entries and its seal.

Two custody entries speak for a bundle. `export.created`, appended when the export is
requested, signs the organisation and the exact evidence items (id and SHA-256) and
incidents it holds. `export.sealed`, appended once every file a reader relies on has
been written, signs the SHA-256 of `custody/seal.json`, which lists those files and
their SHA-256. Both entries are proven against the bundle's signed checkpoint like any
other, so a bundle that loses or gains an item, or whose records, report or bag-info
were edited (manifests regenerated or not), no longer matches what was signed.

The files the seal cannot cover are those written after it, each checked on its own:
the checkpoint (its signature), the entries (their inclusion proofs), the proofs (the
root they lead to), the seal itself (the sealed entry), the verifier key (against the
key given to the verifier), timestamp tokens and CA certificates (the TSA's signature
over checkpoint.txt, against the CA given to the verifier) and the tag manifests
(a consistency listing only). Every other file must be sealed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence

from service.core.bagit import BagCheck
from service.core.canonical import canonical_json
from service.core.digests import ContentDigests, sha256
from service.core.entry import entry_subjects
from service.errors import FormatError

SEAL_PATH = "custody/seal.json"
CREATED, SEALED = "export.created", "export.sealed"
# The names of the checks, as findings and `Verdict.checked` report them.
SEAL, EXPORT, ORGANISATION = ("seal", "export entries", "organisation")

# Exactly these names: any other file is refused unless sealed, so nothing can be
# planted beside the seal under a name the verifier would not look at.
_UNSEALED = re.compile(
    r"tagmanifest-[^/]*\.txt"
    r"|custody/(checkpoint\.txt|verifier-key\.txt)"
    # RFC 3161 tokens, one per authority, each checked against checkpoint.txt on its own.
    r"|custody/checkpoint(\.[a-z0-9][a-z0-9.-]*)?\.tsr|custody/tsa-ca(\.[a-z0-9][a-z0-9.-]*)?\.pem"
    r"|custody/(proofs\.json|seal\.json)"
    r"|custody/entries/[^/]*"
)

Entries = Mapping[int, tuple[bytes, dict[str, object]]]


# --- Writing (the exporter) ---------------------------------------------------------


def is_sealed(path: str) -> bool:
    """Whether bag file `path` must be listed in the seal (see the module's docstring)."""
    return not _UNSEALED.fullmatch(path)


def seal_json(*, export_id: str, organisation: str, files: Mapping[str, str]) -> bytes:
    """custody/seal.json: the export, its organisation and each sealed file's SHA-256."""
    unsealable = sorted(p for p in files if not is_sealed(p))
    if unsealable:
        raise FormatError(f"these files are checked on their own, not sealed: {unsealable}")
    return canonical_json(
        {"export": export_id, "organisation": organisation, "files": dict(sorted(files.items()))}
    )


# --- Reading ------------------------------------------------------------------------


def read_document(run: BagCheck, check: str, name: str) -> dict[str, object] | None:
    """A canonical JSON object (RFC 8785) tag file, or None after a finding."""
    raw = run.read(check, name)
    return None if raw is None else parse_document(run, check, name, raw)


def parse_document(run: BagCheck, check: str, name: str, raw: bytes) -> dict[str, object] | None:
    """`raw` as a canonical JSON object (RFC 8785), or None after a finding."""
    try:
        value = json.loads(raw.decode("utf-8"))
        if canonical_json(value) != raw:
            raise FormatError("not canonical JSON (RFC 8785)")
    except (ValueError, RecursionError, FormatError) as exc:
        run.fail(check, name, f"not a canonical JSON document: {exc}")
        return None
    if not isinstance(value, dict):
        run.fail(check, name, "not a JSON object")
        return None
    return value


def check_organisation(run: BagCheck, organisation: str | None, entries: Entries) -> None:
    """Every entry in the bundle is of the bundle's organisation (bag-info's)."""
    if organisation is None:
        return  # bag-info's finding says why
    for index, (_, fields) in sorted(entries.items()):
        run.count(ORGANISATION)
        if fields["organisation"] != organisation:
            run.fail(
                ORGANISATION,
                f"custody/entries/{index:012d}.json",
                f"entry of organisation {fields['organisation']!r}, bundle of {organisation!r}",
            )


def _export_entry(
    run: BagCheck, entries: Entries, action: str, export_id: str
) -> dict[str, object] | None:
    """The one entry with `action` on export:`export_id`, or None after a finding."""
    found = [
        fields
        for _, fields in entries.values()
        if fields["action"] == action and f"export:{export_id}" in entry_subjects(fields)
    ]
    if len(found) != 1:
        run.fail(
            EXPORT, f"export:{export_id}", f"needs one {action} entry, the bundle has {len(found)}"
        )
        return None
    return found[0]


def check_export(
    run: BagCheck,
    export_id: str | None,
    evidence: Sequence[Mapping[str, object]] | None,
    incidents: Sequence[object] | None,
    entries: Entries,
) -> None:
    """The bundle's items are exactly those its signed export.created entry names."""
    run.count(EXPORT)
    if export_id is None:
        return
    created = _export_entry(run, entries, CREATED, export_id)
    if created is None or evidence is None or incidents is None:
        return
    signed = created.get("evidence")
    signed_items = (
        sorted((str(e.get("id")), str(e.get("sha256"))) for e in signed if isinstance(e, dict))
        if isinstance(signed, list)
        else []
    )
    held = sorted((str(e["id"]), str(e["sha256"])) for e in evidence)
    for item in sorted(set(held) - set(signed_items)):
        run.fail(EXPORT, f"evidence:{item[0]}", f"in the bundle, not in the signed {CREATED}")
    for item in sorted(set(signed_items) - set(held)):
        run.fail(EXPORT, f"evidence:{item[0]}", f"signed in {CREATED}, missing from the bundle")
    if len(held) != len(signed_items) and set(held) == set(signed_items):
        run.fail(
            EXPORT, "custody/items.json", f"{len(held)} items, {CREATED} signs {len(signed_items)}"
        )
    signed_incidents = created.get("incidents")
    if not isinstance(signed_incidents, list) or sorted(map(str, signed_incidents)) != sorted(
        map(str, incidents)
    ):
        run.fail(
            EXPORT,
            "custody/items.json",
            f"incidents {list(incidents)}, {CREATED} signs {signed_incidents}",
        )


def check_seal(
    run: BagCheck,
    payload: Mapping[str, ContentDigests],
    bundle: tuple[str | None, str | None],
    entries: Entries,
) -> None:
    """custody/seal.json is the one export.sealed signs, of this export and organisation
    (`bundle`, from bag-info), and lists every sealed file with its exact SHA-256."""
    export_id, organisation = bundle
    raw = run.read(SEAL, SEAL_PATH)
    run.count(SEAL)
    sealed = _export_entry(run, entries, SEALED, export_id) if export_id is not None else None
    if raw is not None and sealed is not None and sealed.get("seal_sha256") != sha256(raw).hex:
        run.fail(SEAL, SEAL_PATH, f"not the seal {SEALED} signs ({sealed.get('seal_sha256')})")
    document = None if raw is None else parse_document(run, SEAL, SEAL_PATH, raw)
    files = (document or {}).get("files")
    if document is not None and (
        not isinstance(files, dict) or not all(isinstance(v, str) for v in files.values())
    ):
        run.fail(SEAL, SEAL_PATH, "needs a files object of path to SHA-256")
    if document is None or not isinstance(files, dict):
        return
    for field, want in (("export", export_id), ("organisation", organisation)):
        if want is not None and document.get(field) != want:
            run.fail(SEAL, SEAL_PATH, f"{field} is {document.get(field)!r}, bag-info has {want!r}")
    for path in sorted(p for p in run.names if is_sealed(p) and p not in files):
        run.fail(SEAL, path, "in the bag but not sealed")
    for path, want in sorted(files.items()):
        run.count(SEAL)
        if path not in run.names:
            run.fail(SEAL, path, "sealed but missing from the bag")
            continue
        # Payload files were digested once already; only the tag files are read again.
        digests = payload.get(path) or run.digest(SEAL, path)
        if digests is not None and digests.sha256.hex != want:
            run.fail(SEAL, path, f"sha256 mismatch: sealed {want}, file has {digests.sha256.hex}")
