"""Evidence bundles: a BagIt bag (RFC 8493) in a zip, checkable offline.

Requesting an export is a custody event; the bundle is built in the background by
streaming each evidence object once from the store into the zip (digests checked on
the way), then stored and downloadable. Memory stays bounded whatever the size: the
zip is written to a temporary file and streamed into the store.
"""

from __future__ import annotations

import json
import tempfile
import uuid
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, TYPE_CHECKING

from sqlmodel import Session, col, select

from service.accounts.access import visible_evidence, visible_incident
from service.accounts.members import Principal
from service.accounts.permissions import Permission
from service.core import bagit, bundle
from service.core.canonical import canonical_json
from service.core.digests import ContentDigester, sha256
from service.core.entry import decode_entry
from service.custody.timestamps import timestamp_checkpoint
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
    Submission,
)
from service.documentation.incidents import withhold_identities
from service.errors import DigestMismatch, InvalidInput, NotFound
from service.evidence.descriptions import latest_version
from service.evidence.reading import logged_read
from service.exports.report import render_report, write_pdf_report

if TYPE_CHECKING:
    from service.runtime import Runtime

_MAX_ITEMS = 10_000
_COPY_CHUNK = 1024 * 1024


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
    """The caller's organisation's export, or NotFound."""
    principal.require(Permission.EVIDENCE_CONTENT)
    with runtime.database.session() as session:
        export = session.get(Export, export_id)
    if export is None or export.organisation_id != principal.organisation_id:
        raise NotFound(f"no export {export_id}")
    return export


def open_export(
    runtime: Runtime, principal: Principal, export_id: str
) -> tuple[Export, Iterator[bytes]]:
    """Open the stored bundle, record the download, then stream it."""
    export = get_export(runtime, principal, export_id)
    if export.status != "done" or export.object_key is None:
        raise InvalidInput(f"export {export_id} is {export.status}, not ready")
    subjects = [
        f"export:{export_id}",
        *(f"evidence:{e}" for e in json.loads(export.request_json)["evidence"]),
    ]
    chunks = logged_read(
        runtime,
        export.object_key,
        export.object_version,
        lambda session: runtime.log.append(
            session,
            organisation_id=principal.organisation_id,
            actor=principal.actor,
            action="export.downloaded",
            subjects=subjects,
            details={"sha256": export.sha256 or ""},
        ),
    )
    return export, chunks


