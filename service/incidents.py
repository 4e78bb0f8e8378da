"""Incidents and the evidence linked to them."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlmodel import Session, col, select

from service.accounts import Principal
from service.db.models import Evidence, Incident, IncidentEvidence
from service.errors import InvalidInput, NotFound
from service.runtime import Runtime


@dataclass(frozen=True, slots=True, kw_only=True)
class IncidentDraft:
    """What a caller may set when creating an incident (validated by the API schema)."""

    title: str
    description: str = ""
    occurred_from: datetime | None = None
    occurred_to: datetime | None = None
    location_name: str | None = None
    latitude: float | None = None
    longitude: float | None = None


def create_incident(runtime: Runtime, principal: Principal, draft: IncidentDraft) -> Incident:
    """Record a new incident and its creation in the custody log."""
    if draft.occurred_from and draft.occurred_to and draft.occurred_to < draft.occurred_from:
        raise InvalidInput("occurred_to: must not be before occurred_from")
    incident_id = str(uuid.uuid4())
    with runtime.database.session() as session:
        entry = runtime.log.append(
            session,
            organisation_id=principal.organisation_id,
            actor=principal.actor,
            action="incident.created",
            subjects=[f"incident:{incident_id}"],
            details={"title": draft.title},
        )
        incident = Incident(
            id=incident_id,
            organisation_id=principal.organisation_id,
            title=draft.title,
            description=draft.description,
            occurred_from=draft.occurred_from,
            occurred_to=draft.occurred_to,
            location_name=draft.location_name,
            latitude=draft.latitude,
            longitude=draft.longitude,
            created_by=principal.user_id,
            created_at=entry.time,
            custody_index=entry.index,
        )
        session.add(incident)
    return incident


def get_incident(session: Session, principal: Principal, incident_id: str) -> Incident:
    """The caller's organisation's incident, or NotFound (also for other organisations')."""
    incident = session.get(Incident, incident_id)
    if incident is None or incident.organisation_id != principal.organisation_id:
        raise NotFound(f"no incident {incident_id}")
    return incident


def read_incident(
    runtime: Runtime, principal: Principal, incident_id: str
) -> tuple[Incident, list[tuple[IncidentEvidence, Evidence]]]:
    """An incident with its links and the linked evidence records."""
    with runtime.database.session() as session:
        incident = get_incident(session, principal, incident_id)
        links = session.exec(
            select(IncidentEvidence, Evidence)
            .where(IncidentEvidence.incident_id == incident_id)
            .where(IncidentEvidence.evidence_id == Evidence.id)
            .order_by(col(IncidentEvidence.custody_index))
        ).all()
    return incident, [(link, evidence) for link, evidence in links]


def list_incidents(
    runtime: Runtime, principal: Principal, *, limit: int, after: str | None
) -> list[Incident]:
    """The organisation's incidents, oldest first, `limit` at a time after a cursor."""
    with runtime.database.session() as session:
        query = select(Incident).where(Incident.organisation_id == principal.organisation_id)
        if after is not None:
            query = query.where(col(Incident.custody_index) > _cursor_index(session, after))
        return list(session.exec(query.order_by(col(Incident.custody_index)).limit(limit)))


def _cursor_index(session: Session, incident_id: str) -> int:
    cursor = session.get(Incident, incident_id)
    if cursor is None:
        raise InvalidInput("after: unknown cursor")
    return cursor.custody_index


def link_evidence(
    runtime: Runtime, principal: Principal, incident_id: str, *, evidence_id: str, reason: str
) -> IncidentEvidence:
    """Link an evidence item to an incident, recording why."""
    with runtime.database.session() as session:
        incident = get_incident(session, principal, incident_id)
        evidence = session.get(Evidence, evidence_id)
        if evidence is None or evidence.organisation_id != principal.organisation_id:
            raise NotFound(f"no evidence {evidence_id}")
        return link_in_session(runtime, session, principal, incident, evidence, reason=reason)


def link_in_session(
    runtime: Runtime,
    session: Session,
    principal: Principal,
    incident: Incident,
    evidence: Evidence,
    *,
    reason: str,
) -> IncidentEvidence:
    """The link and its log entry, inside the caller's transaction."""
    if is_linked(session, incident.id, evidence.id):
        raise InvalidInput(f"evidence {evidence.id} is already linked to incident {incident.id}")
    entry = runtime.log.append(
        session,
        organisation_id=principal.organisation_id,
        actor=principal.actor,
        action="incident.evidence_linked",
        subjects=[f"incident:{incident.id}", f"evidence:{evidence.id}"],
        details={"evidence": evidence.id, "sha256": evidence.sha256, "reason": reason},
    )
    link = IncidentEvidence(
        id=str(uuid.uuid4()),
        incident_id=incident.id,
        evidence_id=evidence.id,
        reason=reason,
        linked_by=principal.user_id,
        linked_at=datetime.now(UTC),
        custody_index=entry.index,
    )
    session.add(link)
    return link


def is_linked(session: Session, incident_id: str, evidence_id: str) -> bool:
    """Whether the evidence is already linked to the incident."""
    found = session.exec(
        select(IncidentEvidence.id)
        .where(IncidentEvidence.incident_id == incident_id)
        .where(IncidentEvidence.evidence_id == evidence_id)
    ).first()
    return found is not None
