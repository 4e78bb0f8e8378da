"""/v1/incidents: record, edit (as new versions), list and search, link and unlink evidence."""

from __future__ import annotations

from fastapi import APIRouter, status

from service.api.deps import IncidentReader, IncidentWriter, RuntimeDep
from service.api.filtering import FilterParams, PagingParams
from service.api.idempotency import Idempotency, IdempotentRoute
from service.api.schemas.incidents import (
    IncidentCreate,
    IncidentDetail,
    IncidentPage,
    IncidentPublic,
    IncidentUpdate,
    IncidentVersionPublic,
)
from service.api.schemas.links import LinkCreate, LinkPublic, UnlinkRequest
from service.documentation.incidents import (
    create_incident,
    document_for,
    incident_history,
    list_incidents,
    read_incident,
    update_incident,
)
from service.documentation.links import link_evidence, unlink_evidence

router = APIRouter(prefix="/v1/incidents", tags=["incidents"], route_class=IdempotentRoute)


@router.post("", status_code=status.HTTP_201_CREATED, response_model=IncidentPublic)
def post_incident(
    body: IncidentCreate,
    runtime: RuntimeDep,
    principal: IncidentWriter,
    _: Idempotency,
) -> IncidentPublic:
    """Record an incident (its version 1)."""
    incident = create_incident(runtime, principal, body, restricted=body.restricted)
    return IncidentPublic.of(incident, document_for(runtime, principal, incident.document_json))


@router.get("", response_model=IncidentPage)
def get_incidents(
    runtime: RuntimeDep,
    principal: IncidentReader,
    filters: FilterParams,
    paging: PagingParams,
) -> IncidentPage:
    """The organisation's incidents in log order, filtered; follow `next_cursor` for more."""
    page = list_incidents(runtime, principal, filters, paging)
    return IncidentPage(
        items=[
            IncidentPublic.of(i, document_for(runtime, principal, i.document_json))
            for i in page.items
        ],
        next_cursor=page.next_cursor,
    )


@router.get("/{incident_id}", response_model=IncidentDetail)
def get_incident(
    incident_id: str,
    runtime: RuntimeDep,
    principal: IncidentReader,
) -> IncidentDetail:
    """An incident's latest version with the evidence linked to it (ended links marked)."""
    incident, links = read_incident(runtime, principal, incident_id)
    shown = IncidentPublic.of(incident, document_for(runtime, principal, incident.document_json))
    evidence = [LinkPublic.of(v.link, v.evidence, v.ended) for v in links]
    return IncidentDetail.model_validate(shown.model_dump() | {"evidence": evidence})


@router.patch("/{incident_id}", response_model=IncidentPublic)
def patch_incident(
    incident_id: str,
    body: IncidentUpdate,
    runtime: RuntimeDep,
    principal: IncidentWriter,
) -> IncidentPublic:
    """Record a new version with the fields given changed; earlier versions stay readable."""
    incident = update_incident(
        runtime,
        principal,
        incident_id,
        body.changes(),
        reason=body.reason,
        base_version=body.base_version,
    )
    return IncidentPublic.of(incident, document_for(runtime, principal, incident.document_json))


@router.get("/{incident_id}/history", response_model=list[IncidentVersionPublic])
def get_incident_history(
    incident_id: str,
    runtime: RuntimeDep,
    principal: IncidentReader,
) -> list[IncidentVersionPublic]:
    """Every version of the incident, oldest first, each with its digest in the log."""
    return [
        IncidentVersionPublic.of(v, document_for(runtime, principal, v.document_json))
        for v in incident_history(runtime, principal, incident_id)
    ]


@router.post(
    "/{incident_id}/evidence", status_code=status.HTTP_201_CREATED, response_model=LinkPublic
)
def post_link(
    incident_id: str,
    body: LinkCreate,
    runtime: RuntimeDep,
    principal: IncidentWriter,
    _: Idempotency,
) -> LinkPublic:
    """Link an evidence item to the incident, with the reason."""
    link = link_evidence(
        runtime, principal, incident_id, evidence_id=body.evidence_id, reason=body.reason
    )
    return LinkPublic.of(link)


@router.post("/{incident_id}/evidence/{evidence_id}/unlink", response_model=LinkPublic)
def post_unlink(
    incident_id: str,
    evidence_id: str,
    body: UnlinkRequest,
    runtime: RuntimeDep,
    principal: IncidentWriter,
) -> LinkPublic:
    """End the link, with the reason; the link and its history stay."""
    unlink_evidence(runtime, principal, incident_id, evidence_id, reason=body.reason)
    _, links = read_incident(runtime, principal, incident_id)
    view = next(v for v in links if v.link.evidence_id == evidence_id)
    return LinkPublic.of(view.link, view.evidence, view.ended)
