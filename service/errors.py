"""One error hierarchy for the whole locker.

Every error knows how to describe itself (`diagnostics()`); the HTTP layer maps the
classes to status codes in one place and the CLI prints diagnostics in one place.
This module imports nothing from the project, so the pure core may use it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any


class Error(Exception):
    """Base of every error the locker raises on purpose."""

    def diagnostics(self) -> str:
        """A one-line, human-readable account of what went wrong."""
        return str(self) or type(self).__name__


def describe(exc: BaseException) -> str:
    """One line for any exception: ours say what went wrong, others name their class."""
    return exc.diagnostics() if isinstance(exc, Error) else f"{type(exc).__name__}: {exc}"


class ConfigurationError(Error):
    """A setting is missing, malformed or unsafe."""


class InvalidInput(Error):
    """The caller sent something we cannot accept (maps to 422)."""


class RangeNotSatisfiable(InvalidInput):
    """A byte range that selects no byte of the object (answered 416 with its size)."""

    def __init__(self, message: str, *, size: int) -> None:
        super().__init__(message)
        self.size = size


class Conflict(Error):
    """The change was made against a version that is no longer the latest (maps to 409)."""


NUL_REFUSED = "text must not contain NUL (U+0000) characters"
_NOT_AN_OBJECT = frozenset({"model_attributes_type", "dict_type", "model_type"})
_MAX_DETAIL = 300
# C0 and C1 controls, DEL, and the Unicode line and paragraph separators: none belongs in
# a name or a one-line message, and each would break a header or log line quoting it.
CONTROL_CHARACTERS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def one_line(text: str) -> str:
    """`text` as one bounded line: controls escaped, the tail cut if it is too long."""
    escaped = CONTROL_CHARACTERS.sub(lambda m: ascii(m.group())[1:-1], text)
    if len(escaped) <= _MAX_DETAIL:
        return escaped
    return escaped[: _MAX_DETAIL - 1] + "…"


def validation_message(errors: Sequence[Mapping[str, Any]], *, prefix: str = "") -> str:
    """One line from pydantic's errors: the first bad field, dotted, and what is wrong."""
    first = errors[0]
    if first.get("type") == "json_invalid":
        return f"body is not valid JSON: {first.get('ctx', {}).get('error', 'cannot parse')}"
    if tuple(first["loc"]) == ("body",) and first.get("type") in _NOT_AN_OBJECT:
        return "body must be a JSON object, sent as Content-Type: application/json"
    where = ".".join(str(p) for p in first["loc"] if p != "body")
    message = str(first["msg"]).removeprefix("Value error, ")
    where = f"{prefix}.{where}" if prefix and where else (prefix or where)
    return f"{where}: {message}" if where else message


class NotFound(Error):
    """No such item, or none the caller may see (maps to 404)."""


class Hidden(NotFound):
    """The item exists but the caller may not see it: answered exactly like NotFound,
    and recorded as an `access.denied` custody event of the item's organisation."""

    def __init__(self, message: str, *, subject: str, organisation_id: str) -> None:
        super().__init__(message)
        self.subject = subject
        self.organisation_id = organisation_id


class Unauthenticated(Error):
    """No credentials, or credentials we do not recognise (maps to 401)."""


class Forbidden(Error):
    """The caller is known but its role does not allow this (maps to 403; recorded)."""

    def __init__(self, message: str, *, subject: str) -> None:
        super().__init__(message)
        self.subject = subject


class Throttled(Error):
    """Too many failed authentications from one client (maps to 429)."""

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Unavailable(Error):
    """Not this request's fault and worth retrying after `retry_after` seconds (maps to 503)."""

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class NotYetInLog(Unavailable):
    """The request's records and log entry are committed, but the entry is not yet in
    the log's tree (no sequencer reached the database in time): 503, and whatever the
    request created stays created, at the index it was given."""


class TooLarge(Error):
    """The request body exceeds the configured limit (maps to 413)."""


class Gone(Error):
    """The resource existed but is no more: an expired or failed upload (maps to 410)."""


class ChecksumMismatch(Error):
    """A chunk does not match the checksum sent with it (maps to 460, tus checksum)."""


class BadRequest(Error):
    """A protocol header we cannot act on, where the protocol asks for 400 (tus checksum)."""


class PreconditionFailed(Error):
    """The client speaks a protocol version we do not (maps to 412)."""


class UnsupportedMediaType(Error):
    """The body's Content-Type is not the one the route takes (maps to 415)."""


class IdleTimeout(Error):
    """The client sent nothing for too long; its upload was abandoned (maps to 408)."""


class KeyUnusable(Error):
    """A verifier key file cannot be read or holds no verifier key (a usage error)."""


class StorageError(Error):
    """The object store failed or refused an operation."""


class ObjectMissing(StorageError):
    """The object (or the exact version) is not in the store."""


class VerificationError(Error):
    """An integrity check failed: something is not what it claims to be."""


class DigestMismatch(VerificationError):
    """Content does not hash to the digest on record."""

    def __init__(self, what: str, *, expected: str, actual: str) -> None:
        super().__init__(f"{what}: digest mismatch: expected {expected}, got {actual}")
        self.expected = expected
        self.actual = actual


class RootMismatch(VerificationError):
    """A proof leads to a different Merkle root than the one expected."""

    def __init__(self, *, expected_root: bytes, calculated_root: bytes) -> None:
        super().__init__(
            f"calculated root {calculated_root.hex()} does not match expected root "
            f"{expected_root.hex()}"
        )
        self.expected_root = expected_root
        self.calculated_root = calculated_root


class ProofError(VerificationError):
    """A proof is malformed: wrong length, index out of range, bad hash size."""


class SignatureError(VerificationError):
    """A signed note has no valid signature by the expected key."""


class FormatError(VerificationError):
    """Text or bytes that should follow a format (a note, a leaf) do not."""


class ObjectExists(StorageError):
    """The key already holds an object, and objects are never overwritten."""


class LockNotEnforced(StorageError):
    """The object store accepted a retention lock but does not enforce it."""
