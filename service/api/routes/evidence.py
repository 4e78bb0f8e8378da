"""/v1/evidence: upload, read, download, custody trail."""

from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, Request, status
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from service.api.deps import EvidenceReader, EvidenceUploader, RuntimeDep
from service.api.multipart import boundary_of, form_events
from service.api.schemas import (
    CustodyTrail,
    EntryPublic,
    EvidenceDetail,
    EvidencePublic,
    ProvenEntryPublic,
    SubmissionPublic,
    b64,
)
from service.core.digests import Digest
from service.errors import TooLarge
from service.intake import ingest
from service.reading import evidence_custody, get_evidence, open_content

router = APIRouter(prefix="/v1/evidence", tags=["evidence"])
# Room for the multipart framing and the small metadata parts around the file.
_FRAMING_ALLOWANCE = 1024 * 1024


@router.post("", status_code=status.HTTP_201_CREATED, response_model=EvidencePublic)
async def upload_evidence(
    request: Request,
    runtime: RuntimeDep,
    principal: EvidenceUploader,
) -> EvidencePublic:
    """Upload one file (part `file`), with optional `metadata` (JSON) and `sha256` parts."""
    limit = runtime.settings.max_upload_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit + _FRAMING_ALLOWANCE:
        raise TooLarge(f"body of {declared} bytes exceeds the upload limit of {limit} bytes")
    events = form_events(request.stream(), boundary_of(request.headers.get("content-type")))
    result = await ingest(runtime, principal, events)
    return EvidencePublic.of(result.evidence, result.submission, duplicate=result.duplicate)


@router.get("/{evidence_id}", response_model=EvidenceDetail)
def read_evidence(
    evidence_id: str,
    runtime: RuntimeDep,
    principal: EvidenceReader,
) -> EvidenceDetail:
    """The evidence record and every submission of its content."""
    view = get_evidence(runtime, principal, evidence_id)
    first = view.submissions[0]
    return EvidenceDetail(
        **EvidencePublic.of(view.evidence, first).model_dump(),
        ingest_index=view.evidence.ingest_index,
        submissions=[SubmissionPublic.of(s) for s in view.submissions],
    )


@router.get("/{evidence_id}/content", response_class=StreamingResponse)
async def download_evidence(
    evidence_id: str,
    runtime: RuntimeDep,
    principal: EvidenceReader,
) -> StreamingResponse:
    """The exact stored bytes, with their digest (RFC 9530 Repr-Digest)."""
    evidence, chunks = await run_in_threadpool(open_content, runtime, principal, evidence_id)
    view = await run_in_threadpool(get_evidence, runtime, principal, evidence_id)
    digest = Digest(algorithm="sha256", hex=evidence.sha256)
    filename = view.submissions[0].filename.replace("/", "_").replace("\\", "_")
    headers = {
        "Repr-Digest": f"sha-256=:{digest.b64}:",
        "Content-Length": str(evidence.size),
        "Content-Disposition": f"attachment; filename*=UTF-8''{quote(filename, safe='')}",
        "X-Content-Type-Options": "nosniff",
    }
    return StreamingResponse(chunks, media_type=evidence.media_type, headers=headers)


@router.get("/{evidence_id}/custody", response_model=CustodyTrail)
def read_evidence_custody(
    evidence_id: str,
    runtime: RuntimeDep,
    principal: EvidenceReader,
) -> CustodyTrail:
    """Every custody entry of the item, each with an inclusion proof to the checkpoint."""
    checkpoint, proven = evidence_custody(runtime, principal, evidence_id)
    return CustodyTrail(
        checkpoint=checkpoint.note,
        tree_size=checkpoint.size,
        entries=[
            ProvenEntryPublic(
                **EntryPublic.of(p.entry).model_dump(),
                inclusion_proof=[b64(h) for h in p.proof],
            )
            for p in proven
        ],
    )
