"""Evidence bundles: a BagIt bag (RFC 8493) in a zip, checkable offline.

Requesting an export is a custody event; the bundle is built in the background by
streaming each evidence object once from the store into the zip (digests checked on
the way), then stored and downloadable. Memory stays bounded whatever the size: the
zip is written to a temporary file and streamed into the store.
"""

from __future__ import annotations

import importlib.metadata
import json
import tempfile
import uuid
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, TYPE_CHECKING

from sqlalchemy import exists, not_
from sqlalchemy.orm import aliased
from sqlmodel import Session, col, select

from service.accounts.access import (
    hidden_subjects,
    subject_column,
    visible_clause,
    visible_evidence,
    visible_incident,
)
from service.accounts.members import Principal
from service.accounts.people import people_of
from service.accounts.permissions import Permission, Role
from service.core import bagit, bundle, seal
from service.core.canonical import canonical_json
from service.core.digests import ContentDigester, sha256
from service.core.entry import decode_entry
from service.core.names import safe_filename
from service.custody.log import AppendedEntry
from service.custody.timestamps import timestamp_checkpoint, timestamp_files
from service.db.models import (
    CustodyEntry,
    CustodySubject,
    Evidence,
    EvidenceAnalysis,
    EvidenceVersion,
    Export,
    Incident,
    IncidentEvidence,
    IncidentVersion,
    LinkEnd,
    SignedCheckpoint,
    Submission,
    User,
)
from service.documentation.incidents import withhold_identities, withhold_relations
from service.errors import DigestMismatch, Hidden, InvalidInput, NotFound, describe
from service.evidence.descriptions import latest_version
from service.evidence.integrity import Expected
from service.evidence.ranges import RangeRequest, entity_tag
from service.evidence.reading import ContentRead, ReadEntry, logged_read, record_read
from service.exports.report import render_report, write_pdf_report

if TYPE_CHECKING:
    from service.runtime import Runtime

_MAX_ITEMS = 10_000
_COPY_CHUNK = 1024 * 1024
_BUILDER = "system:exporter"  # the actor of the seal: the background build, not a person
_VERSION = importlib.metadata.version("evidence-locker")


@dataclass(frozen=True, slots=True, kw_only=True)
class _Item:
    evidence: Evidence
    submissions: list[Submission]
    path: str
    description: EvidenceVersion
    analysis: EvidenceAnalysis | None


def request_export(
    runtime: Runtime,
    principal: Principal,
    *,
    incident_id: str | None = None,
    evidence_ids: Sequence[str] = (),
) -> Export:
    """Record the export request (a custody event) and return the pending export."""
    principal.require(Permission.EVIDENCE_CONTENT)
    if (incident_id is None) == (not evidence_ids):
        raise InvalidInput("give either incident_id or evidence_ids")
    if len(evidence_ids) > _MAX_ITEMS:
        raise InvalidInput(f"evidence_ids: at most {_MAX_ITEMS} items per export")
    export_id = str(uuid.uuid4())
    with runtime.database.session() as session:
        incidents, evidence = _resolve(session, principal, incident_id, evidence_ids)
        if not evidence:
            raise InvalidInput("the export would hold no evidence")
        entry = runtime.log.append(
            session,
            organisation_id=principal.organisation_id,
            actor=principal.actor,
            action="export.created",
            subjects=[
                f"export:{export_id}",
                *(f"evidence:{e.id}" for e in evidence),
                *(f"incident:{i}" for i in incidents),
            ],
            details={
                "evidence": [{"id": e.id, "sha256": e.sha256} for e in evidence],
                "incidents": incidents,
            },
        )
        export = Export(
            id=export_id,
            organisation_id=principal.organisation_id,
            requested_by=principal.user_id,
            created_at=entry.time,
            custody_index=entry.index,
            request_json=json.dumps({"evidence": [e.id for e in evidence], "incidents": incidents}),
        )
        session.add(export)
    return export


