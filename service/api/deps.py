"""Dependencies shared by the routers: the runtime and the authorised caller.

Every route declares the one Permission it needs with `Allowed(...)`; the route-table
test fails for a route that declares none.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Literal

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from service.accounts.authentication import authenticate, presented_key_prefix
from service.accounts.members import Principal
from service.accounts.permissions import Permission
from service.accounts.throttling import FailureThrottle, record_security_event
from service.errors import Throttled, Unauthenticated
from service.jobs.queue import JobQueue
from service.metrics import AUTHENTICATION_FAILURES
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
    """The caller, if its credential is valid: checked before any throttle, so a valid
    key always authenticates; only failures are counted and throttled."""
    authorization = request.headers.get("authorization")
    try:
        principal = await run_in_threadpool(authenticate, runtime, authorization)
    except Unauthenticated as exc:
        AUTHENTICATION_FAILURES.inc()
        await _count_failure(request, runtime, authorization, exc)
        raise
    request.state.principal = principal
    return principal


# The caller, authenticated once per request (FastAPI caches the dependency): for
# dependencies that need to know who asks, beside the route's `Allowed(...)`.
Authenticated = Annotated[Principal, Depends(_authenticated)]


async def _count_failure(
    request: Request, runtime: Runtime, authorization: str | None, exc: Unauthenticated
) -> None:
    """Count a failed authentication; log it (once per client per window); maybe throttle."""
    throttle: FailureThrottle = request.app.state.throttle
    client = _client(request)
    verdict = throttle.failed(client=client, key_prefix=presented_key_prefix(authorization))
    if verdict.record:
        detail = f"{request.method} {request.url.path}: {exc.diagnostics()}"
        if verdict.earlier:
            detail += f" (and {verdict.earlier} more failure(s) in the previous window)"
        await run_in_threadpool(
            record_security_event,
            runtime,
            client=client,
            kind="authentication.failed",
            detail=detail,
        )
    if verdict.retry_after is not None:
        raise Throttled(
            "too many failed authentications; try later", retry_after=verdict.retry_after
        ) from None


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
