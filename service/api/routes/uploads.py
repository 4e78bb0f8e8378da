"""/v1/uploads: resumable uploads, tus 1.0 (core, creation, creation-with-upload,
termination, expiration, checksum with sha256). The protocol's rules live in
`service.evidence.resumable`; this router reads and writes its headers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Request, Response, status
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from service.api.contract import problem_responses
from service.api.deps import EvidenceUploader, JobsDep, Public, RuntimeDep
from service.api.idempotency import Idempotency, IdempotentRoute
from service.api.multipart import idle_limited
from service.api.tus import (
    CHECKSUM_ALGORITHMS,
    TUS_EXTENSIONS,
    TUS_VERSION,
    UPLOADS_PATH,
    parse_checksum,
    parse_upload_metadata,
)
from service.db.models import ResumableUpload
from service.errors import (
    IdleTimeout,
    InvalidInput,
    PreconditionFailed,
    UnsupportedMediaType,
)
from service.evidence.extraction import wants_analysis
from service.evidence.resumable import (
    Appended,
    PatchBody,
    append_chunk,
    create_upload,
    settled_state,
    terminate_upload,
)
from service.jobs.work import ANALYSE
from service.runtime import Runtime

_CHUNK_TYPE = "application/offset+octet-stream"


def _tus_resumable(
    _: EvidenceUploader, tus_resumable: Annotated[str | None, Header()] = None
) -> None:
    """tus 1.0: every request but OPTIONS names the protocol version it speaks (looked at
    once the caller is known: a stranger learns nothing from a 412)."""
    if tus_resumable != TUS_VERSION:
        raise PreconditionFailed(f"Tus-Resumable must be {TUS_VERSION}, got {tus_resumable!r}")


router = APIRouter(prefix=UPLOADS_PATH, tags=["uploads"], route_class=IdempotentRoute)
_TusRequest = Depends(_tus_resumable)


def _headers(upload: ResumableUpload) -> dict[str, str]:
    """What HEAD, PATCH and creation tell about an upload."""
    headers = {
        "Upload-Offset": str(upload.received),
        "Upload-Length": str(upload.length),
        "Cache-Control": "no-store",
    }
    if upload.status == "done" and upload.evidence_id is not None:
        headers["Locker-Evidence-Id"] = upload.evidence_id
        headers["Locker-Custody-Index"] = str(upload.custody_index)
        headers["Locker-Duplicate"] = "true" if upload.duplicate else "false"
    else:
        headers["Upload-Expires"] = _http_date(upload.expires_at)
    return headers


def _http_date(moment: datetime) -> str:
    return format_datetime(moment if moment.tzinfo else moment.replace(tzinfo=UTC), usegmt=True)


class _Body:
    """The request body, ended quietly if the client goes away or falls silent: tus keeps
    what arrived, and the next PATCH starts from there."""

    def __init__(self, request: Request, idle_seconds: float) -> None:
        self._request, self._idle = request, idle_seconds
        self.cut = False

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in idle_limited(self._request.stream(), self._idle):
                yield chunk
        except (ClientDisconnect, IdleTimeout):
            self.cut = True


def _check_chunk_type(content_type: str | None) -> None:
    if (content_type or "").split(";")[0].strip().lower() != _CHUNK_TYPE:
        raise UnsupportedMediaType(f"Content-Type must be {_CHUNK_TYPE}")


def _offset(text: str | None) -> int:
    if text is None or not text.isdigit() or len(text) > 19:
        raise InvalidInput("Upload-Offset: must be a non-negative integer")
    return int(text)


def _declared_length(text: str | None) -> int | None:
    """The body's Content-Length, if sent (a chunked body has none)."""
    return int(text) if text is not None and text.isdigit() and len(text) <= 19 else None


