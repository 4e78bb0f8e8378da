"""The tus 1.0 headers /v1/uploads reads (Upload-Metadata, Upload-Checksum) and the one
it writes on every answer (Tus-Resumable)."""

from __future__ import annotations

import base64
import binascii

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import BadRequest, InvalidInput

TUS_VERSION = "1.0.0"
TUS_EXTENSIONS = "creation,creation-with-upload,termination,expiration,checksum"
CHECKSUM_ALGORITHMS = "sha256"
_METADATA_KEYS = frozenset({"filename", "metadata", "sha256"})
_MAX_METADATA_HEADER = 96 * 1024
UPLOADS_PATH = "/v1/uploads"


class NamesTusVersion:
    """ASGI middleware: every answer under /v1/uploads carries Tus-Resumable, as tus 1.0
    requires of every response, errors too — whichever handler or middleware wrote it
    (a refused body, a lost database, an unexpected failure)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _is_uploads(scope.get("path", "")):
            await self.app(scope, receive, send)
            return

        async def send_naming_version(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)["Tus-Resumable"] = TUS_VERSION
            await send(message)

        await self.app(scope, receive, send_naming_version)


def _is_uploads(path: str) -> bool:
    return path == UPLOADS_PATH or path.startswith(UPLOADS_PATH + "/")


def parse_upload_metadata(header: str | None) -> dict[str, str]:
    """The Upload-Metadata header: comma-separated `key base64value` pairs (tus 1.0
    creation). Only filename, metadata and sha256 are known; a misspelt key is refused
    rather than ignored, so a declared digest is never silently skipped."""
    if not header or not header.strip():
        raise InvalidInput("Upload-Metadata: needs at least filename")
    if len(header) > _MAX_METADATA_HEADER:
        raise InvalidInput(f"Upload-Metadata: longer than {_MAX_METADATA_HEADER} characters")
    pairs: dict[str, str] = {}
    for item in header.split(","):
        key, _, encoded = item.strip().partition(" ")
        if key not in _METADATA_KEYS:
            raise InvalidInput(
                f"Upload-Metadata: unknown key {key[:64]!r}: expected filename, metadata or sha256"
            )
        if key in pairs:
            raise InvalidInput(f"Upload-Metadata: {key} given twice")
        pairs[key] = _decoded(key, encoded.strip())
    if "filename" not in pairs:
        raise InvalidInput("Upload-Metadata: needs filename")
    return pairs


def _decoded(key: str, encoded: str) -> str:
    try:
        return base64.b64decode(encoded, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        raise InvalidInput(f"Upload-Metadata: {key} is not base64 of UTF-8 text") from None


def parse_checksum(header: str | None) -> bytes | None:
    """The Upload-Checksum header (`sha256 <base64 digest>`), or None if absent."""
    if header is None:
        return None
    algorithm, _, encoded = header.strip().partition(" ")
    if algorithm.lower() != "sha256":
        raise BadRequest(f"Upload-Checksum: algorithm {algorithm[:32]!r} not supported; use sha256")
    try:
        digest = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        digest = b""
    if len(digest) != 32:
        raise InvalidInput("Upload-Checksum: not the base64 of a 32-byte SHA-256 digest")
    return digest
