"""Incidents (HURIDOCS events), their versions, and the evidence linked to them.

Nothing is overwritten: every edit is a new version whose canonical digest goes into
the custody log; the incident row is only the current view of the latest version.
Unlinking evidence ends the link with a reason; the link itself stays.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError
from sqlalchemy import ColumnElement, and_
from sqlalchemy.orm import Mapped
from sqlmodel import Session, col, select

from service.accounts.access import (
    hidden_subjects,
    restrict_in_session,
    subject_column,
    visible_clause,
    visible_incident,
)
from service.accounts.members import Principal
from service.accounts.permissions import Permission, allows
from service.core.canonical import canonical_sha256
from service.db import rerun_if_raced
from service.db.models import Evidence, Incident, IncidentEvidence, IncidentVersion, LinkEnd
from service.documentation.documents import IncidentDocument, edited
from service.documentation.versioning import (
    require_change,
    require_latest,
    version_details,
    version_history,
)
from service.errors import InvalidInput, NotFound, validation_message
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

WITHHELD = "[withheld]"


@dataclass(frozen=True, slots=True, kw_only=True)
class LinkView:
    link: IncidentEvidence
    evidence: Evidence
    ended: LinkEnd | None


def parse_document(value: Mapping[str, Any]) -> IncidentDocument:
    """A document from JSON input; InvalidInput names the first bad field."""
    try:
        return IncidentDocument.model_validate(value)
    except ValidationError as exc:
        raise InvalidInput(validation_message(exc.errors())) from None


def create_incident(
    runtime: Runtime, principal: Principal, document: IncidentDocument, *, restricted: bool = False
) -> Incident:
    """Record a new incident (version 1) and its creation in the custody log."""
    principal.require(Permission.INCIDENT_WRITE)
    incident_id = str(uuid.uuid4())
    with runtime.database.session() as session:
        _check_references(runtime, session, principal, document, incident_id)
        incident = _record_version(
            runtime, session, principal, incident_id, document, version=1, reason=""
        )
        if restricted:
            restrict_in_session(runtime, session, principal, f"incident:{incident_id}")
    return incident


@rerun_if_raced
def update_incident(
    runtime: Runtime,
    principal: Principal,
    incident_id: str,
    changes: Mapping[str, Any],
    *,
    reason: str,
    base_version: int | None = None,
) -> Incident:
    """A new version: the latest one with `changes` applied (the old one stays readable)."""
    principal.require(Permission.INCIDENT_WRITE, subject=f"incident:{incident_id}")
    with runtime.database.session() as session:
        current = visible_incident(session, principal, incident_id)
        record = f"incident {incident_id}"
        require_latest(record, latest=current.version, base_version=base_version)
        latest = json.loads(current.document_json)
        # Relations already recorded stay, even to incidents this editor cannot see.
        kept = frozenset(latest.get("related_incidents", []))
        document = parse_document(edited(latest, changes))
        _check_references(runtime, session, principal, document, incident_id, kept=kept)
        require_change(
            "the incident",
            latest_sha256=canonical_sha256(latest),
            new_sha256=canonical_sha256(_dump(document)),
        )
        return _record_version(
            runtime,
            session,
            principal,
            incident_id,
            document,
            version=current.version + 1,
            reason=reason,
            current=current,
        )


def _dump(document: IncidentDocument) -> dict[str, Any]:
    # Only the record's own fields (a request body may carry more, like `restricted`).
    return document.model_dump(mode="json", include=set(IncidentDocument.model_fields))


def _check_references(
    runtime: Runtime,
    session: Session,
    principal: Principal,
    document: IncidentDocument,
    incident_id: str,
    *,
    kept: frozenset[str] = frozenset(),
) -> None:
    for category in document.categories:
        if category not in runtime.vocabulary:
            raise InvalidInput(
                f"categories: unknown term {category!r}; GET /v1/vocabulary lists them"
            )
    for related in document.related_incidents:
        if related == incident_id:
            raise InvalidInput("related_incidents: an incident cannot relate to itself")
        if related in kept:
            continue
        try:
            visible_incident(session, principal, related)
        except NotFound:
            raise InvalidInput(f"related_incidents: no incident {related}") from None


def _record_version(  # noqa: PLR0913 (one version's contents and context)
    runtime: Runtime,
    session: Session,
    principal: Principal,
    incident_id: str,
    document: IncidentDocument,
    *,
    version: int,
    reason: str,
    current: Incident | None = None,
) -> Incident:
    dumped = _dump(document)
    digest = canonical_sha256(dumped)
    details = version_details(
        version=version, digest_name="document_sha256", digest=digest, reason=reason
    )
    entry = runtime.log.append(
        session,
        organisation_id=principal.organisation_id,
        actor=principal.actor,
        action="incident.created" if version == 1 else "incident.updated",
        subjects=[f"incident:{incident_id}"],
        details=details,
    )
    text = json.dumps(dumped, ensure_ascii=False)
    earliest, latest = document.period()
    incident = current or Incident(
        id=incident_id,
        organisation_id=principal.organisation_id,
        created_by=principal.user_id,
        created_at=entry.time,
        custody_index=entry.index,
        version=version,
        title="",
        status="",
        document_json="",
        updated_at=entry.time,
    )
    incident.version, incident.document_json = version, text
    incident.title, incident.status = document.display_title(), document.status
    incident.occurred_from, incident.occurred_to = earliest, latest
    incident.updated_at = entry.time
    session.add(incident)
    session.add(
        IncidentVersion(
            incident_id=incident_id,
            version=version,
            organisation_id=principal.organisation_id,
            document_json=text,
            document_sha256=digest,
            reason=reason,
            recorded_by=principal.user_id,
            recorded_at=entry.time,
            custody_index=entry.index,
        )
    )
    reindex_incident(session, incident, document, first=current is None)
    return incident


def reindex_incident(
    session: Session,
    incident: Incident,
    document: IncidentDocument | None = None,
    *,
    first: bool = False,
) -> None:
    """Rebuild the incident's search view from its current version (`first`: a new one)."""
    if document is None:
        document = IncidentDocument.model_validate_json(incident.document_json)
    reindex(
        session,
        f"incident:{incident.id}",
        incident.organisation_id,
        text_body=document.search_text(),
        places=[
            Point(place.lat, place.lon)
            for place in document.locations
            if place.lat is not None and place.lon is not None
        ],
        terms=[("category", c) for c in document.categories] + [("tag", t) for t in document.tags],
        first=first,
    )


