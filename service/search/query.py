"""One search over incidents and items: full text plus the same filters as the lists.

Results come in log order (the position of each record's creation in the custody
log), so a cursor stays valid while new records arrive.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, TypeVar

from sqlmodel import Session, col, select

from service.accounts.members import Principal
from service.accounts.permissions import Permission
from service.db.models import Evidence, EvidenceProfile, Incident
from service.documentation.incidents import list_incidents, reindex_incident
from service.errors import InvalidInput
from service.evidence.descriptions import list_evidence, reindex_evidence
from service.search.catalogue import Filters, Page, Paging, encode_cursor

if TYPE_CHECKING:
    from service.runtime import Runtime

Kind = Literal["incident", "evidence"]
_Record = TypeVar("_Record", Incident, Evidence)


@dataclass(frozen=True, slots=True)
class Hit:
    kind: Kind
    position: int
    incident: Incident | None = None
    evidence: tuple[Evidence, EvidenceProfile] | None = None


def search(
    runtime: Runtime,
    principal: Principal,
    filters: Filters,
    *,
    kind: Kind | None,
    paging: Paging,
) -> Page[Hit]:
    """Incidents, items or both matching `filters`, merged in log order."""
    if not filters.q:
        raise InvalidInput("q: give at least one word to search for")
    incidents_wanted = kind in (None, "incident")
    evidence_wanted = kind in (None, "evidence")
    if kind is None and (
        filters.media_type or filters.incident or filters.category or filters.status
    ):
        raise InvalidInput("type: give type=incident or type=evidence with these filters")
    hits: list[Hit] = []
    more = False
    if incidents_wanted:
        principal.require(Permission.INCIDENT_READ)
        incidents = list_incidents(runtime, principal, filters, paging)
        hits += [Hit("incident", i.custody_index, incident=i) for i in incidents.items]
        more = incidents.next_cursor is not None
    if evidence_wanted:
        principal.require(Permission.EVIDENCE_READ)
        items = list_evidence(runtime, principal, filters, paging)
        hits += [Hit("evidence", row[0].ingest_index, evidence=row) for row in items.items]
        more = more or items.next_cursor is not None
    hits.sort(key=lambda h: h.position, reverse=paging.newest_first)
    # Each kind was fetched `limit` deep: past the page, either kind may have more.
    more = more or len(hits) > paging.limit
    hits = hits[: paging.limit]
    return Page(hits, encode_cursor(hits[-1].position) if more else None)


@dataclass(frozen=True, slots=True)
class Reindexed:
    incidents: int
    evidence: int


def rebuild_search_index(runtime: Runtime, *, batch: int = 500) -> Reindexed:
    """Rebuild every incident's and item's search view from its current version.

    For an operator after an upgrade that changes how text is normalised: the views
    are derived data (the versions themselves are append-only and untouched), so
    rebuilding them changes nothing a court relies on. One transaction per batch.
    """
    return Reindexed(
        incidents=_rebuild_all(runtime, Incident, reindex_incident, batch),
        evidence=_rebuild_all(runtime, Evidence, reindex_evidence, batch),
    )


def _rebuild_all(
    runtime: Runtime, model: type[_Record], rebuild: Callable[[Session, _Record], None], batch: int
) -> int:
    done, after = 0, ""
    while True:
        with runtime.database.session() as session:
            rows = session.exec(
                select(model).where(col(model.id) > after).order_by(col(model.id)).limit(batch)
            ).all()
            for row in rows:
                rebuild(session, row)
        if not rows:
            return done
        done, after = done + len(rows), rows[-1].id
