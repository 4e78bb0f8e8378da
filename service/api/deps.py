"""Dependencies shared by the routers: the runtime and the authorised caller.

Every route declares the one Permission it needs with `Allowed(...)`; the route-table
test fails for a route that declares none.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Literal

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from service.accounts.authentication import authenticate
from service.accounts.members import Principal
from service.accounts.permissions import Permission
from service.accounts.throttling import FailureThrottle, record_security_event
from service.errors import Unauthenticated
from service.jobs.queue import JobQueue
from service.runtime import Runtime


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def get_jobs(request: Request) -> JobQueue:
    jobs: JobQueue = request.app.state.jobs
    return jobs


JobsDep = Annotated[JobQueue, Depends(get_jobs)]


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


async def _authenticated(request: Request, runtime: RuntimeDep) -> Principal:
    throttle: FailureThrottle = request.app.state.throttle
    client = _client(request)
    throttle.check(client)
    try:
        principal = await run_in_threadpool(
            authenticate, runtime, request.headers.get("authorization")
        )
    except Unauthenticated as exc:
        throttle.failed(client)
        await run_in_threadpool(
            record_security_event,
            runtime,
            client=client,
            kind="authentication.failed",
            detail=f"{request.method} {request.url.path}: {exc.diagnostics()}",
        )
        raise
    request.state.principal = principal
    return principal


def Allowed(permission: Permission) -> Callable[..., Awaitable[Principal]]:
    """A dependency: the authenticated caller, whose role must hold `permission`."""

    async def dependency(
        request: Request, principal: Annotated[Principal, Depends(_authenticated)]
    ) -> Principal:
        # The route's template, not the URL: bounded in length, and it names what was asked.
        route = getattr(request.scope.get("route"), "path", request.url.path)
        principal.require(permission, subject=f"route:{request.method} {route}"[:80])
        return principal

    dependency.permission = permission  # type: ignore[attr-defined]
    return dependency


async def _public() -> None:
    """No credentials needed."""


def Public() -> Callable[[], Awaitable[None]]:
    """A dependency marking a route as open to anyone (it must say so)."""
    _public.permission = Permission.PUBLIC  # type: ignore[attr-defined]
    return _public


# One alias per permission, so a handler's signature says what it needs.
EvidenceUploader = Annotated[Principal, Depends(Allowed(Permission.EVIDENCE_UPLOAD))]
EvidenceReader = Annotated[Principal, Depends(Allowed(Permission.EVIDENCE_READ))]
EvidenceDescriber = Annotated[Principal, Depends(Allowed(Permission.EVIDENCE_DESCRIBE))]
Annotator = Annotated[Principal, Depends(Allowed(Permission.NOTE_WRITE))]
IncidentWriter = Annotated[Principal, Depends(Allowed(Permission.INCIDENT_WRITE))]
IncidentReader = Annotated[Principal, Depends(Allowed(Permission.INCIDENT_READ))]
CustodyReader = Annotated[Principal, Depends(Allowed(Permission.CUSTODY_READ))]
Restricter = Annotated[Principal, Depends(Allowed(Permission.RESTRICT))]
Granter = Annotated[Principal, Depends(Allowed(Permission.GRANT))]
MemberManager = Annotated[Principal, Depends(Allowed(Permission.MEMBERS))]
Exporter = Annotated[Principal, Depends(Allowed(Permission.EVIDENCE_CONTENT))]
KeyHolder = Annotated[Principal, Depends(Allowed(Permission.KEYS_OWN))]

# Routes shared by both kinds of item (/v1/evidence/{id}/…, /v1/incidents/{id}/…).
ItemPath = Literal["evidence", "incidents"]
ITEM_KIND: dict[str, str] = {"evidence": "evidence", "incidents": "incident"}
