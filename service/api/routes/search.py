"""/v1/search over incidents and items, and the vocabulary incidents are described with."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query

from service.api.deps import IncidentReader, RuntimeDep
from service.api.filtering import FilterParams, PagingParams
from service.api.schemas.search import SearchHit, SearchPage, Vocabulary
from service.documentation.documents import STATUSES
from service.search.query import Hit, search

router = APIRouter(prefix="/v1", tags=["search"])


@router.get("/search", response_model=SearchPage)
def get_search(
    runtime: RuntimeDep,
    principal: IncidentReader,
    filters: FilterParams,
    paging: PagingParams,
    kind: Annotated[Literal["incident", "evidence"] | None, Query(alias="type")] = None,
) -> SearchPage:
    """Full-text search (Arabic matched without diacritics) with the lists' filters."""
    page = search(runtime, principal, filters, kind=kind, paging=paging)
    return SearchPage(items=[_hit(h) for h in page.items], next_cursor=page.next_cursor)


def _hit(hit: Hit) -> SearchHit:
    if hit.incident is not None:
        incident = hit.incident
        return SearchHit(
            type="incident",
            id=incident.id,
            title=incident.title,
            custody_index=hit.position,
            status=incident.status,
        )
    assert hit.evidence is not None
    evidence, profile = hit.evidence
    return SearchHit(
        type="evidence",
        id=evidence.id,
        title=profile.title,
        custody_index=hit.position,
        media_type=evidence.media_type,
        sha256=evidence.sha256,
    )


@router.get("/vocabulary", response_model=Vocabulary)
def get_vocabulary(runtime: RuntimeDep, _principal: IncidentReader) -> Vocabulary:
    """The violation categories and statuses incidents may carry."""
    return Vocabulary(categories=sorted(runtime.vocabulary), statuses=list(STATUSES))
