"""Streaming multipart/form-data: request chunks in, form events out, nothing spooled.

Starlette's form parser spools files to temporary files (a second pass over every
byte); evidence must be hashed and stored in a single pass, so we parse the stream
ourselves with python-multipart's push parser.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from email.message import Message

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from service.errors import InvalidInput
from service.intake import FormEvent, PartData, PartEnd, PartStart


def boundary_of(content_type: str | None) -> bytes:
    """The multipart boundary of a Content-Type header, or InvalidInput."""
    kind, params = parse_options_header(content_type or "")
    boundary = params.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary:
        raise InvalidInput("body must be multipart/form-data with a boundary")
    return boundary


def _part_start(headers: dict[str, bytes]) -> PartStart:
    try:
        disposition = headers.get("content-disposition", b"").decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput("multipart: Content-Disposition is not valid UTF-8") from None
    message = Message()
    message["content-disposition"] = disposition
    name = message.get_param("name", header="content-disposition")
    if not isinstance(name, str) or not name:
        raise InvalidInput("multipart: a part has no name")
    return PartStart(name=name, filename=message.get_filename())


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


async def form_events(chunks: AsyncIterator[bytes], boundary: bytes) -> AsyncIterator[FormEvent]:
    """Parse a multipart body as it arrives, yielding events in order."""
    collector = _Collector()
    parser = MultipartParser(boundary, callbacks=_bound(collector))  # type: ignore[arg-type]
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
