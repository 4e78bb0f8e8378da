"""The tus 1.0 headers /v1/uploads reads: Upload-Metadata and Upload-Checksum."""

from __future__ import annotations

import base64
import binascii

from service.errors import BadRequest, InvalidInput

TUS_VERSION = "1.0.0"
TUS_EXTENSIONS = "creation,creation-with-upload,termination,expiration,checksum"
CHECKSUM_ALGORITHMS = "sha256"
_METADATA_KEYS = frozenset({"filename", "metadata", "sha256"})
_MAX_METADATA_HEADER = 96 * 1024


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
