"""What the collector asserts about an item: versioned, logged, searchable.

The asserted layer (title, source, collector, dates, location, Admiralty grading…) is
kept apart from what the bytes say (service.evidence.extraction). Version 1 is written with the
ingest entry; each edit is a new version whose canonical digest goes into the log.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError
from sqlalchemy import ColumnElement, and_, func, literal
from sqlmodel import Session, col, select

from service.accounts.access import subject_column, visible_clause, visible_evidence
from service.accounts.members import Principal
from service.accounts.permissions import Permission
from service.core.canonical import canonical_sha256
from service.db import rerun_if_raced
from service.db.models import (
    Evidence,
    EvidenceAnalysis,
    EvidenceProfile,
    EvidenceVersion,
    NearDuplicate,
)
from service.documentation.documents import AssertedMetadata
from service.documentation.links import linked_clause
from service.documentation.versioning import (
    newest_version,
    require_change,
    require_latest,
    version_details,
    version_history,
)
from service.errors import InvalidInput, validation_message
from service.search.catalogue import (
    Filters,
    Page,
    Paging,
    Point,
    has_term,
    in_bbox,
    reindex,
    text_matches,
)

if TYPE_CHECKING:
    from service.runtime import Runtime

# Upload instructions that travel with the metadata part but describe nothing.
UPLOAD_CONTROLS = frozenset({"incident_id", "restricted"})


def asserted_dict(metadata: AssertedMetadata) -> dict[str, Any]:
    """The asserted layer as stored and digested: set values only, upload controls out."""
    dumped = metadata.model_dump(mode="json", exclude_none=True, exclude=set(UPLOAD_CONTROLS))
    return {k: v for k, v in dumped.items() if v != [] and k not in UPLOAD_CONTROLS}


def asserted_digest(asserted: Mapping[str, Any]) -> str:
    """The canonical digest the custody log holds for one version."""
    return canonical_sha256(dict(asserted))


def parse_asserted(value: Mapping[str, Any], *, prefix: str = "") -> AssertedMetadata:
    """Asserted metadata from JSON input; InvalidInput names the first bad field."""
    try:
        return AssertedMetadata.model_validate(value)
    except ValidationError as exc:
        raise InvalidInput(validation_message(exc.errors(), prefix=prefix)) from None


def _require_known_fields(
    stored: Mapping[str, Any], changes: Mapping[str, Any], *, version: int
) -> None:
    """Refuse carrying over a top-level key of a version stored before `extra` existed:
    the editor drops it or moves it under `extra`, nothing is moved for them."""
    for name in stored:
        if name not in changes and name not in AssertedMetadata.model_fields:
            raise InvalidInput(
                f"{name[:40]!r} of version {version} is not a known field: send "
                f'"{name[:40]}": null to drop it, or move it under extra'
            )


def describe_at_ingest(
    session: Session,
    evidence: Evidence,
    asserted: Mapping[str, Any],
    *,
    recorded_by: str,
    custody_index: int,
) -> None:
    """Version 1 of a new item's description, in the ingest transaction."""
    _write_version(
        session,
        evidence,
        dict(asserted),
        version=1,
        reason="",
        recorded_by=recorded_by,
        recorded_at=evidence.received_at,
        custody_index=custody_index,
    )


@rerun_if_raced
def update_description(
    runtime: Runtime,
    principal: Principal,
    evidence_id: str,
    changes: Mapping[str, Any],
    *,
    reason: str,
    base_version: int | None = None,
) -> EvidenceVersion:
    """A new version of the asserted metadata: the latest with `changes` applied."""
    principal.require(Permission.EVIDENCE_DESCRIBE, subject=f"evidence:{evidence_id}")
    if UPLOAD_CONTROLS & set(changes):
        raise InvalidInput("incident_id and restricted are not metadata; use links and access")
    with runtime.database.session() as session:
        evidence = visible_evidence(session, principal, evidence_id)
        latest = latest_version(session, evidence_id)
        record = f"evidence {evidence_id} metadata"
        require_latest(record, latest=latest.version, base_version=base_version)
        stored = json.loads(latest.asserted_json)
        _require_known_fields(stored, changes, version=latest.version)
        merged = stored | dict(changes)
        asserted = asserted_dict(parse_asserted({k: v for k, v in merged.items() if v is not None}))
        digest = asserted_digest(asserted)
        require_change("the metadata", latest_sha256=latest.asserted_sha256, new_sha256=digest)
        version = latest.version + 1
        details = version_details(
            version=version, digest_name="asserted_sha256", digest=digest, reason=reason
        )
        entry = runtime.log.append(
            session,
            organisation_id=principal.organisation_id,
            actor=principal.actor,
            action="evidence.described",
            subjects=[f"evidence:{evidence_id}"],
            details=details,
        )
        return _write_version(
            session,
            evidence,
            asserted,
            version=version,
            reason=reason,
            recorded_by=principal.user_id,
            recorded_at=entry.time,
            custody_index=entry.index,
        )


def _write_version(  # noqa: PLR0913 (one version's contents and context)
    session: Session,
    evidence: Evidence,
    asserted: dict[str, Any],
    *,
    version: int,
    reason: str,
    recorded_by: str,
    recorded_at: datetime,
    custody_index: int,
) -> EvidenceVersion:
    row = EvidenceVersion(
        evidence_id=evidence.id,
        version=version,
        organisation_id=evidence.organisation_id,
        asserted_json=json.dumps(asserted, ensure_ascii=False),
        asserted_sha256=asserted_digest(asserted),
        reason=reason,
        recorded_by=recorded_by,
        recorded_at=recorded_at,
        custody_index=custody_index,
    )
    session.add(row)
    metadata = AssertedMetadata.from_stored(asserted)
    first = version == 1  # a new item: no profile, index or analysis to read or replace
    profile = (None if first else session.get(EvidenceProfile, evidence.id)) or EvidenceProfile(
        evidence_id=evidence.id, organisation_id=evidence.organisation_id, version=version
    )
    profile.version, profile.title = version, (metadata.title or "")[:500]
    profile.captured_at = metadata.captured_at
    session.add(profile)
    session.flush()
    reindex_evidence(session, evidence, metadata, first=first)
    return row


