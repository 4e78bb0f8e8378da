"""One search over incidents and items: full text plus the same filters as the lists.

Results come in log order (the position of each record's creation in the custody
log), so a cursor stays valid while new records arrive.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from service.accounts import Principal
from service.catalogue import Filters, Page, Paging, encode_cursor
from service.db.models import Evidence, EvidenceProfile, Incident
from service.descriptions import list_evidence
from service.errors import InvalidInput
from service.incidents import list_incidents
from service.permissions import Permission
from service.runtime import Runtime

Kind = Literal["incident", "evidence"]


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
