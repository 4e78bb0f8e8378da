"""Many incidents in PostgreSQL, loaded with COPY instead of one `create_incident` each.

Each record writes the rows `service.documentation.incidents` writes for version 1 of an incident:
the `incident` row (its current view), the `incident_version`, and what
`service.search.catalogue.reindex` stores for search: places, category and tag terms, and the
search document whose body is `index_tokens(document.search_text())` joined by spaces
(PostgreSQL generates the `tsvector` from it and updates the GIN index). `rows_differ`
compares these rows with what the real `create_incident` stored for the same document.
The custody log is not loaded: the records take log positions after the last real
entry, as their creation entries would have had; search never reads the log.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from service.core.canonical import canonical_json
from service.core.digests import sha256
from service.core.search_text import index_tokens
from service.documentation.documents import IncidentDocument

_CREATED = datetime(2025, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Owner:
    """Who records an incident: the organisation and the member."""

    organisation_id: str
    user_id: str


@dataclass(frozen=True, slots=True)
class Derived:
    """What the locker stores for a document besides the document itself."""

    title: str
    status: str
    document_json: str
    document_sha256: str
    occurred: tuple[datetime | None, datetime | None]
    places: list[tuple[float, float]]
    terms: list[tuple[str, str]]
    body: str


def derive(document: IncidentDocument) -> Derived:
    """The view rows of `document`, as `documentation.incidents._record_version` derives them."""
    dumped: dict[str, Any] = document.model_dump(
        mode="json", include=set(IncidentDocument.model_fields)
    )
    places = [(p.lat, p.lon) for p in document.locations if p.lat is not None and p.lon is not None]
    terms = [("category", c) for c in document.categories] + [("tag", t) for t in document.tags]
    return Derived(
        title=document.display_title(),
        status=document.status,
        document_json=json.dumps(dumped, ensure_ascii=False),
        document_sha256=sha256(canonical_json(dumped)).hex,
        occurred=document.period(),
        places=places,
        terms=list(dict.fromkeys(terms)),
        body=" ".join(index_tokens(document.search_text())),
    )


def _copy(
    cursor: psycopg.Cursor[Any], table: str, columns: str, rows: Iterator[tuple[Any, ...]]
) -> None:
    with cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


def bulk_load(
    url: str,
    records: Iterator[tuple[Owner, IncidentDocument]],
    *,
    first_position: int,
    progress: Callable[[int], None],
) -> tuple[int, float]:
    """COPY the records, at log positions from `first_position`; (count, seconds)."""
    started = time.perf_counter()
    rng = random.Random(2011)
    incidents, versions, places, terms, documents = [], [], [], [], []
    for number, (owner, document) in enumerate(records):
        derived = derive(document)
        incident_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        subject = f"incident:{incident_id}"
        at = _CREATED + timedelta(seconds=number)
        position = first_position + number
        incidents.append(
            (
                *(incident_id, owner.organisation_id, 1, derived.title, derived.status),
                *(derived.document_json, *derived.occurred, owner.user_id, at, at, position),
            )
        )
        versions.append(
            (
                *(incident_id, 1, owner.organisation_id, derived.document_json),
                *(derived.document_sha256, "", owner.user_id, at, position),
            )
        )
        places += [(subject, n, lat, lon) for n, (lat, lon) in enumerate(derived.places)]
        terms += [(subject, kind, term) for kind, term in derived.terms]
        documents.append((subject, owner.organisation_id, derived.body))
        if number % 10_000 == 9_999:
            progress(number + 1)
    with psycopg.connect(url) as connection, connection.cursor() as cursor:
        _copy(
            cursor,
            "incident",
            "id, organisation_id, version, title, status, document_json, occurred_from, "
            "occurred_to, created_by, created_at, updated_at, custody_index",
            iter(incidents),
        )
        _copy(
            cursor,
            "incident_version",
            "incident_id, version, organisation_id, document_json, document_sha256, reason, "
            "recorded_by, recorded_at, custody_index",
            iter(versions),
        )
        _copy(cursor, "place", "subject, position, latitude, longitude", iter(places))
        _copy(cursor, "term", "subject, kind, term", iter(terms))
        _copy(cursor, "search_document", "subject, organisation_id, body", iter(documents))
    with psycopg.connect(url, autocommit=True) as connection:
        # What autovacuum would have done after the collection grew to this size.
        connection.execute(
            "VACUUM ANALYZE incident, incident_version, place, term, search_document"
        )
    return len(incidents), time.perf_counter() - started


def rows_differ(url: str, incident_id: str, document: IncidentDocument) -> list[str]:
    """How the stored view of a real incident differs from `derive(document)` (empty: same)."""
    expected = derive(document)
    subject = f"incident:{incident_id}"
    with psycopg.connect(url) as connection:
        incident = connection.execute(
            "SELECT title, status, document_json, occurred_from, occurred_to FROM incident "
            "WHERE id = %s",
            (incident_id,),
        ).fetchone()
        digest = connection.execute(
            "SELECT document_sha256 FROM incident_version WHERE incident_id = %s", (incident_id,)
        ).fetchone()
        places = connection.execute(
            "SELECT latitude, longitude FROM place WHERE subject = %s ORDER BY position",
            (subject,),
        ).fetchall()
        terms = connection.execute(
            "SELECT kind, term FROM term WHERE subject = %s", (subject,)
        ).fetchall()
        body = connection.execute(
            "SELECT body FROM search_document WHERE subject = %s", (subject,)
        ).fetchone()
    found = {
        "incident": incident,
        "version digest": digest,
        "places": places,
        "terms": sorted(terms),
        "search body": body,
    }
    wanted = {
        "incident": (expected.title, expected.status, expected.document_json, *expected.occurred),
        "version digest": (expected.document_sha256,),
        "places": expected.places,
        "terms": sorted(expected.terms),
        "search body": (expected.body,),
    }
    return [
        f"{subject}: {name} differs" for name in found if _rows(found[name]) != _rows(wanted[name])
    ]


def _rows(value: object) -> object:
    """Tuples and lists alike, so fetched rows compare with derived ones."""
    if isinstance(value, list | tuple):
        return [_rows(v) for v in value]
    return value
