"""Streaming multipart/form-data: request chunks in, form events out, nothing spooled.

Starlette's form parser spools files to temporary files (a second pass over every
byte); evidence must be hashed and stored in a single pass, so we parse the stream
ourselves with python-multipart's push parser.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from service.errors import IdleTimeout, InvalidInput
from service.evidence.intake import FormEvent, PartData, PartEnd, PartStart

_MAX_BOUNDARY = 70  # RFC 2046 §5.1.1

# The upload's body, for the OpenAPI document (the route reads the stream itself, so
# FastAPI cannot infer it): Swagger UI shows a file picker and the two optional parts.
UPLOAD_FORM_OPENAPI: dict[str, object] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {
                            "type": "string",
                            "format": "binary",
                            "description": "The evidence file, with its filename.",
                        },
                        "metadata": {
                            "type": "string",
                            "description": "A JSON object: what the collector asserts "
                            "(title, description, source_url, collector, captured_at, "
                            "location, tags…), incident_id and restricted.",
                        },
                        "sha256": {
                            "type": "string",
                            "pattern": "^[0-9a-f]{64}$",
                            "description": "The digest the collector computed; the upload "
                            "is refused if the bytes do not match.",
                        },
                    },
                },
                "encoding": {"metadata": {"contentType": "application/json"}},
            }
        },
    }
}
# One parameter of a Content-Disposition: name=token or name="quoted \"string\"".
_PARAMETER = re.compile(r';\s*([^\s=;]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)')


def boundary_of(content_type: str | None) -> bytes:
    """The multipart boundary of a Content-Type header, or InvalidInput."""
    kind, params = parse_options_header(content_type or "")
    boundary = params.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary:
        raise InvalidInput("body must be multipart/form-data with a boundary")
    if len(boundary) > _MAX_BOUNDARY:
        raise InvalidInput(f"multipart boundary is longer than {_MAX_BOUNDARY} characters")
    return boundary


def _part_start(headers: dict[str, bytes]) -> PartStart:
    try:
        disposition = headers.get("content-disposition", b"").decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput("multipart: Content-Disposition is not valid UTF-8") from None
    params = _disposition_parameters(disposition)
    name = params.get("name")
    if not name:
        raise InvalidInput("multipart: a part has no name")
    return PartStart(name=name, filename=params.get("filename"))


def _disposition_parameters(disposition: str) -> dict[str, str]:
    """The parameters of a form-data Content-Disposition, values exactly as sent.

    Quoted values keep every character (spaces included) but their backslash escapes;
    RFC 7578 §4.2 forbids the RFC 2231 `filename*` form in form data, and guessing a
    charset could change the name, so it is refused rather than decoded.
    """
    params: dict[str, str] = {}
    for match in _PARAMETER.finditer(disposition):
        key, value = match.group(1).lower(), match.group(2)
        if key.endswith("*"):
            raise InvalidInput(
                f'multipart: {key} is not accepted in form data; send {key[:-1]}="…" in UTF-8'
            )
        params.setdefault(key, _unquoted(value))
    return params


def _unquoted(value: str) -> str:
    if not value.startswith('"'):
        return value.strip()
    if len(value) < 2 or not value.endswith('"'):
        raise InvalidInput("multipart: a quoted Content-Disposition value is not closed")
    return re.sub(r"\\(.)", r"\1", value[1:-1])


class _Collector:
    """Callbacks that turn parser events into FormEvents for the current chunk."""

    def __init__(self) -> None:
        self.events: list[FormEvent] = []
        self._headers: dict[str, bytes] = {}
        self._field = bytearray()
        self._value = bytearray()
        self.finished = False

    def on_part_begin(self) -> None:
        self._headers = {}

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def on_header_end(self) -> None:
        self._headers[self._field.decode("latin-1").lower()] = bytes(self._value)
        self._field.clear()
        self._value.clear()

    def on_headers_finished(self) -> None:
        self.events.append(_part_start(self._headers))

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if end > start:
            self.events.append(PartData(data[start:end]))

    def on_part_end(self) -> None:
        self.events.append(PartEnd())

    def on_end(self) -> None:
        self.finished = True


async def idle_limited(chunks: AsyncIterator[bytes], seconds: float) -> AsyncIterator[bytes]:
    """The request's chunks, ended with IdleTimeout (408) when none arrives for `seconds`.

    A slow connection is fine; a silent one would hold its upload (and its pending
    intent) open for ever, as the server has no body-read timeout of its own.
    """
    iterator = aiter(chunks)
    while True:
        try:
            chunk = await asyncio.wait_for(anext(iterator), seconds)
        except StopAsyncIteration:
            return
        except TimeoutError:
            raise IdleTimeout(f"no data for {seconds:g} s: upload abandoned") from None
        yield chunk


async def form_events(chunks: AsyncIterator[bytes], boundary: bytes) -> AsyncIterator[FormEvent]:
    """Parse a multipart body as it arrives, yielding events in order."""
    collector = _Collector()
    try:
        parser = MultipartParser(boundary, callbacks=_bound(collector))  # type: ignore[arg-type]
    except MultipartParseError as exc:
        raise InvalidInput(f"malformed multipart body: {exc}") from None
    async for chunk in chunks:
        try:
            parser.write(chunk)
        except MultipartParseError as exc:
            raise InvalidInput(f"malformed multipart body: {exc}") from None
        events, collector.events = collector.events, []
        for event in events:
            yield event
    if not collector.finished:
        raise InvalidInput("malformed multipart body: it ends before the closing boundary")


def _bound(collector: _Collector) -> dict[str, object]:
    names = (
        "on_part_begin",
        "on_header_field",
        "on_header_value",
        "on_header_end",
        "on_headers_finished",
        "on_part_data",
        "on_part_end",
        "on_end",
    )
    return {name: getattr(collector, name) for name in names}
