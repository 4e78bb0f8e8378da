"""Every request gets an id, one access-log line and its metrics; a crash gets a 500.

The id is the client's X-Request-ID when it is a short printable token (a proxy's or a
field uploader's, so one upload can be followed across systems), otherwise a new one.
It is bound to every log line written while the request runs and returned in the
answer's X-Request-ID. The access line and the metrics name the route's template
(/v1/evidence/{evidence_id}), never the URL: bounded, and no search words in the logs.
"""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass

import structlog
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.problems import problem
from service.errors import VerificationError
from service.metrics import HTTP_DURATION, HTTP_REQUESTS, INTEGRITY_FAILURES

REQUEST_ID_HEADER = "X-Request-ID"
# Printable ASCII without spaces, as most proxies generate (a UUID, 32 hex digits).
_VALID_REQUEST_ID = re.compile(r"[!-~]{1,128}")
_UNMATCHED = "unmatched"  # no route: one label for every unknown path

_log = structlog.get_logger("locker")
_access = structlog.get_logger("locker.access")


def request_id_of(scope: Scope) -> str:
    """The client's X-Request-ID if it is a short printable token, else a new one."""
    for name, value in scope.get("headers", []):
        if name == b"x-request-id":
            text = bytes(value).decode("latin-1")
            if _VALID_REQUEST_ID.fullmatch(text):
                return text
    return uuid.uuid4().hex


def unexpected(exc: BaseException) -> JSONResponse:
    """Log an error nobody anticipated, with its traceback; a one-line 500 for the client."""
    _log.error("unexpected error", kind=type(exc).__name__, exc_info=exc)
    return problem(500, "internal error; the request did not complete (details in the log)")


def count_integrity_failure(exc: BaseException) -> None:
    """Count `exc` (or the error it wraps) if it is a failed integrity check."""
    for error in (exc, exc.__cause__):
        if isinstance(error, VerificationError):
            INTEGRITY_FAILURES.labels(type(error).__name__).inc()
            return


@dataclass(slots=True)
class _Exchange:
    """What was answered so far: the status, once the response has started."""

    request_id: str
    status: int | None = None

    def sending(self, send: Send) -> Send:
        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.status = message["status"]
                header = (REQUEST_ID_HEADER.lower().encode(), self.request_id.encode())
                message["headers"] = [*message.get("headers", []), header]
            await send(message)

        return send_with_id


class Observed:
    """ASGI middleware, outside all others but NamesTusVersion: request id, access log,
    metrics, the 500 answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        exchange = _Exchange(request_id=request_id_of(scope))
        bound = structlog.contextvars.bind_contextvars(request_id=exchange.request_id)
        started = time.perf_counter()
        failure: str | None = None
        try:
            await self.app(scope, receive, exchange.sending(send))
        except Exception as exc:
            count_integrity_failure(exc)
            failure = type(exc).__name__
            if exchange.status is not None:
                _log.error("response broken off", kind=failure, exc_info=exc)
                raise  # the server closes the connection: the client sees it incomplete
            await unexpected(exc)(scope, receive, exchange.sending(send))
        finally:
            _record(scope, exchange, time.perf_counter() - started, failure)
            structlog.contextvars.reset_contextvars(**bound)


def _record(scope: Scope, exchange: _Exchange, seconds: float, failure: str | None) -> None:
    method = scope["method"]
    route = getattr(scope.get("route"), "path", _UNMATCHED)
    status = exchange.status or 500
    HTTP_REQUESTS.labels(method, route, str(status)).inc()
    HTTP_DURATION.labels(method, route).observe(seconds)
    client = scope.get("client")
    _access.info(
        "request",
        method=method,
        route=route,
        status=status,
        duration_ms=round(seconds * 1000, 3),
        client=client[0] if client else None,
        **({"error": failure} if failure else {}),
    )