def build_export(runtime: Runtime, export_id: str) -> None:
    """Build, store and record the bundle of a pending export (run in the background)."""
    try:
        key, version, size, digest = _build(runtime, export_id)
    except Exception as exc:  # recorded on the export, never lost
        message = exc.diagnostics() if hasattr(exc, "diagnostics") else repr(exc)
        _finish(runtime, export_id, status="failed", error=message[:1024])
        raise
    _finish(
        runtime,
        export_id,
        status="done",
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


def _build(runtime: Runtime, export_id: str) -> tuple[str, str | None, int, str]:
    with runtime.database.session() as session:
        export = session.get(Export, export_id)
        assert export is not None
        request = json.loads(export.request_json)
        items = _items(session, request["evidence"])
        incidents = [_incident_record(session, i) for i in request["incidents"]]
    checkpoint = runtime.log.latest_checkpoint(runtime.database)
    timestamp = timestamp_checkpoint(runtime, checkpoint)
    subjects = (
        [f"evidence:{i.evidence.id}" for i in items]
        + [f"incident:{i['id']}" for i in incidents]
        + [f"export:{export_id}"]
    )
    with runtime.database.session() as session:
        entries, by_subject = _entries(session, subjects, checkpoint.size)
        proofs = {
            e.index: runtime.log.inclusion_proof(session, index=e.index, tree_size=checkpoint.size)
            for e in entries
        }
    scratch = runtime.settings.data_dir / "tmp"
    scratch.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile(dir=scratch) as spool:
        with zipfile.ZipFile(spool, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
            _write_bag(
                runtime,
                archive,
                export,
                items,
                incidents,
                entries,
                proofs,
                checkpoint.note,
                by_subject,
                timestamp.response if timestamp else None,
            )
        size = spool.tell()
        spool.seek(0)
        digester = ContentDigester()
        staged = runtime.store.stage(_chunks(spool, digester))
        key = f"org/{export.organisation_id}/exports/{export_id}.zip"
        stored = runtime.store.commit(staged, key, retain_until=runtime.retain_until())
    return stored.key, stored.version_id, size, digester.finish().sha256.hex


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
        name = bagit.safe_filename(submissions[0].filename)
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


def _incident_record(session: Session, incident_id: str) -> dict[str, object]:
    incident = session.get(Incident, incident_id)
    assert incident is not None
    version = session.get(IncidentVersion, (incident_id, incident.version))
    assert version is not None
    links = session.exec(
        select(IncidentEvidence, LinkEnd)
        .join(LinkEnd, col(LinkEnd.link_id) == col(IncidentEvidence.id), isouter=True)
        .where(IncidentEvidence.incident_id == incident_id)
        .order_by(col(IncidentEvidence.custody_index))
    ).all()
    return {
        "id": incident.id,
        "version": incident.version,
        # The digest is of the full record; restricted identities are withheld below.
        "document_sha256": version.document_sha256,
        "document": withhold_identities(json.loads(incident.document_json)),
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
    session: Session, subjects: list[str], tree_size: int
) -> tuple[list[CustodyEntry], dict[str, list[int]]]:
    """Entries concerning any of `subjects` in the tree, and each subject's entries."""
    rows = session.exec(
        select(CustodySubject)
        .where(col(CustodySubject.subject).in_(subjects))
        .where(col(CustodySubject.entry_index) < tree_size)
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
    """Writes files into the bag, remembering payload and tag digests for the manifests."""

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
        self._archive.writestr(self._root + path, data)
        self.tags.append((path, sha256(data).hex))

    def tag_stream(self, path: str, chunks: Iterator[bytes]) -> None:
        self.tags.append((path, self.stream(path, chunks).finish().sha256.hex))


def _write_bag(  # noqa: PLR0913 (every part of the bag, gathered beforehand)
    runtime: Runtime,
    archive: zipfile.ZipFile,
    export: Export,
    items: list[_Item],
    incidents: list[dict[str, object]],
    entries: list[CustodyEntry],
    proofs: dict[int, list[bytes]],
    checkpoint_note: str,
    by_subject: dict[str, list[int]],
    timestamp: bytes | None,
) -> None:
    bag = _BagWriter(archive, f"export-{export.id}/")
    for item in items:
        evidence = item.evidence
        chunks = runtime.store.open(evidence.object_key, evidence.object_version)
        digests = bag.stream(item.path, chunks).finish()
        if digests.sha256.hex != evidence.sha256 or digests.sha512.hex != evidence.sha512:
            raise DigestMismatch(
                f"evidence {evidence.id}", expected=evidence.sha256, actual=digests.sha256.hex
            )
        bag.add_payload(item.path, evidence.sha256, evidence.sha512, evidence.size)
        bag.payload_file(
            f"data/records/evidence/{evidence.id}.json", canonical_json(_evidence_record(item))
        )
    for incident in incidents:
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
                "Bag-Software-Agent": "evidence-locker 0.1.0",
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
    _write_custody(runtime, bag, items, incidents, entries, proofs, checkpoint_note, timestamp)
    decoded = {e.index: decode_entry(e.leaf) for e in entries}
    timelines = {
        i.evidence.id: [decoded[n] for n in by_subject.get(f"evidence:{i.evidence.id}", [])]
        for i in items
    }
    bag.tag_file(
        "report/report.html",
        render_report(
            export_id=export.id,
            records=[_evidence_record(i) for i in items],
            timelines=timelines,
            checkpoint=checkpoint_note,
        ).encode(),
    )
    # fpdf2 assembles the whole PDF in memory before writing it out: spooled to a
    # file, it is streamed into the zip rather than copied again as one string.
    with tempfile.TemporaryFile(dir=runtime.settings.data_dir / "tmp") as pdf:
        write_pdf_report(
            pdf,
            export_id=export.id,
            records=[_evidence_record(i) for i in items],
            timelines=timelines,
            checkpoint=checkpoint_note,
        )
        pdf.seek(0)
        bag.tag_stream("report/report.pdf", iter(lambda: pdf.read(_COPY_CHUNK), b""))
    archive.writestr(
        f"export-{export.id}/tagmanifest-sha256.txt", bagit.manifest_text(bag.tags).encode()
    )


def _write_custody(  # noqa: PLR0913 (every custody part of the bag)
    runtime: Runtime,
    bag: _BagWriter,
    items: list[_Item],
    incidents: list[dict[str, object]],
    entries: list[CustodyEntry],
    proofs: dict[int, list[bytes]],
    checkpoint_note: str,
    timestamp: bytes | None,
) -> None:
    bag.tag_file("custody/checkpoint.txt", checkpoint_note.encode())
    bag.tag_file("custody/verifier-key.txt", (runtime.log.verifier.to_text() + "\n").encode())
    if timestamp is not None:
        bag.tag_file(bundle.TIMESTAMP_PATH, timestamp)
        if runtime.tsa is not None:
            bag.tag_file(bundle.TSA_CA_PATH, runtime.tsa.ca_pem)
    for entry in entries:
        bag.tag_file(bundle.entry_path(entry.index), entry.leaf)
    tree_size = int(checkpoint_note.split("\n")[1])
    bag.tag_file("custody/proofs.json", bundle.proofs_json(tree_size, proofs))
    bag.tag_file(
        "custody/items.json",
        bundle.items_json(
            [
                {
                    "id": i.evidence.id,
                    "sha256": i.evidence.sha256,
                    "sha512": i.evidence.sha512,
                    "size": i.evidence.size,
                    "ingest_index": i.evidence.ingest_index,
                    "path": i.path,
                }
                for i in items
            ],
            [str(i["id"]) for i in incidents],
        ),
    )
