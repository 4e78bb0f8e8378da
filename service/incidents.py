"""Incidents and the evidence linked to them."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import ColumnElement, String, literal
from sqlalchemy.orm import Mapped
from sqlmodel import Session, col, select

from service.access import (
    restrict_in_session,
    visible_clause,
    visible_evidence,
    visible_incident,
)
from service.accounts import Principal
from service.db.models import Evidence, Incident, IncidentEvidence
from service.errors import InvalidInput
from service.permissions import Permission
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
    restricted: bool = False


def create_incident(runtime: Runtime, principal: Principal, draft: IncidentDraft) -> Incident:
    """Record a new incident and its creation in the custody log."""
    principal.require(Permission.INCIDENT_WRITE)
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
        if draft.restricted:
            restrict_in_session(runtime, session, principal, f"incident:{incident_id}")
    return incident


def read_incident(
    runtime: Runtime, principal: Principal, incident_id: str
) -> tuple[Incident, list[tuple[IncidentEvidence, Evidence]]]:
    """An incident with its links and the linked evidence records."""
    with runtime.database.session() as session:
        incident = visible_incident(session, principal, incident_id)
        links = session.exec(
            select(IncidentEvidence, Evidence)
            .where(IncidentEvidence.incident_id == incident_id)
            .where(IncidentEvidence.evidence_id == Evidence.id)
            .where(visible_clause(principal, _subject("evidence", col(Evidence.id))))
            .order_by(col(IncidentEvidence.custody_index))
        ).all()
    return incident, [(link, evidence) for link, evidence in links]


def list_incidents(
    runtime: Runtime, principal: Principal, *, limit: int, after: str | None
) -> list[Incident]:
    """The organisation's incidents, oldest first, `limit` at a time after a cursor."""
    with runtime.database.session() as session:
        principal.require(Permission.INCIDENT_READ)
        query = (
            select(Incident)
            .where(Incident.organisation_id == principal.organisation_id)
            .where(visible_clause(principal, _subject("incident", col(Incident.id))))
        )
        if after is not None:
            query = query.where(
                col(Incident.custody_index) > _cursor_index(session, principal, after)
            )
        return list(session.exec(query.order_by(col(Incident.custody_index)).limit(limit)))


def _subject(kind: str, column: ColumnElement[str] | Mapped[str]) -> ColumnElement[str]:
    return literal(f"{kind}:", String) + column


def _cursor_index(session: Session, principal: Principal, incident_id: str) -> int:
    cursor = session.get(Incident, incident_id)
    if cursor is None or cursor.organisation_id != principal.organisation_id:
        raise InvalidInput("after: unknown cursor")
    return cursor.custody_index


def link_evidence(
    runtime: Runtime, principal: Principal, incident_id: str, *, evidence_id: str, reason: str
) -> IncidentEvidence:
    """Link an evidence item to an incident, recording why."""
    principal.require(Permission.INCIDENT_WRITE, subject=f"incident:{incident_id}")
    with runtime.database.session() as session:
        incident = visible_incident(session, principal, incident_id)
        evidence = visible_evidence(session, principal, evidence_id)
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
