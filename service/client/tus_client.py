"""The field side of tus 1.0: create an upload, send the file, resume where the server is.

Standard library only (urllib), like the rest of the offline client. Each request is
one of three kinds of outcome:
- an answer: the server's headers;
- a refusal (`UploadError`): a 4xx, which sending again cannot change, so it is never
  retried; its one-line `detail` is kept;
- a broken try (`Retry`): the connection failed or the server is busy (408, 429, 5xx).
After a broken try the client never starts over: it asks the server (HEAD) how many
bytes it holds and sends only the rest.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from service.errors import Error

TUS_HEADERS = {"Tus-Resumable": "1.0.0"}
CHUNK = 1024 * 1024
_TIMEOUT_S = 120  # per socket read or write, not for the whole upload
# Answers worth trying again: the server is busy, restarting or throttling.
_RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
# A upload id no server ever issues: asking for it checks the key and the permission.
_NO_UPLOAD = "00000000-0000-0000-0000-000000000000"

Progress = Callable[[int], None]


class UploadError(Error):
    """The locker refused, or could not be reached after every try."""


class Retry(Exception):
    """A try broke in a way that sending again may mend."""

    def __init__(self, reason: str, after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.after = after


@dataclass(frozen=True, slots=True, kw_only=True)
class UploadStatus:
    """What the server holds of an upload, and the evidence it became once complete."""

    offset: int
    evidence_id: str | None = None
    custody_index: int | None = None
    duplicate: bool = False


def server_base(server: str) -> str:
    """The server's base URL, or UploadError for anything that is not http(s)://host."""
    parts = urllib.parse.urlsplit(server.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UploadError(f"malformed server URL {server!r}: expected http(s)://host[:port]")
    try:
        parts.port  # noqa: B018 (a malformed port raises here, not at the first request)
    except ValueError:
        raise UploadError(f"malformed server URL {server!r}: bad port") from None
    return server.strip().rstrip("/")


def check_credentials(base: str, api_key: str) -> None:
    """Ask for an upload that cannot exist: 404 means the key is valid and may upload.

    Made before the file is hashed or a byte of it is sent, so a wrong key on a large
    file is answered at once.
    """
    try:
        _request("HEAD", f"{base}/v1/uploads/{_NO_UPLOAD}", api_key)
    except UploadError as refused:
        if "HTTP 404" not in str(refused):
            raise


def create(
    base: str, api_key: str, *, size: int, filename: str, sha256: str, metadata: dict[str, Any]
) -> str:
    """Creation: the upload's URL. Its name, metadata and digest are declared first."""
    pairs = {"filename": filename, "sha256": sha256}
    if metadata:
        pairs["metadata"] = json.dumps(metadata, ensure_ascii=False)
    encoded = ",".join(
        f"{key} {base64.b64encode(value.encode()).decode()}" for key, value in pairs.items()
    )
    headers = {"Upload-Length": str(size), "Upload-Metadata": encoded}
    answer = _request("POST", f"{base}/v1/uploads", api_key, headers=headers)
    location = answer.get("Location")
    if not location:
        raise UploadError("the locker created the upload but named no Location")
    return urllib.parse.urljoin(f"{base}/", str(location))


def status(location: str, api_key: str) -> UploadStatus:
    """HEAD: the server's offset, and the evidence once the upload is complete."""
    return _status(_request("HEAD", location, api_key))


def send_from(
    location: str, api_key: str, path: Path, offset: int, progress: Progress | None
) -> UploadStatus:
    """PATCH the file from `offset` to its end, in one streamed request."""
    size = path.stat().st_size
    headers = {
        "Content-Type": "application/offset+octet-stream",
        "Upload-Offset": str(offset),
        "Content-Length": str(size - offset),
    }
    body = _file_from(path, offset, progress)
    return _status(_request("PATCH", location, api_key, headers=headers, data=body))


def _file_from(path: Path, offset: int, progress: Progress | None) -> Iterator[bytes]:
    with path.open("rb") as handle:
        handle.seek(offset)
        position = offset
        while chunk := handle.read(CHUNK):
            yield chunk
            position += len(chunk)
            if progress is not None:
                progress(position)


def _status(headers: Any) -> UploadStatus:
    try:
        offset = int(headers.get("Upload-Offset", ""))
        index = headers.get("Locker-Custody-Index")
        return UploadStatus(
            offset=offset,
            evidence_id=headers.get("Locker-Evidence-Id"),
            custody_index=int(index) if index is not None else None,
            duplicate=headers.get("Locker-Duplicate") == "true",
        )
    except ValueError:
        raise Retry("the locker's answer had no usable Upload-Offset") from None


def _request(
    method: str,
    url: str,
    api_key: str,
    *,
    headers: dict[str, str] | None = None,
    data: Iterator[bytes] | None = None,
) -> Any:
    """Send one request; its response headers, UploadError (4xx) or Retry."""
    request = urllib.request.Request(
        url,
        data=data,
        method=method,
        headers={"Authorization": f"Bearer {api_key}"} | TUS_HEADERS | (headers or {}),
    )
    try:
        with urllib.request.urlopen(request, timeout=_TIMEOUT_S) as response:
            response.read()
            return response.headers
    except urllib.error.HTTPError as error:
        reason = reason_of(error)
        if error.code in _RETRY_STATUSES:
            raise Retry(f"HTTP {error.code}: {reason}", retry_after(error)) from None
        if error.code == 409 and method == "PATCH":
            # Not a refusal: the server holds another offset than we thought (a cut
            # request's bytes landed meanwhile). Nothing is sent again: ask where it is.
            raise Retry(f"HTTP 409: {reason}", after=0.0) from None
        if error.code == 401:
            reason = f"invalid API key ({reason})"
        raise UploadError(f"HTTP {error.code}: {reason}") from None
    except (urllib.error.URLError, OSError, ValueError) as error:
        raise Retry(f"{type(error).__name__}: {error}") from None


def reason_of(error: urllib.error.HTTPError) -> str:
    """The server's one-line `detail`, or the status text."""
    try:
        detail = json.loads(error.read()).get("detail")
    except (ValueError, AttributeError, OSError):
        detail = None
    return str(detail) if detail else str(error.reason)


def retry_after(error: urllib.error.HTTPError) -> float | None:
    value = error.headers.get("Retry-After") if error.headers else None
    return float(value) if value and value.isdigit() else None
