"""/v1/incidents: create, list, read, link evidence."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status

from service.api.deps import IncidentReader, IncidentWriter, RuntimeDep
from service.api.schemas import (
    IncidentCreate,
    IncidentDetail,
    IncidentPublic,
    LinkCreate,
    LinkPublic,
)
from service.incidents import (
    IncidentDraft,
    create_incident,
    link_evidence,
    list_incidents,
    read_incident,
)

router = APIRouter(prefix="/v1/incidents", tags=["incidents"])


@router.post("", status_code=status.HTTP_201_CREATED, response_model=IncidentPublic)
def post_incident(
    body: IncidentCreate,
    runtime: RuntimeDep,
    principal: IncidentWriter,
) -> IncidentPublic:
    """Record an incident."""
    location = body.location
    draft = IncidentDraft(
        title=body.title,
        description=body.description,
        occurred_from=body.occurred_from,
        occurred_to=body.occurred_to,
        location_name=location.name if location else None,
        latitude=location.lat if location else None,
        longitude=location.lon if location else None,
        restricted=body.restricted,
    )
    return IncidentPublic.of(create_incident(runtime, principal, draft))


@router.get("", response_model=list[IncidentPublic])
def get_incidents(
    runtime: RuntimeDep,
    principal: IncidentReader,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    after: Annotated[str | None, Query(max_length=36)] = None,
) -> list[IncidentPublic]:
    """The organisation's incidents, oldest first; pass the last id as `after` for more."""
    return [
        IncidentPublic.of(i) for i in list_incidents(runtime, principal, limit=limit, after=after)
    ]


@router.get("/{incident_id}", response_model=IncidentDetail)
def get_incident(
    incident_id: str,
    runtime: RuntimeDep,
    principal: IncidentReader,
) -> IncidentDetail:
    """An incident with the evidence linked to it."""
    incident, links = read_incident(runtime, principal, incident_id)
    return IncidentDetail(
        **IncidentPublic.of(incident).model_dump(),
        evidence=[LinkPublic.of(link, evidence) for link, evidence in links],
    )


@router.post(
    "/{incident_id}/evidence", status_code=status.HTTP_201_CREATED, response_model=LinkPublic
)
def post_link(
    incident_id: str,
    body: LinkCreate,
    runtime: RuntimeDep,
    principal: IncidentWriter,
) -> LinkPublic:
    """Link an evidence item to the incident, with the reason."""
    link = link_evidence(
        runtime, principal, incident_id, evidence_id=body.evidence_id, reason=body.reason
    )
    return LinkPublic.of(link)
