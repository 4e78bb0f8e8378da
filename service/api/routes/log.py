"""/log: the log as C2SP tlog-tiles — its signed checkpoint and hash tiles, public.

Anyone may read them: a tile holds only hashes, and with the verifier key they let a
partner, a journalist or a court's expert check inclusion and consistency without an
account and without trusting this server. Leaf contents (entry bundles) are not public.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Response
from fastapi.responses import PlainTextResponse
from starlette.concurrency import run_in_threadpool

from service.api.contract import problem_responses
from service.api.deps import Public, RuntimeDep
from service.core.tiles import TileId
from service.custody.tiles import read_tile
from service.errors import FormatError, NotFound

router = APIRouter(prefix="/log", tags=["log"], dependencies=[Depends(Public())])
_NOTE = "text/plain; charset=utf-8"
# A tile never changes once it exists (c2sp.org/tlog-tiles): cache it for a year.
_IMMUTABLE = "public, max-age=31536000, immutable"


@router.get("/checkpoint", response_class=PlainTextResponse)
async def get_log_checkpoint(runtime: RuntimeDep) -> PlainTextResponse:
    """The latest checkpoint, a C2SP signed note over every committed entry."""
    signed = await run_in_threadpool(runtime.log.latest_checkpoint, runtime.database)
    return PlainTextResponse(signed.note, media_type=_NOTE, headers={"Cache-Control": "no-cache"})


@router.get(
    "/tile/{path:path}",
    response_class=Response,
    responses={200: {"content": {"application/octet-stream": {}}}, **problem_responses(400)},
)
async def get_tile(runtime: RuntimeDep, path: str) -> Response:
    """A hash tile, `tile/<L>/<N>[.p/<W>]`: 32-byte hashes at tree height 8·L."""
    if path.startswith("entries/"):
        raise NotFound("entry bundles are not public: read entries through /v1/custody")
    try:
        tile = TileId.from_path(f"tile/{path}")
    except FormatError as exc:
        # A malformed path is the request's fault, not a missing tile: 400 (tlog-tiles).
        raise HTTPException(status_code=400, detail=exc.diagnostics()) from None

    def read() -> bytes:
        with runtime.database.session() as session:
            return read_tile(session, tile)

    body = await run_in_threadpool(read)
    return Response(
        body, media_type="application/octet-stream", headers={"Cache-Control": _IMMUTABLE}
    )
