"""Query parameters shared by the lists and the search: filters and cursor paging."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import Depends, Query
from pydantic import AfterValidator, AwareDatetime

from service.errors import InvalidInput
from service.search.catalogue import MAX_POSITION, BoundingBox, Filters, Paging


def _representable(moment: datetime) -> datetime:
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise ValueError("outside the range of dates this server can compare") from None


# A moment in a query: with its UTC offset (a bare time would be ambiguous) and within
# the calendar once moved to UTC.
Moment = Annotated[AwareDatetime, AfterValidator(_representable)]
# A log position or tree size: stored as a signed 64-bit integer.
Position = Annotated[int, Query(ge=0, le=MAX_POSITION)]


def _filters(  # noqa: PLR0913 (FastAPI: one parameter per query parameter)
    q: Annotated[
        str | None, Query(max_length=500, description="Words to find (all of them).")
    ] = None,
    period_from: Annotated[Moment | None, Query(alias="from")] = None,
    period_to: Annotated[Moment | None, Query(alias="to")] = None,
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