async def _append(
    request: Request, runtime: Runtime, principal: EvidenceUploader, upload_id: str, offset: int
) -> Appended:
    body = _Body(request, runtime.settings.upload_idle_timeout_seconds)
    return await append_chunk(
        runtime,
        principal,
        upload_id,
        offset=offset,
        body=PatchBody(
            chunks=body.chunks(),
            length=_declared_length(request.headers.get("content-length")),
            cut=lambda: body.cut,
        ),
        checksum=parse_checksum(request.headers.get("upload-checksum")),
    )


async def _analyse(jobs: JobsDep, appended: Appended) -> None:
    result = appended.result
    if result is not None and not result.duplicate and wants_analysis(result.evidence):
        await run_in_threadpool(jobs.defer, ANALYSE, evidence_id=result.evidence.id)


@router.options("", status_code=status.HTTP_204_NO_CONTENT, dependencies=[Depends(Public())])
def discover(runtime: RuntimeDep) -> Response:
    """What this server speaks of tus: version, extensions, checksum, maximum size."""
    return Response(
        status_code=status.HTTP_204_NO_CONTENT,
        headers={
            "Tus-Version": TUS_VERSION,
            "Tus-Extension": TUS_EXTENSIONS,
            "Tus-Checksum-Algorithm": CHECKSUM_ALGORITHMS,
            "Tus-Max-Size": str(runtime.settings.max_upload_bytes),
        },
    )


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    dependencies=[_TusRequest],
    responses=problem_responses(400, 410, 412, 413, 415, 460),
)
async def create(
    request: Request,
    runtime: RuntimeDep,
    principal: EvidenceUploader,
    _: Idempotency,
    jobs: JobsDep,
    upload_length: Annotated[str | None, Header()] = None,
) -> Response:
    """Creation: Upload-Length and Upload-Metadata (base64 filename, metadata JSON and
    sha256); with a body (creation-with-upload), its bytes are the first chunk."""
    if request.headers.get("upload-defer-length") is not None:
        raise InvalidInput("Upload-Defer-Length is not supported: send Upload-Length")
    length = _offset(upload_length.strip() if upload_length else None)
    upload = await run_in_threadpool(
        create_upload,
        runtime,
        principal,
        length=length,
        submitted=parse_upload_metadata(request.headers.get("upload-metadata")),
    )
    if request.headers.get("content-type") is not None:
        _check_chunk_type(request.headers.get("content-type"))
        appended = await _append(request, runtime, principal, upload.id, 0)
        await _analyse(jobs, appended)
        upload = appended.upload
    headers = _headers(upload) | {"Location": f"/v1/uploads/{upload.id}"}
    return Response(status_code=status.HTTP_201_CREATED, headers=headers)


@router.head("/{upload_id}", dependencies=[_TusRequest], responses=problem_responses(410, 412))
async def head_upload(upload_id: str, runtime: RuntimeDep, principal: EvidenceUploader) -> Response:
    """How many bytes the server holds (once a PATCH in flight has counted its own);
    once complete, the evidence it became."""
    upload = await settled_state(runtime, principal, upload_id)
    return Response(status_code=status.HTTP_200_OK, headers=_headers(upload))


@router.patch(
    "/{upload_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    dependencies=[_TusRequest],
    responses=problem_responses(400, 410, 412, 413, 415, 460),
)
async def append(
    upload_id: str,
    request: Request,
    runtime: RuntimeDep,
    principal: EvidenceUploader,
    jobs: JobsDep,
    upload_offset: Annotated[str | None, Header()] = None,
) -> Response:
    """Append the body at Upload-Offset; the last byte records the evidence."""
    _check_chunk_type(request.headers.get("content-type"))
    appended = await _append(request, runtime, principal, upload_id, _offset(upload_offset))
    await _analyse(jobs, appended)
    return Response(status_code=status.HTTP_204_NO_CONTENT, headers=_headers(appended.upload))


@router.delete(
    "/{upload_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    dependencies=[_TusRequest],
    responses=problem_responses(410, 412),
)
def terminate(upload_id: str, runtime: RuntimeDep, principal: EvidenceUploader) -> Response:
    """Termination: the upload and its stored parts are removed."""
    terminate_upload(runtime, principal, upload_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
