"""Reading what a new item's bytes say, after it is safely stored and recorded.

Runs in the background after the upload is acknowledged: the exact stored version is
read back (its digest checked on the way) into a private temporary file, analysed in a
confined child process (service.evidence.analysis), and the result recorded once, with a custody
entry holding its digest. Then the item's perceptual hashes are compared with the
organisation's other items; a look-alike is recorded on both, with the distance.
A failed extraction is recorded too: the item stays what it is, only its reading failed.
"""

from __future__ import annotations

import json
import tempfile
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import structlog
from sqlmodel import Session, col, select

from service.core.canonical import canonical_sha256
from service.core.digests import ContentDigester
from service.db.models import Evidence, EvidenceAnalysis, NearDuplicate
from service.errors import DigestMismatch
from service.evidence.analysis import (
    Analysis,
    PerceptualHash,
    analysable,
    analyse_file,
    best_match_distance,
)
from service.evidence.descriptions import reindex_evidence

if TYPE_CHECKING:
    from service.runtime import Runtime

_log = structlog.get_logger("locker.analysis")
# Each analysis is a child process that may use LOCKER_ANALYSIS_MEMORY_MB: one at a time.
_ONE_AT_A_TIME = threading.BoundedSemaphore(1)
ACTOR = "system:analysis"


def wants_analysis(evidence: Evidence) -> bool:
    """Whether the item's media type is one whose metadata and look the locker reads."""
    return analysable(evidence.media_type)


def analyse_evidence(runtime: Runtime, evidence_id: str) -> EvidenceAnalysis | None:
    """Analyse a stored item once and record the result (None if already done or not
    analysable). Never raises for a hostile file: that is a recorded extraction error."""
    with runtime.database.session() as session:
        evidence = session.get(Evidence, evidence_id)
        if evidence is None or session.get(EvidenceAnalysis, evidence_id) is not None:
            return None
        if not wants_analysis(evidence):
            return None
    limit = runtime.settings.analysis_max_bytes
    if evidence.size > limit:
        analysis = Analysis.failed(f"not read: larger than LOCKER_ANALYSIS_MAX_BYTES ({limit})")
    else:
        with _ONE_AT_A_TIME:
            analysis = _analyse_stored(runtime, evidence)
    return _record(runtime, evidence, analysis)


def pending_analysis(runtime: Runtime) -> list[str]:
    """Items of an analysable type that have no recorded analysis yet."""
    with runtime.database.session() as session:
        done = select(EvidenceAnalysis.evidence_id)
        rows = session.exec(
            select(Evidence)
            .where(col(Evidence.id).not_in(done))
            .order_by(col(Evidence.ingest_index))
        ).all()
    return [e.id for e in rows if wants_analysis(e)]


def _analyse_stored(runtime: Runtime, evidence: Evidence) -> Analysis:
    scratch = runtime.settings.data_dir / "tmp"
    scratch.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=scratch, prefix="analysis-") as copy:
        digester = ContentDigester()
        for chunk in runtime.store.open(evidence.object_key, evidence.object_version):
            digester.update(chunk)
            copy.write(chunk)
        copy.flush()
        digests = digester.finish()
        if digests.sha256.hex != evidence.sha256:
            raise DigestMismatch(
                f"evidence {evidence.id}", expected=evidence.sha256, actual=digests.sha256.hex
            )
        return analyse_file(
            Path(copy.name),
            evidence.media_type,
            timeout_s=runtime.settings.analysis_timeout_seconds,
            memory_mb=runtime.settings.analysis_memory_mb,
        )


def _record(runtime: Runtime, evidence: Evidence, analysis: Analysis) -> EvidenceAnalysis:
    result = analysis.to_json()
    extracted = result.get("extracted", {})
    perceptual = result.get("perceptual", [])
    details: dict[str, object] = {
        "extracted_sha256": canonical_sha256(extracted),
        "perceptual_hashes": len(analysis.perceptual),
    }
    if analysis.error:
        details["error"] = analysis.error[:500]
    with runtime.database.session() as session:
        entry = runtime.log.append(
            session,
            organisation_id=evidence.organisation_id,
            actor=ACTOR,
            action="evidence.analysed",
            subjects=[f"evidence:{evidence.id}"],
            details=details,
        )
        row = EvidenceAnalysis(
            evidence_id=evidence.id,
            organisation_id=evidence.organisation_id,
            extracted_json=json.dumps(extracted, ensure_ascii=False),
            perceptual_json=json.dumps(perceptual),
            error=analysis.error[:1024] if analysis.error else None,
            analysed_at=entry.time,
            custody_index=entry.index,
        )
        session.add(row)
        session.flush()
        reindex_evidence(session, evidence)
        if analysis.perceptual:
            _flag_near_duplicates(runtime, session, evidence, analysis.perceptual)
    _log.info("evidence analysed", evidence=evidence.id, error=analysis.error)
    return row


def _flag_near_duplicates(
    runtime: Runtime,
    session: Session,
    evidence: Evidence,
    hashes: tuple[PerceptualHash, ...],
) -> None:
    """Compare with every analysed item of the organisation (linear: fine for thousands)."""
    threshold = runtime.settings.near_duplicate_threshold
    others = session.exec(
        select(EvidenceAnalysis)
        .where(EvidenceAnalysis.organisation_id == evidence.organisation_id)
        .where(col(EvidenceAnalysis.evidence_id) != evidence.id)
        .where(col(EvidenceAnalysis.perceptual_json) != "[]")
    ).all()
    for other in others:
        recorded = {"extracted": {}, "perceptual": json.loads(other.perceptual_json), "error": None}
        theirs = Analysis.from_json(recorded).perceptual
        distance = best_match_distance(hashes, theirs)
        if distance is None or distance > threshold:
            continue
        entry = runtime.log.append(
            session,
            organisation_id=evidence.organisation_id,
            actor=ACTOR,
            action="evidence.near_duplicate",
            subjects=[f"evidence:{evidence.id}", f"evidence:{other.evidence_id}"],
            details={"distance": distance, "threshold": threshold},
        )
        now = datetime.now(UTC)
        for a, b in ((evidence.id, other.evidence_id), (other.evidence_id, evidence.id)):
            session.add(
                NearDuplicate(
                    evidence_id=a,
                    similar_id=b,
                    distance=distance,
                    found_at=now,
                    custody_index=entry.index,
                )
            )
