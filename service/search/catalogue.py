"""The searchable view of incidents and items: places, terms and full text.

These rows are derived from the current version of each record and rewritten when it
changes; the record itself (its versions) is append-only elsewhere. Full text is
PostgreSQL `tsvector` with a GIN index, or an SQLite FTS5 table; both index the same
normalised tokens (service.core.search_text), so Arabic matches alike on both.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar, cast

from sqlalchemy import ColumnElement, String, and_, delete, exists, false, func, text
from sqlalchemy.orm import Mapped
from sqlmodel import Session, col

from service.core.search_text import index_tokens, search_tokens
from service.db.models import Place, SearchDocument, Term
from service.errors import InvalidInput

_T = TypeVar("_T")
# Log positions are stored as signed 64-bit integers.
MAX_POSITION = 2**63 - 1
_CURSOR = re.compile(r"v1:(0|[1-9][0-9]{0,18})")
_Q = TypeVar("_Q", bound=Any)  # a select of rows (SQLModel's select types vary in arity)


@dataclass(frozen=True, slots=True)
class Page(Generic[_T]):
    """Some items, and the cursor for the ones after them (None at the end)."""

    items: list[_T]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class Paging:
    """Which page of a list: how many, after which cursor, oldest or newest first."""

    limit: int = 50
    cursor: str | None = None
    newest_first: bool = False

    def query(self, query: _Q, position: Mapped[int]) -> _Q:
        """`query` narrowed to this page, plus one row that only says there are more."""
        column = col(position)
        if self.cursor is not None:
            at = decode_cursor(self.cursor)
            query = query.where(column < at if self.newest_first else column > at)
        return cast(_Q, self.ordered(query, position).limit(self.limit + 1))

    def ordered(self, query: _Q, position: Mapped[int]) -> _Q:
        """`query` in this page's order."""
        column = col(position)
        return cast(_Q, query.order_by(column.desc() if self.newest_first else column))

    def page(self, fetched: list[_T], *, position: Callable[[_T], int]) -> Page[_T]:
        """The page from what `query` fetched."""
        items = fetched[: self.limit]
        more = len(fetched) > self.limit
        return Page(items, encode_cursor(position(items[-1])) if more else None)


@dataclass(frozen=True, slots=True)
class Point:
    latitude: float
    longitude: float


@dataclass(frozen=True, slots=True)
class BoundingBox:
    """west,south,east,north in degrees (GeoJSON order); may cross the antimeridian."""

    west: float
    south: float
    east: float
    north: float

    @classmethod
    def parse(cls, value: str) -> BoundingBox:
        parts = value.split(",")
        try:
            west, south, east, north = (float(p) for p in parts)
        except ValueError:
            raise InvalidInput("bbox: expected west,south,east,north in degrees") from None
        if not (-180 <= west <= 180 and -180 <= east <= 180):
            raise InvalidInput("bbox: longitudes must be within ±180")
        if not (-90 <= south <= north <= 90):
            raise InvalidInput("bbox: latitudes must be within ±90, south ≤ north")
        return cls(west, south, east, north)


@dataclass(frozen=True, slots=True, kw_only=True)
class Filters:
    """What a list or search may be narrowed by (all optional, all combined)."""

    q: str | None = None
    period_from: datetime | None = None
    period_to: datetime | None = None
    bbox: BoundingBox | None = None
    category: str | None = None
    status: str | None = None
    tag: str | None = None
    media_type: str | None = None
    incident: str | None = None