def document_for(runtime: Runtime, principal: Principal, document_json: str) -> dict[str, Any]:
    """The document as the caller may see it: related incidents hidden from the caller
    withheld, and restricted identities withheld from readers."""
    document: dict[str, Any] = json.loads(document_json)
    if document.get("related_incidents"):
        with runtime.database.session() as session:
            document = withhold_relations(session, principal, document)
    if allows(principal.role, Permission.INCIDENT_WRITE):
        return document
    return withhold_identities(document)


def withhold_relations(
    session: Session, principal: Principal, document: dict[str, Any]
) -> dict[str, Any]:
    """The document with each related incident the caller cannot see withheld."""
    related = [str(i) for i in document.get("related_incidents", [])]
    hidden = hidden_subjects(session, principal, [f"incident:{i}" for i in related])
    document["related_incidents"] = [WITHHELD if f"incident:{i}" in hidden else i for i in related]
    return document


def withhold_identities(document: dict[str, Any]) -> dict[str, Any]:
    """The document with the names of actors whose identities are restricted withheld."""
    for actor in document.get("actors", []):
        if actor.get("identity_restricted") and actor.get("name"):
            actor["name"] = WITHHELD
    return document


def read_incident(
    runtime: Runtime, principal: Principal, incident_id: str
) -> tuple[Incident, list[LinkView]]:
    """An incident with its links (ended ones too, marked) and the linked evidence."""
    with runtime.database.session() as session:
        incident = visible_incident(session, principal, incident_id)
        rows = session.exec(
            select(IncidentEvidence, Evidence, LinkEnd)
            .join(Evidence, col(IncidentEvidence.evidence_id) == col(Evidence.id))
            .join(LinkEnd, col(LinkEnd.link_id) == col(IncidentEvidence.id), isouter=True)
            .where(IncidentEvidence.incident_id == incident_id)
            .where(visible_clause(principal, subject_column("evidence", col(Evidence.id))))
            .order_by(col(IncidentEvidence.custody_index))
        ).all()
    return incident, [LinkView(link=link, evidence=e, ended=end) for link, e, end in rows]


def incident_history(
    runtime: Runtime, principal: Principal, incident_id: str
) -> list[IncidentVersion]:
    """Every version of the incident, oldest first."""
    with runtime.database.session() as session:
        visible_incident(session, principal, incident_id)
        return version_history(
            session, IncidentVersion, col(IncidentVersion.incident_id), incident_id
        )


def list_incidents(
    runtime: Runtime,
    principal: Principal,
    filters: Filters,
    paging: Paging,
) -> Page[Incident]:
    """The organisation's incidents matching `filters`, in log order, a page at a time."""
    principal.require(Permission.INCIDENT_READ)
    position = col(Incident.custody_index)
    with runtime.database.session() as session:
        # The page's positions first, from the narrow listing index; then their rows.
        page = paging.query(
            select(position).where(incident_filter(session, principal, filters, col(Incident.id))),
            position,
        ).subquery()
        query = select(Incident).join(page, position == page.c.custody_index)
        items = list(session.exec(paging.ordered(query, position)))
    return paging.page(items, position=lambda i: i.custody_index)


def incident_filter(
    session: Session, principal: Principal, filters: Filters, incident_id: Mapped[str]
) -> ColumnElement[bool]:
    """SQL: the incident is the caller's, visible, and matches every filter given."""
    subject = subject_column("incident", incident_id)
    clauses = [
        col(Incident.organisation_id) == principal.organisation_id,
        visible_clause(principal, subject),
    ]
    if filters.q:
        clauses.append(text_matches(session, principal.organisation_id, subject, filters.q))
    if filters.period_from is not None:
        clauses.append(col(Incident.occurred_to) >= filters.period_from)
    if filters.period_to is not None:
        clauses.append(col(Incident.occurred_from) <= filters.period_to)
    if filters.bbox is not None:
        clauses.append(in_bbox(subject, filters.bbox))
    if filters.category is not None:
        clauses.append(has_term(subject, "category", filters.category))
    if filters.tag is not None:
        clauses.append(has_term(subject, "tag", filters.tag))
    if filters.status is not None:
        clauses.append(col(Incident.status) == filters.status)
    if filters.media_type is not None or filters.incident is not None:
        raise InvalidInput("media_type and incident filter evidence, not incidents")
    return and_(*clauses)
