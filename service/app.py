"""The FastAPI application: routers, lifespan wiring and the one error handler."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolExhausted
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.routing import Match

from service.accounts.access import record_denial
from service.accounts.throttling import FailureThrottle
from service.api.contract import api_routes, openapi_document
from service.api.deps import Public
from service.api.input_guard import RefuseNul
from service.api.metrics import exposition, state_registry
from service.api.observability import Observed, count_integrity_failure, unexpected
from service.api.problems import problem
from service.api.routes import (
    access,
    audit,
    custody,
    evidence,
    exports,
    incidents,
    keys,
    log,
    members,
    notes,
    search,
    uploads,
)
from service.api.tus import TUS_VERSION, NamesTusVersion
from service.errors import (
    BadRequest,
    ChecksumMismatch,
    ConfigurationError,
    Conflict,
    Error,
    Forbidden,
    Gone,
    Hidden,
    IdleTimeout,
    InvalidInput,
    NotFound,
    PreconditionFailed,
    StorageError,
    Throttled,
    TooLarge,
    Unauthenticated,
    Unavailable,
    UnsupportedMediaType,
    VerificationError,
    validation_message,
)
from service.evidence.pipe import sized_executor
from service.jobs.queue import JobQueue, open_queue
from service.jobs.worker import run_in_process, run_worker
from service.logs import configure_logging
from service.operations.readiness import database_failure, unavailable
from service.runtime import Runtime, open_runtime
from service.settings import Settings

_log = structlog.get_logger("locker")

# Every resource's router; the authorisation tests walk these.
ROUTERS = (
    evidence.router,
    incidents.router,
    custody.router,
    members.router,
    keys.router,
    access.router,
    exports.router,
    audit.router,
    notes.router,
    search.router,
    log.router,
    uploads.router,
)

_STATUS: list[tuple[type[Error], int]] = [
    (InvalidInput, 422),
    (Conflict, 409),
    (NotFound, 404),
    (Unauthenticated, 401),
    (Forbidden, 403),
    (Throttled, 429),
    (TooLarge, 413),
    (IdleTimeout, 408),
    (BadRequest, 400),
    (Gone, 410),
    (PreconditionFailed, 412),
    (UnsupportedMediaType, 415),
    (ChecksumMismatch, 460),  # tus 1.0 checksum extension
    (VerificationError, 500),
    (StorageError, 503),
    (Unavailable, 503),
    (ConfigurationError, 500),
]


async def _on_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, Error)
    status = next((code for cls, code in _STATUS if isinstance(exc, cls)), 500)
    if status >= 500:
        _log.error("request failed", error=exc.diagnostics(), kind=type(exc).__name__)
    principal = getattr(request.state, "principal", None)
    if isinstance(exc, Hidden | Forbidden) and principal is not None:
        await run_in_threadpool(record_denial, request.app.state.runtime, principal, exc)
    count_integrity_failure(exc)
    headers: dict[str, str] | None = None
    if isinstance(exc, Unauthenticated):
        headers = {"WWW-Authenticate": "Bearer"}
    elif isinstance(exc, Throttled | Unavailable):
        headers = {"Retry-After": str(exc.retry_after)}
    elif isinstance(exc, StorageError):
        headers = {"Retry-After": str(_RETRY_AFTER)}
    elif isinstance(exc, PreconditionFailed):
        headers = {"Tus-Version": TUS_VERSION}
    return problem(status, exc.diagnostics(), headers)


async def _on_validation(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return problem(422, validation_message(exc.errors()))


async def _on_http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        # Starlette names only the first route that matched the path; a path served by
        # several routes (GET and POST /v1/evidence) allows the methods of them all.
        headers["Allow"] = ", ".join(_allowed_methods(request))
    return problem(exc.status_code, str(exc.detail), headers or None)


def _allowed_methods(request: Request) -> list[str]:
    methods: set[str] = set()
    for route in api_routes(request.app):
        match, _ = route.matches(request.scope)
        if match is not Match.NONE:
            methods.update(route.methods or ())
    return sorted(methods)


async def _on_disconnect(_request: Request, _exc: Exception) -> JSONResponse:
    # Nobody is listening any more; the upload was abandoned and recorded as such.
    return problem(400, "client disconnected before the upload finished")


async def _on_race(_request: Request, exc: Exception) -> JSONResponse:
    # The database refused a write that a concurrent request made first; this
    # request's transaction was rolled back whole.
    assert isinstance(exc, IntegrityError)
    _log.warning("concurrent write refused", error=str(exc.orig))
    return problem(409, "a concurrent request changed the same record first; try again")


# Seconds a client should wait after a 503 (database or object store unavailable): long
# enough for a restart or failover to finish, short enough that a field uploader does
# not give up.
_RETRY_AFTER = 10


async def _on_database(request: Request, exc: Exception) -> JSONResponse:
    # The server could not be reached, dropped the connection or is out of space
    # (SQLite: "database or disk is full"): not this request's fault; worth retrying.
    assert isinstance(exc, DBAPIError)
    if not (isinstance(exc, OperationalError | InterfaceError) or exc.connection_invalidated):
        return unexpected(exc)
    _log.error("database unavailable", error=database_failure(exc))
    return _retry_later("database unavailable: try again later")


async def _on_pool_exhausted(request: Request, exc: Exception) -> JSONResponse:
    # Every connection of this process's pool stayed in use for the pool's whole wait:
    # an overloaded server, not this request's fault.
    _log.error("database connections exhausted", error=str(exc).splitlines()[0])
    return _retry_later("the server is too busy to reach its database: try again later")


def _retry_later(detail: str) -> JSONResponse:
    return problem(503, detail, {"Retry-After": str(_RETRY_AFTER)})


async def _run_jobs(runtime: Runtime, queue: JobQueue) -> None:
    """This process's share of the jobs: all of them on SQLite; on PostgreSQL a worker
    beside the others, unless LOCKER_JOBS_IN_PROCESS leaves them to `locker worker`."""
    if runtime.database.engine.dialect.name != "postgresql":
        await run_in_process(runtime, queue)
    elif runtime.settings.jobs_in_process:
        await run_worker(runtime, queue)


def _handle_errors(app: FastAPI) -> None:
    """Every error answers a problem document; see `_STATUS` for ours."""
    app.add_exception_handler(Error, _on_error)
    app.add_exception_handler(RequestValidationError, _on_validation)
    app.add_exception_handler(HTTPException, _on_http)
    app.add_exception_handler(ClientDisconnect, _on_disconnect)
    app.add_exception_handler(IntegrityError, _on_race)
    app.add_exception_handler(DBAPIError, _on_database)
    app.add_exception_handler(PoolExhausted, _on_pool_exhausted)
    # Any other exception: service.api.observability answers 500 inside the request's log
    # context (an exception handler here would run outside it).


def create_app(settings: Settings | None = None, *, runtime: Runtime | None = None) -> FastAPI:
    """The locker's HTTP application; opens its own runtime unless one is given."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Each upload holds a worker thread while it streams; the default executor's
        # min(32, cpus + 4) would let a few slow uploads starve short database calls.
        asyncio.get_running_loop().set_default_executor(sized_executor())
        own = runtime is None
        app.state.runtime = runtime or await run_in_threadpool(open_runtime, settings or Settings())
        app.state.jobs = await run_in_threadpool(open_queue, app.state.runtime)
        app.state.metrics = state_registry(app.state.runtime, app.state.jobs)
        jobs = asyncio.create_task(_run_jobs(app.state.runtime, app.state.jobs))
        try:
            yield
        finally:
            jobs.cancel()
            await asyncio.gather(jobs, return_exceptions=True)
            await run_in_threadpool(app.state.jobs.close)
            if own:
                app.state.runtime.close()

    configure_logging()
    app = FastAPI(title="Evidence locker", version="0.1.0", lifespan=lifespan)
    app.add_middleware(RefuseNul)
    app.add_middleware(Observed)  # it sees every answer, even RefuseNul's
    app.add_middleware(NamesTusVersion)  # outermost: even Observed's 500 names tus
    if runtime is not None:
        app.state.runtime = runtime
    app.state.throttle = FailureThrottle()
    for router in ROUTERS:
        app.include_router(router)
    _handle_errors(app)
    app.openapi = lambda: openapi_document(app)  # type: ignore[method-assign]

    @app.get("/healthz", include_in_schema=False, dependencies=[Depends(Public())])
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False, dependencies=[Depends(Public())])
    async def readyz(request: Request) -> JSONResponse:
        # Readiness, unlike liveness: can this process reach its database and store?
        states = await unavailable(request.app.state.runtime)
        if all(state == "ok" for state in states.values()):
            return JSONResponse({"status": "ready"})
        return JSONResponse({"status": "unavailable", **states}, status_code=503)

    @app.get("/metrics", include_in_schema=False, dependencies=[Depends(Public())])
    def metrics(request: Request) -> PlainTextResponse:
        # Scraped in a worker thread: the state series query the database.
        body = exposition(request.app.state.metrics)
        return PlainTextResponse(body, media_type=CONTENT_TYPE_LATEST)

    return app
