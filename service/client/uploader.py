"""`locker upload`: send a file from the field and keep a receipt that proves it was logged.

The file is hashed on the investigator's machine first and its SHA-256 sent before
the bytes, so the server checks the whole journey end to end (a changed byte is a
422, nothing stored) and can write the bytes straight to their content-addressed
object. On a broken connection the upload is sent again: the same digest is then
recognised as the same evidence, never stored twice. Once the server answers, its
custody trail for the item is fetched and the upload's entry checked against the
signed checkpoint with the verifier key the investigator holds (`core.receipt`).

Standard library only (urllib), like the offline verifier: the field machine needs
no server code.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from service.client.monitor import fetch
from service.core.checkpoint import KeyHistory, NoteVerifier
from service.core.receipt import Receipt, ReceiptFacts, verify_receipt
from service.errors import CONTROL_CHARACTERS, Error

CHUNK = 1024 * 1024
_TIMEOUT_S = 120  # per socket read or write, not for the whole upload
_MAX_BACKOFF_S = 60.0
# Answers worth trying again: the server is busy, restarting or throttling.
_RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})

Progress = Callable[[int], None]


class UploadError(Error):
    """The locker refused the upload, or could not be reached after every try."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Uploaded:
    """The server's answer to an upload, and the receipt checked against the log."""

    answer: dict[str, Any]
    receipt: Receipt
    facts: ReceiptFacts
    attempts: int