def _resolve(
    session: Session, principal: Principal, incident_id: str | None, evidence_ids: Sequence[str]
) -> tuple[list[str], list[Evidence]]:
    if incident_id is not None:
        visible_incident(session, principal, incident_id)
        linked = session.exec(
            select(IncidentEvidence.evidence_id)
            .where(IncidentEvidence.incident_id == incident_id)
            .order_by(col(IncidentEvidence.custody_index))
        ).all()
        items = []
        for evidence_id in linked:
            try:
                items.append(visible_evidence(session, principal, evidence_id))
            except NotFound:
                continue  # a restricted item the caller cannot see is left out silently
        return [incident_id], items
    unique = list(dict.fromkeys(evidence_ids))
    return [], [visible_evidence(session, principal, e) for e in unique]


def get_export(runtime: Runtime, principal: Principal, export_id: str) -> Export:
    """The export if the caller may see everything in it; otherwise NotFound.

    A bundle is built for its requester's visibility: another member who cannot see one
    of its items or incidents cannot tell that it exists.
    """
    principal.require(Permission.EVIDENCE_CONTENT)
    with runtime.database.session() as session:
        export = session.get(Export, export_id)
        if export is None:
            raise NotFound(f"no export {export_id}")
        request = json.loads(export.request_json)
        held = [f"evidence:{e}" for e in request["evidence"]]
        held += [f"incident:{i}" for i in request["incidents"]]
        if export.organisation_id != principal.organisation_id or hidden_subjects(
            session, principal, held
        ):
            raise Hidden(
                f"no export {export_id}",
                subject=f"export:{export_id}",
                organisation_id=export.organisation_id,
            )
    return export


def open_export(
    runtime: Runtime, principal: Principal, export_id: str, wanted: RangeRequest | None = None
) -> tuple[Export, ContentRead]:
    """Open the stored bundle (or one range of it), record the download, then stream it.

    A download is recorded once, not once per range: see `record_read`.
    """
    export = get_export(runtime, principal, export_id)
    if export.status != "done" or export.object_key is None:
        raise InvalidInput(f"export {export_id} is {export.status}, not ready")
    sha256, size = export.sha256 or "", export.size or 0
    span = None
    if wanted is not None:
        finished = export.finished_at or export.created_at
        span = wanted.resolve(size=size, etag=entity_tag(sha256), last_modified=finished)
    entry = ReadEntry(
        organisation_id=principal.organisation_id,
        actor=principal.actor,
        action="export.downloaded",
        subjects=[
            f"export:{export_id}",
            *(f"evidence:{e}" for e in json.loads(export.request_json)["evidence"]),
        ],
        details={"sha256": sha256},
    )
    chunks = logged_read(
        runtime,
        export.object_key,
        export.object_version,
        lambda session: record_read(runtime, session, entry, span=span),
        expected=Expected(sha256=sha256, size=size),
        span=span,
    )
    return export, ContentRead(chunks=chunks, span=span)


def build_export(runtime: Runtime, export_id: str, *, final: bool = True) -> None:
    """Build, store and record the bundle of a pending export (run as a job).

    A failure is recorded on the export, never lost: `retrying` with the reason while
    the job will be tried again, `failed` after the `final` attempt.
    """
    try:
        key, version, size, digest = _build(runtime, export_id)
    except Exception as exc:
        status = "failed" if final else "retrying"
        _finish(runtime, export_id, status=status, error=describe(exc)[:1024])
        raise
    _finish(
        runtime,
        export_id,
        status="done",
        error=None,
        object_key=key,
        object_version=version,
        size=size,
        sha256=digest,
    )


def _finish(runtime: Runtime, export_id: str, **values: object) -> None:
    with runtime.database.session() as session:
        export = session.get(Export, export_id)
        assert export is not None
        for name, value in values.items():
            setattr(export, name, value)
        export.finished_at = datetime.now(UTC)
        session.add(export)


@dataclass(frozen=True, slots=True, kw_only=True)
class _Contents:
    """What a bundle says, gathered before a byte of it is written."""

    export: Export
    requester: Principal  # the bundle shows only what they may see
    items: list[_Item]
    incidents: list[dict[str, object]]
    timelines: dict[str, list[dict[str, object]]]  # each item's entries, for the report
    people: dict[str, str]  # the report's names for the people its entries refer to
    report_checkpoint: str  # the signed checkpoint those entries were read under


