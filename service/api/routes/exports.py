"""/v1/exports: court-ready evidence bundles."""

from __future__ import annotations

from typing import Annotated

import structlog
from fastapi import APIRouter, Header, Response, status
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from service.api.deps import Exporter, JobsDep, RuntimeDep
from service.api.idempotency import Idempotency, IdempotentRoute
from service.api.problems import unsatisfiable
from service.api.schemas.exports import ExportCreate, ExportStatus
from service.api.streaming import download
from service.errors import RangeNotSatisfiable
from service.evidence.ranges import RangeRequest
from service.exports.bundles import get_export, open_export, request_export
from service.jobs.work import BUILD_EXPORT

_log = structlog.get_logger("locker.exports")

router = APIRouter(prefix="/v1/exports", tags=["exports"], route_class=IdempotentRoute)


@router.post("", status_code=status.HTTP_202_ACCEPTED, response_model=ExportStatus)
def post_export(
    body: ExportCreate,
    runtime: RuntimeDep,
    principal: Exporter,
    _: Idempotency,
    jobs: JobsDep,
) -> ExportStatus:
    """Request a bundle of an incident's evidence or of given items; built as a job."""
    export = request_export(
        runtime, principal, incident_id=body.incident_id, evidence_ids=body.evidence_ids
    )
    jobs.defer(BUILD_EXPORT, export_id=export.id)
    return ExportStatus.model_validate(export)


@router.get("/{export_id}", response_model=ExportStatus)
def read_export(export_id: str, runtime: RuntimeDep, principal: Exporter) -> ExportStatus:
    """The export's status: pending, retrying (with the last error), done or failed."""
    return ExportStatus.model_validate(get_export(runtime, principal, export_id))


@router.get(
    "/{export_id}/content",
    response_class=StreamingResponse,
    responses={206: {"description": "One byte range (Range, If-Range)"}, 416: {}},
)
async def download_export(
    export_id: str,
    runtime: RuntimeDep,
    principal: Exporter,
    range_header: Annotated[str | None, Header(alias="Range")] = None,
    if_range: Annotated[str | None, Header(alias="If-Range")] = None,
) -> Response:
    """The finished bundle (a zip), streamed, or one byte range of it; the download
    (not each range) is a custody event."""
    wanted = RangeRequest.from_headers(range_header, if_range)
    try:
        export, read = await run_in_threadpool(open_export, runtime, principal, export_id, wanted)
    except RangeNotSatisfiable as exc:
        return unsatisfiable(exc)
    return download(
        read,
        size=export.size or 0,
        sha256=export.sha256 or "",
        last_modified=export.finished_at or export.created_at,
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="export-{export.id}.zip"'},
    )
