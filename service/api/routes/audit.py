"""/v1/custody/export: the audit log, streamed, each entry with its inclusion proof."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from service.accounts.people import people_of
from service.api.deps import CustodyReader, RuntimeDep
from service.api.filtering import Moment
from service.audit.case import case_jsonld
from service.audit.formats import csv_rows, jsonl_lines
from service.errors import InvalidInput
from service.evidence.trails import EntryFilter, audit_trail

router = APIRouter(prefix="/v1/custody", tags=["custody"])


@router.get("/export", response_class=StreamingResponse)
async def export_audit_log(
    runtime: RuntimeDep,
    principal: CustodyReader,
    format: Annotated[Literal["jsonl", "csv", "case"], Query()] = "jsonl",
    since: Annotated[Moment | None, Query(alias="from")] = None,
    until: Annotated[Moment | None, Query(alias="to")] = None,
    incident: Annotated[str | None, Query(max_length=36)] = None,
    evidence: Annotated[str | None, Query(max_length=36)] = None,
) -> StreamingResponse:
    """The organisation's custody entries (optionally one item's, in a time range)."""
    if incident and evidence:
        raise InvalidInput("give incident or evidence, not both")
    subject = f"incident:{incident}" if incident else f"evidence:{evidence}" if evidence else None
    wanted = EntryFilter(since=since, until=until, subject=subject)
    checkpoint, entries = await run_in_threadpool(audit_trail, runtime, principal, wanted)
    if format == "case":
        document = case_jsonld(runtime, principal, checkpoint, entries)
        return StreamingResponse(document, media_type="application/ld+json")
    people = await run_in_threadpool(people_of, runtime, principal.organisation_id)
    if format == "csv":
        rows = csv_rows(checkpoint, entries, people)
        return StreamingResponse(rows, media_type="text/csv; charset=utf-8")
    lines = jsonl_lines(checkpoint, entries, people)
    return StreamingResponse(lines, media_type="application/jsonl")
