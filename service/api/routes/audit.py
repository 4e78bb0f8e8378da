"""/v1/custody/export: the audit log, streamed, each entry with its inclusion proof."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from service.api.deps import CustodyReader, RuntimeDep
from service.api.filtering import Moment
from service.api.schemas import b64
from service.audit.case import case_jsonld
from service.core.entry import decode_entry
from service.db.models import SignedCheckpoint
from service.errors import InvalidInput
from service.evidence.reading import EntryFilter, ProvenEntry, audit_trail

router = APIRouter(prefix="/v1/custody", tags=["custody"])
_CSV_COLUMNS = [
    "index",
    "time",
    "organisation",
    "actor",
    "action",
    "subject",
    "sha256",
    "leaf_b64",
    "inclusion_proof",
]


def _jsonl(checkpoint: SignedCheckpoint, entries: Iterator[ProvenEntry]) -> Iterator[bytes]:
    for proven in entries:
        line = {
            "index": proven.entry.index,
            "leaf_b64": b64(proven.entry.leaf),
            "fields": decode_entry(proven.entry.leaf),
            "inclusion_proof": [b64(h) for h in proven.proof],
        }
        yield json.dumps(line, ensure_ascii=False).encode() + b"\n"
    closing = {"checkpoint": checkpoint.note, "tree_size": checkpoint.size}
    yield json.dumps(closing, ensure_ascii=False).encode() + b"\n"


def _csv(checkpoint: SignedCheckpoint, entries: Iterator[ProvenEntry]) -> Iterator[bytes]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(_CSV_COLUMNS)
    for proven in entries:
        fields = decode_entry(proven.entry.leaf)
        writer.writerow(
            [
                proven.entry.index,
                fields["time"],
                fields["organisation"],
                fields["actor"],
                fields["action"],
                fields["subject"],
                fields.get("sha256", ""),
                b64(proven.entry.leaf),
                " ".join(b64(h) for h in proven.proof),
            ]
        )
        yield buffer.getvalue().encode()
        buffer.seek(0)
        buffer.truncate()
    # The checkpoint the proofs lead to closes the file (its note, base64, one line).
    writer.writerow(["checkpoint", "", "", "", "", "", "", b64(checkpoint.note.encode()), ""])
    yield buffer.getvalue().encode()


@router.get("/export", response_class=StreamingResponse)
async def export_audit_log(  # noqa: PLR0913 (FastAPI: one parameter per query parameter)
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
    if format == "csv":
        return StreamingResponse(_csv(checkpoint, entries), media_type="text/csv; charset=utf-8")
    return StreamingResponse(_jsonl(checkpoint, entries), media_type="application/jsonl")
