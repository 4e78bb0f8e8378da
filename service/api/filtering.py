"""Query parameters shared by the lists and the search: filters and cursor paging."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import Depends, Query

from service.catalogue import BoundingBox, Filters, Paging
from service.errors import InvalidInput


def _filters(
    q: Annotated[
        str | None, Query(max_length=500, description="Words to find (all of them).")
    ] = None,
    period_from: Annotated[datetime | None, Query(alias="from")] = None,
    period_to: Annotated[datetime | None, Query(alias="to")] = None,
    bbox: Annotated[
        str | None, Query(max_length=100, description="west,south,east,north in degrees")
    ] = None,
    category: Annotated[str | None, Query(max_length=100)] = None,
    status: Annotated[str | None, Query(max_length=32)] = None,
    tag: Annotated[str | None, Query(max_length=100)] = None,
    media_type: Annotated[
        str | None, Query(max_length=255, description="e.g. image/jpeg or image/*")
    ] = None,
    incident: Annotated[
        str | None, Query(max_length=36, description="Items linked to this incident.")
    ] = None,
) -> Filters:
    if period_from and period_to and period_to < period_from:
        raise InvalidInput("to: must not be before from")
    return Filters(
        q=q,
        period_from=period_from,
        period_to=period_to,
        bbox=BoundingBox.parse(bbox) if bbox else None,
        category=category,
        status=status,
        tag=tag,
        media_type=media_type,
        incident=incident,
    )


def _paging(
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=100)] = None,
    order: Annotated[Literal["oldest", "newest"], Query()] = "oldest",
) -> Paging:
    return Paging(limit=limit, cursor=cursor, newest_first=order == "newest")


FilterParams = Annotated[Filters, Depends(_filters)]
PagingParams = Annotated[Paging, Depends(_paging)]
