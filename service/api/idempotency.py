"""The Idempotency-Key header on every POST that creates something, implemented once.

A creating route takes it in two lines: its router is built with
`route_class=IdempotentRoute`, and its handler takes `_: Idempotency` after the
principal (so the key is looked at only once the caller is authorised). The route class
fingerprints the body as it streams and keeps a successful answer; the dependency,
which knows the caller, answers a repeat or claims the key (service.accounts.idempotency).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

import structlog
from fastapi import Depends, Header, HTTPException, Request, Response
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool
from starlette.types import Message, Receive

from service.accounts.idempotency import (
    Answer,
    Claim,
    Fingerprint,
    answered,
    begin,
    finish,
    release,
    stored_answer,
    valid_key,
)
from service.api.deps import Authenticated, RuntimeDep
from service.api.multipart import boundary_of
from service.errors import InvalidInput, NotYetInLog, describe

_log = structlog.get_logger("locker.idempotency")

_HEADER = "idempotency-key"
# Creating answers are small JSON documents; a larger one is answered but not kept.
_MAX_ANSWER = 1024 * 1024


class _Replay(Exception):
    def __init__(self, answer: Answer) -> None:
        self.answer = answer


class _Body:
    """The request's `receive`, fingerprinting the body on its way to the route."""

    def __init__(self, receive: Receive, fingerprint: Fingerprint) -> None:
        self._receive = receive
        self.fingerprint = fingerprint
        self.ended = False
        self.claim: Claim | None = None

    async def __call__(self) -> Message:
        message = await self._receive()
        if message["type"] == "http.request":
            self.fingerprint.update(message.get("body", b""))
            self.ended = self.ended or not message.get("more_body", False)
        return message

    async def drain(self) -> str:
        """Read what the route left of the body; the fingerprint of all of it."""
        while not self.ended:
            if (await self())["type"] != "http.request":
                raise InvalidInput("the request body ended early")
        return self.fingerprint.hexdigest()


# Headers that say what a request creates, beside its body (a tus creation's length and
# metadata): the same key with other values is another request.
_DESCRIBING_HEADERS = ("upload-length", "upload-metadata")


def _fingerprint(request: Request) -> Fingerprint:
    content_type = request.headers.get("content-type", "")
    boundary = boundary_of(content_type) if content_type.startswith("multipart/") else None
    described = "".join(
        f"\n{name}: {request.headers[name]}"
        for name in _DESCRIBING_HEADERS
        if name in request.headers
    )
    return Fingerprint(request.method, request.url.path + described, boundary=boundary)


class IdempotentRoute(APIRoute):
    """A route whose POSTs honour Idempotency-Key (with the `Idempotency` dependency)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            if request.method != "POST" or _HEADER not in request.headers:
                return await handler(request)
            body = _Body(request.receive, _fingerprint(request))
            request = Request(request.scope, body)
            request.state.idempotency = body
            try:
                response = await handler(request)
            except _Replay as replay:
                return _replayed(replay.answer)
            except NotYetInLog:
                # What the request created is committed: the key stays claimed, so a
                # repeat gets 409 instead of creating it twice.
                raise
            except BaseException:
                await _release(request, body)
                raise
            await _keep(request, body, response)
            return response

        return route


async def _keep(request: Request, body: _Body, response: Response) -> None:
    """Keep a success for the key's repeats; release the key after a failure."""
    claim = body.claim
    if claim is None:
        return
    content = getattr(response, "body", None)
    if not 200 <= response.status_code < 300 or not isinstance(content, bytes):
        await _release(request, body)
        return
    if len(content) > _MAX_ANSWER:
        _log.warning("answer too large to keep for its Idempotency-Key", size=len(content))
        await _release(request, body)
        return
    answer = Answer(
        status=response.status_code,
        body=content,
        media_type=response.headers.get("content-type"),
        location=response.headers.get("location"),
    )
    try:
        fingerprint = await body.drain()
        await run_in_threadpool(finish, request.app.state.runtime, claim, fingerprint, answer)
    except Exception as exc:
        # The record is made and the client gets its answer; a repeat within the claim's
        # hour is told the key is in use rather than given this answer.
        _log.error("answer not kept for its Idempotency-Key", error=describe(exc))


async def _release(request: Request, body: _Body) -> None:
    if body.claim is not None:
        await run_in_threadpool(release, request.app.state.runtime, body.claim)


def _replayed(answer: Answer) -> Response:
    headers = {"Idempotent-Replayed": "true"}
    if answer.location is not None:
        headers["Location"] = answer.location
    return Response(
        answer.body, status_code=answer.status, media_type=answer.media_type, headers=headers
    )


async def _idempotency(
    request: Request,
    runtime: RuntimeDep,
    principal: Authenticated,
    key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            description=(
                "1–255 printable ASCII characters, best a random UUID. Sent again with the"
                " same body within 24 hours, the request gets the first answer and creates"
                " nothing; with another body, 422; while the first is still running, 409."
            ),
        ),
    ] = None,
) -> None:
    """Answer a repeat from the stored answer, or claim the key for this request."""
    if key is None:
        return
    if not valid_key(key):
        raise HTTPException(400, "Idempotency-Key must be 1–255 printable ASCII characters")
    body: _Body | None = getattr(request.state, "idempotency", None)
    if body is None:
        raise RuntimeError(f"{request.url.path}: Idempotency needs route_class=IdempotentRoute")
    claim = Claim.of(principal.user_id, key)
    # A streamed body (an upload) is unread yet: it is fingerprinted as the route reads
    # it; a repeat is read to its end here, in bounded memory, to compare it.
    if body.ended or await run_in_threadpool(answered, runtime, claim):
        fingerprint = await body.drain()
        answer = await run_in_threadpool(stored_answer, runtime, claim, fingerprint)
        if answer is not None:
            raise _Replay(answer)
        await run_in_threadpool(begin, runtime, claim, fingerprint)
    else:
        await run_in_threadpool(begin, runtime, claim, None)
    body.claim = claim


Idempotency = Annotated[None, Depends(_idempotency)]