def reindex_evidence(
    session: Session,
    evidence: Evidence,
    metadata: AssertedMetadata | None = None,
    *,
    first: bool = False,
) -> None:
    """Rebuild the item's search view from its latest description and its analysis
    (`first`: the item is new, with neither an index nor an analysis yet)."""
    if metadata is None:
        metadata = AssertedMetadata.from_stored_json(
            latest_version(session, evidence.id).asserted_json
        )
    places = []
    if metadata.location and metadata.location.lat is not None:
        assert metadata.location.lon is not None
        places.append(Point(metadata.location.lat, metadata.location.lon))
    analysis = None if first else session.get(EvidenceAnalysis, evidence.id)
    extracted: dict[str, Any] = json.loads(analysis.extracted_json) if analysis else {}
    gps = extracted.get("gps")
    if isinstance(gps, dict) and all(
        isinstance(gps.get(k), float | int) for k in ("latitude", "longitude")
    ):
        places.append(Point(float(gps["latitude"]), float(gps["longitude"])))
    reindex(
        session,
        f"evidence:{evidence.id}",
        evidence.organisation_id,
        text_body=metadata.search_text(),
        places=places,
        terms=[("tag", t) for t in metadata.tags],
        first=first,
    )


def latest_version(session: Session, evidence_id: str) -> EvidenceVersion:
    """The item's current description."""
    row = newest_version(session, EvidenceVersion, col(EvidenceVersion.evidence_id), evidence_id)
    assert row is not None, f"evidence {evidence_id} has no description"
    return row


def description_history(
    runtime: Runtime, principal: Principal, evidence_id: str
) -> list[EvidenceVersion]:
    """Every version of the item's asserted metadata, oldest first."""
    with runtime.database.session() as session:
        visible_evidence(session, principal, evidence_id)
        return version_history(
            session, EvidenceVersion, col(EvidenceVersion.evidence_id), evidence_id
        )


def list_evidence(
    runtime: Runtime,
    principal: Principal,
    filters: Filters,
    paging: Paging,
) -> Page[tuple[Evidence, EvidenceProfile]]:
    """The organisation's items (with their current title) matching `filters`, in log order."""
    principal.require(Permission.EVIDENCE_READ)
    with runtime.database.session() as session:
        query = (
            select(Evidence, EvidenceProfile)
            .join(EvidenceProfile, col(EvidenceProfile.evidence_id) == col(Evidence.id))
            .where(evidence_filter(session, principal, filters))
        )
        query = paging.query(query, col(Evidence.ingest_index))
        items = [(e, p) for e, p in session.exec(query)]
    return paging.page(items, position=lambda row: row[0].ingest_index)


def evidence_filter(
    session: Session, principal: Principal, filters: Filters
) -> ColumnElement[bool]:
    """SQL over Evidence joined with EvidenceProfile: the caller's, visible, matching."""
    subject = subject_column("evidence", col(Evidence.id))
    clauses = [
        col(Evidence.organisation_id) == principal.organisation_id,
        visible_clause(principal, subject),
    ]
    when = func.coalesce(col(EvidenceProfile.captured_at), col(Evidence.received_at))
    if filters.q:
        clauses.append(text_matches(session, principal.organisation_id, subject, filters.q))
    if filters.period_from is not None:
        clauses.append(when >= filters.period_from)
    if filters.period_to is not None:
        clauses.append(when <= filters.period_to)
    if filters.bbox is not None:
        clauses.append(in_bbox(subject, filters.bbox))
    if filters.tag is not None:
        clauses.append(has_term(subject, "tag", filters.tag))
    if filters.media_type is not None:
        media = filters.media_type
        if media.endswith("/*"):
            clauses.append(col(Evidence.media_type).startswith(media[:-1]))
        else:
            clauses.append(col(Evidence.media_type) == media)
    if filters.incident is not None:
        # A hidden incident filters like an unknown one: to nothing.
        clauses.append(linked_clause(filters.incident, col(Evidence.id)))
        clauses.append(visible_clause(principal, literal(f"incident:{filters.incident}")))
    if filters.category is not None or filters.status is not None:
        raise InvalidInput("category and status filter incidents, not evidence")
    return and_(*clauses)


@dataclass(frozen=True, slots=True, kw_only=True)
class ItemDescription:
    latest: EvidenceVersion
    analysis: EvidenceAnalysis | None
    near_duplicates: list[NearDuplicate]


def describe(runtime: Runtime, principal: Principal, evidence_id: str) -> ItemDescription:
    """The item's current description, its analysis, and the look-alikes the caller may see.

    One snapshot: the analysis and the look-alikes it found commit together, and are
    read together (never the analysis without them, as a commit between two reads
    would show).
    """
    with runtime.database.snapshot() as session:
        visible_evidence(session, principal, evidence_id)
        similar = session.exec(
            select(NearDuplicate)
            .where(NearDuplicate.evidence_id == evidence_id)
            .where(
                visible_clause(principal, subject_column("evidence", col(NearDuplicate.similar_id)))
            )
            .order_by(col(NearDuplicate.distance), col(NearDuplicate.custody_index))
        ).all()
        return ItemDescription(
            latest=latest_version(session, evidence_id),
            analysis=session.get(EvidenceAnalysis, evidence_id),
            near_duplicates=list(similar),
        )
