"""/v1/evidence: upload, list, read, describe, download, custody trail."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Request, Response, status
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from service.api.contract import problem_responses
from service.api.deps import (
    EvidenceDescriber,
    EvidenceReader,
    EvidenceUploader,
    JobsDep,
    RuntimeDep,
)
from service.api.filtering import FilterParams, PagingParams
from service.api.idempotency import Idempotency, IdempotentRoute
from service.api.multipart import UPLOAD_FORM_OPENAPI, boundary_of, form_events, idle_limited
from service.api.problems import unsatisfiable
from service.api.schemas.custody import CustodyTrail, ProvenEntryPublic
from service.api.schemas.evidence import (
    DescriptionPublic,
    DescriptionUpdate,
    EvidenceDetail,
    EvidencePage,
    EvidencePublic,
    EvidenceSummary,
)
from service.api.streaming import download
from service.core.digests import Digest
from service.core.names import attachment_disposition
from service.errors import RangeNotSatisfiable, TooLarge
from service.evidence.descriptions import (
    describe,
    description_history,
    list_evidence,
    update_description,
)
from service.evidence.extraction import wants_analysis
from service.evidence.intake import ingest
from service.evidence.ranges import RangeRequest
from service.evidence.reading import get_evidence, open_content
from service.evidence.trails import evidence_custody
from service.jobs.work import ANALYSE

router = APIRouter(prefix="/v1/evidence", tags=["evidence"], route_class=IdempotentRoute)
# Room for the multipart framing and the small metadata parts around the file.
_FRAMING_ALLOWANCE = 1024 * 1024


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=EvidencePublic,
    responses=problem_responses(400, 408, 413),
    openapi_extra=UPLOAD_FORM_OPENAPI,
)
async def upload_evidence(
    request: Request,
    runtime: RuntimeDep,
    principal: EvidenceUploader,
    _: Idempotency,
    jobs: JobsDep,
) -> EvidencePublic:
    """Upload one file (part `file`), with optional `metadata` (JSON) and `sha256` parts."""
    limit = runtime.settings.max_upload_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit + _FRAMING_ALLOWANCE:
        raise TooLarge(f"body of {declared} bytes exceeds the upload limit of {limit} bytes")
    body = idle_limited(request.stream(), runtime.settings.upload_idle_timeout_seconds)
    events = form_events(body, boundary_of(request.headers.get("content-type")))
    result = await ingest(runtime, principal, events)
    if not result.duplicate and wants_analysis(result.evidence):
        await run_in_threadpool(jobs.defer, ANALYSE, evidence_id=result.evidence.id)
    return EvidencePublic.of(result.evidence, result.submission, duplicate=result.duplicate)


@router.get("", response_model=EvidencePage)
def list_items(
    runtime: RuntimeDep,
    principal: EvidenceReader,
    filters: FilterParams,
    paging: PagingParams,
) -> EvidencePage:
    """The organisation's items in log order, filtered; follow `next_cursor` for more."""
    page = list_evidence(runtime, principal, filters, paging)
    return EvidencePage(
        items=[EvidenceSummary.of(e, p) for e, p in page.items], next_cursor=page.next_cursor
    )


@router.get("/{evidence_id}", response_model=EvidenceDetail)
def read_evidence(
    evidence_id: str,
    runtime: RuntimeDep,
    principal: EvidenceReader,
) -> EvidenceDetail:
    """The evidence record, every submission, what the collector asserts and what the
    bytes say (kept apart), and the items that look the same."""
    view = get_evidence(runtime, principal, evidence_id)
    described = describe(runtime, principal, evidence_id)
    record = EvidencePublic.of(view.evidence, view.submissions[0])
    return EvidenceDetail.model_validate(
        record.model_dump()
        | {
            "ingest_index": view.evidence.ingest_index,
            "submissions": view.submissions,
            "description": described.latest,
            "analysis": described.analysis,
            "near_duplicates": described.near_duplicates,
            "quarantine": view.quarantine,
        }
    )


@router.patch("/{evidence_id}/metadata", response_model=DescriptionPublic)
def patch_metadata(
    evidence_id: str,
    body: DescriptionUpdate,
    runtime: RuntimeDep,
    principal: EvidenceDescriber,
) -> DescriptionPublic:
    """Record a new version of the asserted metadata; earlier versions stay readable."""
    version = update_description(
        runtime,
        principal,
        evidence_id,
        body.changes(),
        reason=body.reason,
        base_version=body.base_version,
    )
    return DescriptionPublic.model_validate(version)


@router.get("/{evidence_id}/history", response_model=list[DescriptionPublic])
def get_metadata_history(
    evidence_id: str,
    runtime: RuntimeDep,
    principal: EvidenceReader,
) -> list[DescriptionPublic]:
    """Every version of the asserted metadata, oldest first, each with its digest."""
    versions = description_history(runtime, principal, evidence_id)
    return [DescriptionPublic.model_validate(v) for v in versions]


@router.get(
    "/{evidence_id}/content",
    response_class=StreamingResponse,
    responses={206: {"description": "One byte range (Range, If-Range)"}, 416: {}},
)
async def download_evidence(
    evidence_id: str,
    runtime: RuntimeDep,
    principal: EvidenceReader,
    range_header: Annotated[str | None, Header(alias="Range")] = None,
    if_range: Annotated[str | None, Header(alias="If-Range")] = None,
) -> Response:
    """The exact stored bytes, with their digest (RFC 9530 Repr-Digest); one byte range
    if asked (206), the whole item if If-Range names another version."""
    wanted = RangeRequest.from_headers(range_header, if_range)
    try:
        evidence, read = await run_in_threadpool(
            open_content, runtime, principal, evidence_id, wanted
        )
    except RangeNotSatisfiable as exc:
        return unsatisfiable(exc)
    view = await run_in_threadpool(get_evidence, runtime, principal, evidence_id)
    digest = Digest(algorithm="sha256", hex=evidence.sha256)
    headers = {
        "Repr-Digest": f"sha-256=:{digest.b64}:",
        "Content-Disposition": attachment_disposition(view.submissions[0].filename),
        "X-Content-Type-Options": "nosniff",
    }
    return download(
        read,
        size=evidence.size,
        sha256=evidence.sha256,
        last_modified=evidence.received_at,
        media_type=evidence.media_type,
        headers=headers,
    )


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
        entries=[ProvenEntryPublic.model_validate(p) for p in proven],
    )