@dataclass(frozen=True, slots=True, kw_only=True)
class _Custody:
    """The proofs written after the seal: entries, proofs, the checkpoint, its token."""

    entries: list[CustodyEntry]
    proofs: dict[int, list[bytes]]
    checkpoint: SignedCheckpoint
    timestamps: list[tuple[str, bytes]]  # RFC 3161 tokens and their CAs, by bundle path


def _build(runtime: Runtime, export_id: str) -> tuple[str, str | None, int, str]:
    contents = _gather(runtime, export_id)
    export = contents.export
    scratch = runtime.settings.data_dir / "tmp"
    scratch.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile(dir=scratch) as spool:
        with zipfile.ZipFile(spool, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
            bag = _BagWriter(archive, f"export-{export.id}/")
            _write_bag(runtime, bag, contents)
            # Sealed: the files a reader relies on are written and their digests signed;
            # what follows proves the seal (and every other entry) against a checkpoint.
            _write_custody(runtime, bag, _prove(runtime, contents, _seal(runtime, bag, export)))
            bag.tag_manifest()
        size = spool.tell()
        spool.seek(0)
        digester = ContentDigester()
        # A key of its own per attempt: an attempt that died after storing its bundle
        # (locked, never overwritten) must not stop the retry from storing another.
        key = f"{export_prefix(export.organisation_id, export_id)}{uuid.uuid4()}.zip"
        staged = runtime.store.stage(_chunks(spool, digester), key=key)
        stored = runtime.store.commit(staged, retain_until=runtime.retain_until())
    return stored.key, stored.version_id, size, digester.finish().sha256.hex


def export_prefix(organisation_id: str, export_id: str) -> str:
    """Where an export's bundles are stored: one object per build attempt below it."""
    return f"org/{organisation_id}/exports/{export_id}/"


def _gather(runtime: Runtime, export_id: str) -> _Contents:
    with runtime.database.session() as session:
        export = session.get(Export, export_id)
        assert export is not None
        request = json.loads(export.request_json)
        requester = _requester(session, export)
        items = _items(session, request["evidence"])
        incidents = [_incident_record(session, requester, i) for i in request["incidents"]]
    checkpoint = runtime.log.latest_checkpoint(runtime.database)
    with runtime.database.session() as session:
        entries, by_subject = _entries(
            session, requester, _subjects(export, items, incidents), checkpoint.size
        )
    decoded = {e.index: decode_entry(e.leaf) for e in entries}
    timelines = {
        i.evidence.id: [decoded[n] for n in by_subject.get(f"evidence:{i.evidence.id}", [])]
        for i in items
    }
    return _Contents(
        export=export,
        requester=requester,
        items=items,
        incidents=incidents,
        timelines=timelines,
        people=people_of(runtime, export.organisation_id).by_reference(),
        report_checkpoint=checkpoint.note,
    )


def _subjects(export: Export, items: list[_Item], incidents: list[dict[str, object]]) -> list[str]:
    """The subjects whose custody entries the bundle carries."""
    return (
        [f"evidence:{i.evidence.id}" for i in items]
        + [f"incident:{i['id']}" for i in incidents]
        + [f"export:{export.id}"]
    )


def _seal(runtime: Runtime, bag: _BagWriter, export: Export) -> AppendedEntry:
    """Write custody/seal.json over the files written so far and sign it in the log."""
    document = seal.seal_json(
        export_id=export.id, organisation=export.organisation_id, files=bag.sealed_files()
    )
    bag.tag_file(seal.SEAL_PATH, document)
    with runtime.database.session() as session:
        return runtime.log.append(
            session,
            organisation_id=export.organisation_id,
            actor=_BUILDER,
            action=seal.SEALED,
            subjects=[f"export:{export.id}"],
            details={"seal_sha256": sha256(document).hex, "files": len(bag.sealed_files())},
        )


def _prove(runtime: Runtime, contents: _Contents, sealed: AppendedEntry) -> _Custody:
    """The bundle's entries (the seal's included) proven against the latest checkpoint."""
    checkpoint = runtime.log.latest_checkpoint(runtime.database)
    assert checkpoint.size > sealed.index
    timestamps = timestamp_files(runtime, timestamp_checkpoint(runtime, checkpoint))
    subjects = _subjects(contents.export, contents.items, contents.incidents)
    with runtime.database.session() as session:
        entries, _ = _entries(session, contents.requester, subjects, checkpoint.size)
        proofs = {
            e.index: runtime.log.inclusion_proof(session, index=e.index, tree_size=checkpoint.size)
            for e in entries
        }
    return _Custody(
        entries=entries,
        proofs=proofs,
        checkpoint=checkpoint,
        timestamps=timestamps,
    )


def _chunks(handle: IO[bytes], digester: ContentDigester) -> Iterator[bytes]:
    while chunk := handle.read(_COPY_CHUNK):
        digester.update(chunk)
        yield chunk


def _items(session: Session, evidence_ids: Sequence[str]) -> list[_Item]:
    items = []
    for evidence_id in evidence_ids:
        evidence = session.get(Evidence, evidence_id)
        assert evidence is not None
        submissions = list(
            session.exec(
                select(Submission)
                .where(Submission.evidence_id == evidence_id)
                .order_by(col(Submission.custody_index))
            )
        )
        name = safe_filename(submissions[0].filename)
        items.append(
            _Item(
                evidence=evidence,
                submissions=submissions,
                path=f"data/evidence/{evidence_id}/{name}",
                description=latest_version(session, evidence_id),
                analysis=session.get(EvidenceAnalysis, evidence_id),
            )
        )
    return items


def _requester(session: Session, export: Export) -> Principal:
    """Who asked for the export: the bundle shows only what they may see."""
    user = session.get(User, export.requested_by)
    assert user is not None
    return Principal(user_id=user.id, organisation_id=user.organisation_id, role=Role(user.role))


def _incident_record(session: Session, requester: Principal, incident_id: str) -> dict[str, object]:
    incident = session.get(Incident, incident_id)
    assert incident is not None
    version = session.get(IncidentVersion, (incident_id, incident.version))
    assert version is not None
    linked = subject_column("evidence", col(IncidentEvidence.evidence_id))
    links = session.exec(
        select(IncidentEvidence, LinkEnd)
        .join(LinkEnd, col(LinkEnd.link_id) == col(IncidentEvidence.id), isouter=True)
        .where(IncidentEvidence.incident_id == incident_id)
        .where(visible_clause(requester, linked))
        .order_by(col(IncidentEvidence.custody_index))
    ).all()
    return {
        "id": incident.id,
        "version": incident.version,
        # The digest is of the full record; restricted identities are withheld below.
        "document_sha256": version.document_sha256,
        "document": withhold_identities(
            withhold_relations(session, requester, json.loads(incident.document_json))
        ),
        "created_at": _iso(incident.created_at),
        "updated_at": _iso(incident.updated_at),
        "custody_index": incident.custody_index,
        "evidence": [
            {
                "evidence_id": link.evidence_id,
                "reason": link.reason,
                "custody_index": link.custody_index,
                "ended": {"reason": end.reason, "custody_index": end.custody_index}
                if end
                else None,
            }
            for link, end in links
        ],
    }


def _evidence_record(item: _Item) -> dict[str, object]:
    evidence = item.evidence
    return {
        "id": evidence.id,
        "sha256": evidence.sha256,
        "sha512": evidence.sha512,
        "size": evidence.size,
        "media_type": evidence.media_type,
        "received_at": _iso(evidence.received_at),
        "ingest_index": evidence.ingest_index,
        "path": item.path,
        "submissions": [
            {
                "filename": s.filename,
                "metadata": json.loads(s.metadata_json),
                "received_at": _iso(s.received_at),
                "submitted_by": s.submitted_by,
                "custody_index": s.custody_index,
            }
            for s in item.submissions
        ],
        # What the collector asserts (its digest is in the log) ...
        "description": {
            "version": item.description.version,
            "asserted": json.loads(item.description.asserted_json),
            "asserted_sha256": item.description.asserted_sha256,
            "custody_index": item.description.custody_index,
        },
        # ... kept apart from what the bytes say.
        "extracted": {
            "metadata": json.loads(item.analysis.extracted_json),
            "perceptual_hashes": json.loads(item.analysis.perceptual_json),
            "error": item.analysis.error,
            "custody_index": item.analysis.custody_index,
        }
        if item.analysis
        else None,
    }


def _iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z") if moment else None


def _entries(
    session: Session, requester: Principal, subjects: list[str], tree_size: int
) -> tuple[list[CustodyEntry], dict[str, list[int]]]:
    """Entries concerning any of `subjects` in the tree, and each subject's entries.

    An entry that also names something hidden from the requester is left out: a bundle
    holds exact leaves, and such a leaf would name it.
    """
    other = aliased(CustodySubject)
    hidden = exists().where(
        col(other.entry_index) == col(CustodySubject.entry_index),
        not_(visible_clause(requester, col(other.subject))),
    )
    rows = session.exec(
        select(CustodySubject)
        .where(col(CustodySubject.subject).in_(subjects))
        .where(col(CustodySubject.entry_index) < tree_size)
        .where(not_(hidden))
    ).all()
    by_subject: dict[str, list[int]] = {}
    for row in rows:
        by_subject.setdefault(row.subject, []).append(row.entry_index)
    indexes = sorted({row.entry_index for row in rows})
    entries = list(
        session.exec(
            select(CustodyEntry)
            .where(col(CustodyEntry.index).in_(indexes))
            .order_by(col(CustodyEntry.index))
        )
    )
    return entries, {k: sorted(v) for k, v in by_subject.items()}


class _BagWriter:
    """Writes files into the bag, remembering each file's digests for the manifests
    and the seal; once sealed, it refuses a file the seal should have covered."""

    def __init__(self, archive: zipfile.ZipFile, root: str) -> None:
        self._archive, self._root = archive, root
        self.payload: list[tuple[str, str, str]] = []  # path, sha256, sha512
        self.payload_bytes = 0
        self.tags: list[tuple[str, str]] = []

    def stream(self, path: str, chunks: Iterator[bytes]) -> ContentDigester:
        digester = ContentDigester()
        with self._archive.open(self._root + path, "w", force_zip64=True) as out:
            for chunk in chunks:
                digester.update(chunk)
                out.write(chunk)
        return digester

    def payload_file(self, path: str, data: bytes) -> None:
        digests = self.stream(path, iter([data])).finish()
        self.add_payload(path, digests.sha256.hex, digests.sha512.hex, digests.size)

    def add_payload(self, path: str, sha256_hex: str, sha512_hex: str, size: int) -> None:
        self.payload.append((path, sha256_hex, sha512_hex))
        self.payload_bytes += size

    def tag_file(self, path: str, data: bytes) -> None:
        self._check_not_sealed(path)
        self._archive.writestr(self._root + path, data)
        self.tags.append((path, sha256(data).hex))

    def tag_stream(self, path: str, chunks: Iterator[bytes]) -> None:
        self._check_not_sealed(path)
        self.tags.append((path, self.stream(path, chunks).finish().sha256.hex))

    def sealed_files(self) -> dict[str, str]:
        """Every file written so far that the seal covers, with its SHA-256."""
        files = [*((p, h) for p, h, _ in self.payload), *self.tags]
        return {p: h for p, h in files if seal.is_sealed(p)}

    def tag_manifest(self) -> None:
        """The last file: tagmanifest-sha256.txt over every tag file (RFC 8493 §2.2.1)."""
        text = bagit.manifest_text(self.tags)
        self._archive.writestr(self._root + "tagmanifest-sha256.txt", text.encode())

    def _check_not_sealed(self, path: str) -> None:
        if seal.SEAL_PATH in dict(self.tags) and seal.is_sealed(path):
            raise AssertionError(f"{path} written after the seal: no reader could trust it")


def _write_bag(runtime: Runtime, bag: _BagWriter, contents: _Contents) -> None:
    """Every file the seal covers: payload, records, bag-info, manifests, items, report."""
    export, items = contents.export, contents.items
    for item in items:
        _write_evidence(runtime, bag, item)
        bag.payload_file(
            f"data/records/evidence/{item.evidence.id}.json",
            canonical_json(_evidence_record(item)),
        )
    for incident in contents.incidents:
        bag.payload_file(f"data/records/incidents/{incident['id']}.json", canonical_json(incident))
    bag.tag_file("bagit.txt", bagit.BAGIT_TXT.encode())
    bag.tag_file(
        "bag-info.txt",
        bagit.bag_info_text(
            {
                "Source-Organization": export.organisation_id,
                "Bagging-Date": datetime.now(UTC).strftime("%Y-%m-%d"),
                "External-Identifier": export.id,
                "Payload-Oxum": f"{bag.payload_bytes}.{len(bag.payload)}",
                "Bag-Software-Agent": f"evidence-locker {_VERSION}",
                "Locker-Log-Origin": runtime.log.origin,
            }
        ).encode(),
    )
    bag.tag_file(
        "manifest-sha256.txt", bagit.manifest_text((p, s) for p, s, _ in bag.payload).encode()
    )
    bag.tag_file(
        "manifest-sha512.txt", bagit.manifest_text((p, s) for p, _, s in bag.payload).encode()
    )
    bag.tag_file(bundle.ITEMS_PATH, _items_json(contents))
    _write_reports(runtime, bag, contents)


def _write_evidence(runtime: Runtime, bag: _BagWriter, item: _Item) -> None:
    evidence = item.evidence
    chunks = runtime.store.open(evidence.object_key, evidence.object_version)
    digests = bag.stream(item.path, chunks).finish()
    if digests.sha256.hex != evidence.sha256 or digests.sha512.hex != evidence.sha512:
        raise DigestMismatch(
            f"evidence {evidence.id}", expected=evidence.sha256, actual=digests.sha256.hex
        )
    bag.add_payload(item.path, evidence.sha256, evidence.sha512, evidence.size)


def _items_json(contents: _Contents) -> bytes:
    return bundle.items_json(
        [
            {
                "id": i.evidence.id,
                "sha256": i.evidence.sha256,
                "sha512": i.evidence.sha512,
                "size": i.evidence.size,
                "ingest_index": i.evidence.ingest_index,
                "path": i.path,
            }
            for i in contents.items
        ],
        [str(i["id"]) for i in contents.incidents],
    )


def _write_reports(runtime: Runtime, bag: _BagWriter, contents: _Contents) -> None:
    records = [_evidence_record(i) for i in contents.items]
    export_id, timelines, checkpoint = (
        contents.export.id,
        contents.timelines,
        contents.report_checkpoint,
    )
    people = contents.people
    html = render_report(
        export_id=export_id,
        records=records,
        timelines=timelines,
        checkpoint=checkpoint,
        people=people,
    )
    bag.tag_file("report/report.html", html.encode())
    # fpdf2 assembles the whole PDF in memory before writing it out: spooled to a
    # file, it is streamed into the zip rather than copied again as one string.
    with tempfile.TemporaryFile(dir=runtime.settings.data_dir / "tmp") as pdf:
        write_pdf_report(
            pdf,
            export_id=export_id,
            records=records,
            timelines=timelines,
            checkpoint=checkpoint,
            people=people,
        )
        pdf.seek(0)
        bag.tag_stream("report/report.pdf", iter(lambda: pdf.read(_COPY_CHUNK), b""))


def _write_custody(runtime: Runtime, bag: _BagWriter, custody: _Custody) -> None:
    """The files checked on their own: checkpoint, key, token, entries and proofs."""
    checkpoint = custody.checkpoint
    bag.tag_file("custody/checkpoint.txt", checkpoint.note.encode())
    bag.tag_file("custody/verifier-key.txt", (runtime.log.verifier.to_text() + "\n").encode())
    for path, data in custody.timestamps:  # RFC 3161 tokens, each beside its authority's CA
        bag.tag_file(path, data)
    for entry in custody.entries:
        bag.tag_file(bundle.entry_path(entry.index), entry.leaf)
    # The tree size is the checkpoint's own, as held, never re-read from its note text.
    bag.tag_file("custody/proofs.json", bundle.proofs_json(checkpoint.size, custody.proofs))
