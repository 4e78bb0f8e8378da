"""Uploading a file from disk through POST /v1/evidence, streamed, and watching the server.

The body is multipart/form-data framed around 1 MiB chunks read from the file (as a
browser or `curl -F` frames it), so the client never holds more than one chunk: what
is measured is the server, not the client.
"""

from __future__ import annotations

import base64
import hashlib
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

import httpx
from _locker import Locker

MIB = 1024 * 1024
_BOUNDARY = "locker-bench-8c1d0f5e"
_UPLOAD_TIMEOUT_S = 600.0
_PATCH_BYTES = 8 * MIB
_TUS = {"Tus-Resumable": "1.0.0"}


def multipart_body(
    path: Path,
    *,
    filename: str,
    fields: dict[str, str],
    boundary: str,
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
            while chunk := handle.read(MIB):
                yield chunk
        yield tail

    return len(head) + path.stat().st_size + len(tail), chunks()


def _filename_parameter(filename: str) -> str:
    """A Content-Disposition filename parameter that keeps any name exactly: a quoted
    string with backslash escapes, UTF-8 inside, as browsers send (RFC 7578 §4.2)."""
    return 'filename="' + filename.replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_random_file(path: Path, mib: int) -> None:
    """`mib` MiB of incompressible bytes (one random MiB, each copy stamped with its number)."""
    block = os.urandom(MIB)
    with path.open("wb") as handle:
        for number in range(mib):
            handle.write(number.to_bytes(8, "big") + block[8:])


def make_unique(path: Path, tag: int) -> str:
    """Overwrite the first 8 bytes with `tag` (no dedupe between runs); returns the sha256."""
    with path.open("r+b") as handle:
        handle.write(tag.to_bytes(8, "big"))
        handle.flush()
        handle.seek(0)
        return hashlib.file_digest(handle, "sha256").hexdigest()


def upload(locker: Locker, path: Path, *, sha256: str, send_sha256: bool = False) -> float:
    """POST the file to /v1/evidence; the wall time in seconds until the 201 arrived.

    Checks that the server recorded new evidence with the file's SHA-256 and size.
    """
    fields = {"sha256": sha256} if send_sha256 else {}
    length, body = multipart_body(path, filename="interview.mp4", fields=fields, boundary=_BOUNDARY)
    headers = {
        "Authorization": f"Bearer {locker.api_key}",
        "Content-Type": f"multipart/form-data; boundary={_BOUNDARY}",
        "Content-Length": str(length),
    }
    with httpx.Client(timeout=_UPLOAD_TIMEOUT_S) as client:
        started = time.perf_counter()
        response = client.post(f"{locker.url}/v1/evidence", content=body, headers=headers)
        elapsed = time.perf_counter() - started
    if response.status_code != 201:
        raise RuntimeError(f"upload failed: {response.status_code} {response.text[:500]}")
    recorded = response.json()
    expected = (sha256, path.stat().st_size, False)
    got = (recorded["sha256"], recorded["size"], recorded["duplicate"])
    if got != expected:
        raise RuntimeError(f"upload recorded {got}, want {expected}")
    return elapsed


def tus_upload(
    locker: Locker, path: Path, sha256: str, *, finish_at: str | None = None
) -> tuple[float, float]:
    """Upload `path` with tus in 8 MiB PATCHes; (seconds for the whole upload, seconds of
    the last PATCH, which completes it), the last one sent to `finish_at` (another
    process's URL) if given. Checks it was recorded as new evidence."""
    size = path.stat().st_size
    auth = {"Authorization": f"Bearer {locker.api_key}"}
    metadata = f"filename {base64.b64encode(b'interview.mp4').decode()},sha256 " + (
        base64.b64encode(sha256.encode()).decode()
    )
    with httpx.Client(
        base_url=locker.url, headers=auth | _TUS, timeout=_UPLOAD_TIMEOUT_S
    ) as client:
        started = time.perf_counter()
        created = client.post(
            "/v1/uploads", headers={"Upload-Length": str(size), "Upload-Metadata": metadata}
        )
        location = created.headers["Location"]
        with path.open("rb") as handle:
            offset = 0
            while offset < size - 1:
                chunk = handle.read(min(_PATCH_BYTES, size - 1 - offset))
                _patch(client, location, offset, chunk)
                offset += len(chunk)
            last = handle.read()
        finishing = time.perf_counter()
        answer = _patch(client, f"{finish_at or locker.url}{location}", offset, last)
        ended = time.perf_counter()
    if answer.headers.get("Locker-Duplicate") != "false":
        raise RuntimeError(f"tus upload not recorded as new evidence: {answer.headers}")
    return ended - started, ended - finishing


def _patch(client: httpx.Client, location: str, offset: int, chunk: bytes) -> httpx.Response:
    headers = {"Content-Type": "application/offset+octet-stream", "Upload-Offset": str(offset)}
    response = client.patch(location, content=chunk, headers=headers)
    if response.status_code != 204:
        raise RuntimeError(f"PATCH at {offset}: {response.status_code} {response.text[:300]}")
    return response


def _status_kib(pid: int, field: str) -> int:
    """A `kB` field of /proc/<pid>/status (VmRSS, VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/{pid}/status has no {field}")


def rss_mib(pid: int) -> float:
    """The resident set size of process `pid` now, in MiB."""
    return _status_kib(pid, "VmRSS") / 1024


@dataclass(slots=True)
class RssPeak:
    """What the sampler saw: the highest sampled VmRSS, and the kernel's high-water mark."""

    sampled_mib: float = 0.0
    high_water_mib: float = 0.0
    samples: int = 0


class RssSampler:
    """Samples VmRSS of `pid` every `interval` seconds in a thread, inside a `with` block.

    The kernel's VmHWM is reset on entry (clear_refs 5) and read on exit, so a spike
    shorter than the interval is caught too.
    """

    def __init__(self, pid: int, *, interval: float = 0.02) -> None:
        self._pid, self._interval = pid, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.peak = RssPeak()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak.sampled_mib = max(self.peak.sampled_mib, rss_mib(self._pid))
            self.peak.samples += 1
            self._stop.wait(self._interval)

    def __enter__(self) -> Self:
        Path(f"/proc/{self._pid}/clear_refs").write_text("5")
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()
        self.peak.high_water_mib = _status_kib(self._pid, "VmHWM") / 1024