def reindex(
    session: Session,
    subject: str,
    organisation_id: str,
    *,
    text_body: str,
    places: Sequence[Point] = (),
    terms: Iterable[tuple[str, str]] = (),
    first: bool = False,
) -> None:
    """Replace the subject's places, terms and search text with the given ones.

    `first` says the subject was never indexed (a record created in this transaction):
    there is nothing to replace, and three statements fewer to run.
    """
    if not first:
        session.exec(delete(Place).where(col(Place.subject) == subject))
        session.exec(delete(Term).where(col(Term.subject) == subject))
    for position, point in enumerate(places):
        session.add(
            Place(
                subject=subject,
                position=position,
                latitude=point.latitude,
                longitude=point.longitude,
            )
        )
    for kind, term in dict.fromkeys(terms):
        session.add(Term(subject=subject, kind=kind, term=term))
    body = " ".join(index_tokens(text_body))
    document = None if first else session.get(SearchDocument, subject)
    if document is None:
        session.add(SearchDocument(subject=subject, organisation_id=organisation_id, body=body))
    else:
        document.body = body
        session.add(document)
    session.flush()
    if _dialect(session) == "sqlite":
        # FTS5 keeps its own copy; PostgreSQL's tsvector column is generated from `body`.
        if not first:
            session.execute(text("DELETE FROM search_fts WHERE subject = :s"), {"s": subject})
        session.execute(
            text("INSERT INTO search_fts (subject, body) VALUES (:s, :b)"),
            {"s": subject, "b": body},
        )


def _dialect(session: Session) -> str:
    return session.get_bind().dialect.name


def text_matches(
    session: Session, organisation_id: str, subject: ColumnElement[str], query: str
) -> ColumnElement[bool]:
    """Whether the subject's search text holds every word of `query` (by prefix)."""
    tokens = search_tokens(query)
    if not tokens:
        raise InvalidInput("q: give at least one word to search for")
    if _dialect(session) == "postgresql":
        # OFFSET 0 keeps the matches a set of their own, found through the GIN index
        # first; without it the planner may walk every row in page order and test each.
        sql = (
            "SELECT subject FROM search_document WHERE organisation_id = :org "
            "AND tsv @@ to_tsquery('simple', :match) OFFSET 0"
        )
        match = " & ".join(f"'{t}':*" for t in tokens)  # tokens are word characters only
    else:
        sql = (
            "SELECT search_fts.subject FROM search_fts JOIN search_document "
            "ON search_document.subject = search_fts.subject "
            "WHERE search_document.organisation_id = :org AND search_fts MATCH :match"
        )
        match = " ".join(f'"{t}"*' for t in tokens)
    matching = text(sql).bindparams(org=organisation_id, match=match).columns(subject=String)
    if _dialect(session) == "postgresql":
        # Inside a function the IN stays a subplan, which PostgreSQL hashes once: each
        # row in page order is then one lookup. Pulled up into a semi-join, the planner
        # chose to compare every row with every match (90 % of a 90 ms request).
        return func.coalesce(subject.in_(matching), false())
    return subject.in_(matching)


def in_bbox(subject: ColumnElement[str], box: BoundingBox) -> ColumnElement[bool]:
    """Whether any of the subject's places lies inside the box."""
    latitude = and_(col(Place.latitude) >= box.south, col(Place.latitude) <= box.north)
    if box.west <= box.east:
        longitude = and_(col(Place.longitude) >= box.west, col(Place.longitude) <= box.east)
    else:  # the box crosses the antimeridian
        longitude = (col(Place.longitude) >= box.west) | (col(Place.longitude) <= box.east)
    return exists().where(col(Place.subject) == subject, latitude, longitude)


def has_term(subject: ColumnElement[str], kind: str, term: str) -> ColumnElement[bool]:
    """Whether the subject carries the term (a category or a tag)."""
    return exists().where(
        col(Term.subject) == subject, col(Term.kind) == kind, col(Term.term) == term
    )


def encode_cursor(position: int) -> str:
    """An opaque cursor for the item at log position `position`."""
    return base64.urlsafe_b64encode(f"v1:{position}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    """The log position a cursor stands for; InvalidInput if it is not one of ours."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (ValueError, binascii.Error):
        raw = ""
    found = _CURSOR.fullmatch(raw)
    if found is None or int(found.group(1)) > MAX_POSITION:
        raise InvalidInput("cursor: not a cursor this server gave")
    return int(found.group(1))
