"""Links between incidents and evidence: made with a reason, ended with a reason.

A link is never deleted: unlinking records its end (`link_end`) and a custody entry, so
the history of what was once thought to document an incident stays readable.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sqlalchemy import ColumnElement
from sqlalchemy.orm import Mapped
from sqlmodel import Session, col, select

from service.accounts.access import visible_evidence, visible_incident
from service.accounts.members import Principal
from service.accounts.permissions import Permission
from service.db import rerun_if_raced
from service.db.models import Evidence, Incident, IncidentEvidence, LinkEnd
from service.errors import InvalidInput

if TYPE_CHECKING:
    from service.runtime import Runtime


@rerun_if_raced
def link_evidence(
    runtime: Runtime, principal: Principal, incident_id: str, *, evidence_id: str, reason: str
) -> IncidentEvidence:
    """Link an evidence item to an incident, recording why."""
    principal.require(Permission.INCIDENT_WRITE, subject=f"incident:{incident_id}")
    with runtime.database.session() as session:
        incident = visible_incident(session, principal, incident_id)
        evidence = visible_evidence(session, principal, evidence_id)
        return link_in_session(runtime, session, principal, incident, evidence, reason=reason)


def link_in_session(  # noqa: PLR0913 (the link's two ends and who made it, why)
    runtime: Runtime,
    session: Session,
    principal: Principal,
    incident: Incident,
    evidence: Evidence,
    *,
    reason: str,
) -> IncidentEvidence:
    """The link and its log entry, inside the caller's transaction."""
    existing = _link(session, incident.id, evidence.id)
    if existing is not None:
        ended = session.get(LinkEnd, existing.id) is not None
        state = "was linked and then unlinked" if ended else "is already linked"
        raise InvalidInput(f"evidence {evidence.id} {state} to incident {incident.id}")
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


@rerun_if_raced
def unlink_evidence(
    runtime: Runtime, principal: Principal, incident_id: str, evidence_id: str, *, reason: str
) -> LinkEnd:
    """End a link, recording why; the link and its history stay."""
    principal.require(Permission.INCIDENT_WRITE, subject=f"incident:{incident_id}")
    with runtime.database.session() as session:
        visible_incident(session, principal, incident_id)
        evidence = visible_evidence(session, principal, evidence_id)
        link = _link(session, incident_id, evidence_id)
        if link is None:
            raise InvalidInput(f"evidence {evidence_id} is not linked to incident {incident_id}")
        if session.get(LinkEnd, link.id) is not None:
            raise InvalidInput(
                f"the link of evidence {evidence_id} to incident {incident_id} already ended"
            )
        entry = runtime.log.append(
            session,
            organisation_id=principal.organisation_id,
            actor=principal.actor,
            action="incident.evidence_unlinked",
            subjects=[f"incident:{incident_id}", f"evidence:{evidence_id}"],
            details={"evidence": evidence_id, "sha256": evidence.sha256, "reason": reason},
        )
        end = LinkEnd(
            link_id=link.id,
            reason=reason,
            ended_by=principal.user_id,
            ended_at=entry.time,
            custody_index=entry.index,
        )
        session.add(end)
    return end


def _link(session: Session, incident_id: str, evidence_id: str) -> IncidentEvidence | None:
    return session.exec(
        select(IncidentEvidence)
        .where(IncidentEvidence.incident_id == incident_id)
        .where(IncidentEvidence.evidence_id == evidence_id)
    ).first()


def is_linked(session: Session, incident_id: str, evidence_id: str) -> bool:
    """Whether the evidence has a link to the incident (one that may since have ended)."""
    return _link(session, incident_id, evidence_id) is not None


def linked_clause(incident_id: str, evidence_id: Mapped[str]) -> ColumnElement[bool]:
    """SQL: the evidence is linked to the incident and the link has not ended."""
    ended = select(LinkEnd.link_id).where(col(LinkEnd.link_id) == col(IncidentEvidence.id))
    linked = (
        select(IncidentEvidence.id)
        .where(col(IncidentEvidence.evidence_id) == evidence_id)
        .where(IncidentEvidence.incident_id == incident_id)
        .where(~ended.exists())
    )
    return linked.exists()