def file_sha256(path: Path, progress: Progress | None = None) -> str:
    """The SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
            if progress is not None:
                progress(len(chunk))
    return digest.hexdigest()


def multipart_body(
    path: Path,
    *,
    filename: str,
    fields: dict[str, str],
    boundary: str,
    progress: Progress | None = None,
) -> tuple[int, Iterator[bytes]]:
    """Content-Length and chunks of a form with `fields` first, then the file.

    The fields come first so the server knows the digest before the first byte of
    the file; the file is read one chunk at a time, never held whole.
    """
    head = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
        + value.encode("utf-8")
        + b"\r\n"
        for name, value in fields.items()
    )
    head += (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
        f"{_filename_parameter(filename)}\r\nContent-Type: application/octet-stream\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()

    def chunks() -> Iterator[bytes]:
        yield head
        with path.open("rb") as handle:
            while chunk := handle.read(CHUNK):
                yield chunk
                if progress is not None:
                    progress(len(chunk))
        yield tail

    return len(head) + path.stat().st_size + len(tail), chunks()


def _filename_parameter(filename: str) -> str:
    """A Content-Disposition filename parameter that keeps any name exactly: a quoted
    string with backslash escapes, UTF-8 inside, as browsers send (RFC 7578 §4.2)."""
    return 'filename="' + filename.replace("\\", "\\\\").replace('"', '\\"') + '"'


def upload(  # noqa: PLR0913 (keyword-only options of one upload)
    server: str,
    path: Path,
    *,
    api_key: str,
    verifier: NoteVerifier | KeyHistory,
    metadata: dict[str, Any] | None = None,
    sha256: str | None = None,
    retries: int = 5,
    progress: Progress | None = None,
    on_retry: Callable[[str, float], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Uploaded:
    """Upload `path`, retrying on broken connections, and check its receipt.

    `on_retry(reason, seconds)` hears of each broken try before the wait. Raises
    UploadError when the server refuses the file (with its one-line reason) or
    cannot be reached `retries` times over, and a VerificationError when the server's
    answer does not prove that the file's digest was logged.
    """
    base = server.rstrip("/")
    if CONTROL_CHARACTERS.search(path.name):
        raise UploadError("the locker refuses file names with control characters; rename the file")
    digest = sha256 or file_sha256(path)
    fields = {"sha256": digest}
    if metadata is not None:
        fields = {"metadata": json.dumps(metadata, ensure_ascii=False)} | fields
    attempts = 0
    while True:
        attempts += 1
        try:
            answer = _post_file(base, path, api_key, fields, progress)
            break
        except _Retry as retry:
            if attempts > retries:
                raise UploadError(f"gave up after {attempts} tries: {retry.reason}") from None
            wait = retry.after if retry.after is not None else _backoff(attempts)
            if on_retry is not None:
                on_retry(retry.reason, wait)
            sleep(wait)
    if answer.get("sha256") != digest or answer.get("size") != path.stat().st_size:
        raise UploadError(
            f"the server recorded sha256 {answer.get('sha256')} and size {answer.get('size')}, "
            f"not this file's {digest} and {path.stat().st_size}"
        )
    receipt = fetch_receipt(base, api_key, answer)
    facts = verify_receipt(receipt, verifier, content_sha256=digest)
    return Uploaded(answer=answer, receipt=receipt, facts=facts, attempts=attempts)


def fetch_receipt(base: str, api_key: str, answer: dict[str, Any]) -> Receipt:
    """The upload's custody entry with its proof, from the item's custody trail."""
    evidence_id, index = str(answer["id"]), answer["custody_index"]
    trail = json.loads(_get(f"{base}/v1/evidence/{evidence_id}/custody", api_key))
    for entry in trail["entries"]:
        if entry["index"] == index:
            return Receipt(
                evidence_id=evidence_id,
                sha256=str(answer["sha256"]),
                size=int(answer["size"]),
                leaf=base64.b64decode(entry["leaf_b64"], validate=True),
                index=index,
                inclusion_proof=tuple(
                    base64.b64decode(h, validate=True) for h in entry["inclusion_proof"]
                ),
                checkpoint=str(trail["checkpoint"]),
            )
    raise UploadError(f"the server's custody trail of {evidence_id} has no entry {index}")


class _Retry(Exception):
    def __init__(self, reason: str, after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.after = after


def _backoff(attempt: int) -> float:
    return float(min(_MAX_BACKOFF_S, 2 ** (attempt - 1)))


def _post_file(
    base: str, path: Path, api_key: str, fields: dict[str, str], progress: Progress | None
) -> dict[str, Any]:
    boundary = f"locker-{uuid.uuid4().hex}"
    length, body = multipart_body(
        path, filename=path.name, fields=fields, boundary=boundary, progress=progress
    )
    request = urllib.request.Request(
        f"{base}/v1/evidence",
        data=body,
        method="POST",
        headers={
            "Authorization": f"Bearer {api_key}",
            "Content-Type": f"multipart/form-data; boundary={boundary}",
            "Content-Length": str(length),
            "Accept": "application/json",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=_TIMEOUT_S) as response:
            answer: dict[str, Any] = json.load(response)
            return answer
    except urllib.error.HTTPError as error:
        reason = _reason(error)
        if error.code in _RETRY_STATUSES:
            raise _Retry(f"HTTP {error.code}: {reason}", _retry_after(error)) from None
        raise UploadError(f"the locker refused the upload (HTTP {error.code}): {reason}") from None
    except (urllib.error.URLError, OSError, ValueError) as error:
        # The connection broke or the answer was cut: send again; the digest
        # makes a second arrival of the same bytes a re-submission, not a copy.
        raise _Retry(f"{type(error).__name__}: {error}") from None


def _get(url: str, api_key: str) -> bytes:
    try:
        return fetch(url, api_key)
    except urllib.error.HTTPError as error:
        raise UploadError(f"GET {url} answered HTTP {error.code}: {_reason(error)}") from None
    except (urllib.error.URLError, OSError) as error:
        raise UploadError(f"GET {url} failed: {error}") from None


def _reason(error: urllib.error.HTTPError) -> str:
    """The server's one-line `detail`, or the status text."""
    try:
        detail = json.loads(error.read()).get("detail")
    except (ValueError, AttributeError, OSError):
        detail = None
    return str(detail) if detail else str(error.reason)


def _retry_after(error: urllib.error.HTTPError) -> float | None:
    value = error.headers.get("Retry-After") if error.headers else None
    return float(value) if value and value.isdigit() else None
