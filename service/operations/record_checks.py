"""fsck's check of the documentation record against the custody log.

Every version of an incident or of an item's asserted metadata, every note and every
analysis is stored beside the log entry that recorded its digest, and every member
named since names were recorded beside the `member.added` entry that signed them. Recompute each
digest from the stored text and compare it with the entry: an edited row, or a row
moved onto another entry, is a finding.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping

from sqlmodel import Session, col, select

from service.core.canonical import canonical_sha256
from service.core.digests import sha256
from service.core.entry import decode_entry
from service.db.models import (
    CustodyEntry,
    EvidenceAnalysis,
    EvidenceVersion,
    IncidentVersion,
    Note,
    User,
)
from service.errors import Error


def record_findings(session: Session, entries: Mapping[int, CustodyEntry]) -> tuple[list[str], int]:
    """Findings about versions, notes and analyses, and how many rows were checked."""
    findings: list[str] = []
    checks: list[tuple[str, int, dict[str, object]]] = []
    for version in session.exec(select(IncidentVersion)):
        where = f"incident {version.incident_id} version {version.version}"
        digest = _canonical_digest(version.document_json)
        if digest != version.document_sha256:
            findings.append(f"{where}: its stored digest does not match its text")
        checks.append(
            (
                where,
                version.custody_index,
                {
                    "subject": f"incident:{version.incident_id}",
                    "document_sha256": digest,
                    "version": version.version,
                },
            )
        )
    for described in session.exec(select(EvidenceVersion)):
        where = f"evidence {described.evidence_id} metadata version {described.version}"
        digest = _canonical_digest(described.asserted_json)
        if digest != described.asserted_sha256:
            findings.append(f"{where}: its stored digest does not match its text")
        want: dict[str, object] = {
            "subject": f"evidence:{described.evidence_id}",
            "asserted_sha256": digest,
        }
        if described.version > 1:  # version 1 is recorded by the ingest entry
            want["version"] = described.version
        checks.append((where, described.custody_index, want))
    for note in session.exec(select(Note)):
        checks.append(
            (
                f"note {note.id}",
                note.custody_index,
                {"subject": note.subject, "body_sha256": sha256(note.body.encode()).hex},
            )
        )
    for analysis in session.exec(select(EvidenceAnalysis)):
        checks.append(
            (
                f"analysis of evidence {analysis.evidence_id}",
                analysis.custody_index,
                {
                    "subject": f"evidence:{analysis.evidence_id}",
                    "extracted_sha256": _canonical_digest(analysis.extracted_json),
                },
            )
        )
    return findings + list(_compare(checks, entries)), len(checks)


def member_findings(session: Session, entries: Mapping[int, CustodyEntry]) -> tuple[list[str], int]:
    """Each named member's row against the entry that added them (an edited name or
    e-mail is a finding), and how many rows were checked."""
    added = select(User).where(col(User.custody_index).is_not(None))
    checks: list[tuple[str, int, dict[str, object]]] = [
        (
            f"member {user.id}",
            user.custody_index,
            {
                "action": "member.added",
                "subject": f"user:{user.id}",
                "email": user.email,
                "name": user.name,
            },
        )
        for user in session.exec(added)
        if user.custody_index is not None
    ]
    return list(_compare(checks, entries)), len(checks)


def _canonical_digest(text: str) -> str:
    return canonical_sha256(json.loads(text))


def _compare(
    checks: Iterable[tuple[str, int, dict[str, object]]], entries: Mapping[int, CustodyEntry]
) -> Iterable[str]:
    for where, index, want in checks:
        entry = entries.get(index)
        if entry is None:
            yield f"{where}: its custody entry {index} is missing"
            continue
        try:
            fields = decode_entry(entry.leaf)
        except Error:
            continue  # reported with the leaves
        for name, value in want.items():
            if fields.get(name) != value:
                yield (
                    f"{where}: record has {name}={value!r}, entry {index} has {fields.get(name)!r}"
                )
