"""`locker upload`: send a file from the field and keep a receipt that proves it was logged.

The key is checked first (before the file is hashed or a byte of it is sent). The file
is then hashed on the investigator's machine and sent over tus (`/v1/uploads`, see
`service.client.tus_client`) with its SHA-256 declared before the bytes, so the server
checks the whole journey end to end (a changed byte is a 422, nothing recorded). A
broken connection never starts the upload over: the client asks the server how many
bytes it holds and sends the rest. Once the server has recorded the file, its custody
trail for the item is fetched and the upload's entry checked against the signed
checkpoint with the verifier key the investigator holds (`core.receipt`).

Standard library only (urllib), like the offline verifier: the field machine needs
no server code.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
import urllib.error
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from service.client import tus_client
from service.client.monitor import fetch
from service.client.resume_state import ResumeState, default_folder
from service.client.tus_client import (
    CHUNK,
    Progress,
    Retry,
    UploadError,
    UploadStatus,
    check_credentials,
    reason_of,
    server_base,
)
from service.core.checkpoint import KeyHistory, NoteVerifier
from service.core.receipt import Receipt, ReceiptFacts, verify_receipt
from service.errors import CONTROL_CHARACTERS

__all__ = ["UploadError", "Uploaded", "check_credentials", "server_base", "upload"]

_MAX_BACKOFF_S = 60.0
_RECORD_POLL_S = 2.0
_RECORD_WAIT_S = 3600.0


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
    key_checked: bool = False,
    state_folder: Path | None = None,
) -> Uploaded:
    """Upload `path` over tus, resuming after broken connections, and check its receipt.

    `progress(position)` hears how far the file has been sent; `on_retry(reason,
    seconds)` hears of each broken try before the wait. Raises UploadError when the
    server refuses (4xx, with its one-line reason, never retried) or cannot be reached
    `retries` times over, and a VerificationError when the server's answer does not
    prove that the file's digest was logged. An upload a killed run left unfinished
    (its URL kept under `state_folder`, by default the user's cache) is resumed.
    """
    base = server_base(server)
    if CONTROL_CHARACTERS.search(path.name):
        raise UploadError("the locker refuses file names with control characters; rename the file")
    if not key_checked:
        check_credentials(base, api_key)
    digest = sha256 or file_sha256(path)
    size = path.stat().st_size
    tries = _Tries(retries=retries, on_retry=on_retry, sleep=sleep)
    identity = {"server": base, "sha256": digest, "size": size, "filename": path.name}
    state = ResumeState(state_folder or default_folder(), identity | {"metadata": metadata})
    location, known = _earlier(state, api_key)
    if location is None:
        location = tries.run(
            lambda: tus_client.create(
                base, api_key, size=size, filename=path.name, sha256=digest, metadata=metadata or {}
            )
        )
        state.save(location)
    try:
        done = _send(location, api_key, path, progress, tries, known)
    except GaveUp:
        raise  # the server keeps what it received: the next run resumes from there
    except UploadError:
        state.forget()  # refused: that upload is over
        raise
    state.forget()
    answer = {
        "id": done.evidence_id,
        "custody_index": done.custody_index,
        "sha256": digest,
        "size": size,
        "duplicate": done.duplicate,
    }
    receipt = fetch_receipt(base, api_key, answer)
    facts = verify_receipt(receipt, verifier, content_sha256=digest)
    return Uploaded(answer=answer, receipt=receipt, facts=facts, attempts=tries.attempts)


def _earlier(state: ResumeState, api_key: str) -> tuple[str | None, UploadStatus | None]:
    """An upload an earlier run left unfinished, and what the server holds of it; none if
    the server no longer has it (expired, failed, terminated) or cannot say now."""
    location = state.location()
    if location is None:
        return None, None
    try:
        return location, tus_client.status(location, api_key)
    except (UploadError, Retry):
        state.forget()
        return None, None


def _send(
    location: str,
    api_key: str,
    path: Path,
    progress: Progress | None,
    tries: _Tries,
    known: UploadStatus | None,
) -> UploadStatus:
    """Send what the server lacks until it answers with the evidence it recorded."""
    known = known or UploadStatus(offset=0)
    held = known.offset  # what the server held when the last PATCH began
    size = path.stat().st_size
    while True:
        try:
            if known is None:
                # Never start over: ask the server where it is. It answers once a cut
                # request still storing what it delivered has counted it.
                known = tus_client.status(location, api_key)
            if known.evidence_id is not None:
                return known
            if known.offset > held:
                tries.progressed()
            held = known.offset
            if known.offset >= size:
                # Every byte is there and the server is recording them (minutes, for a
                # large file): ask again later; a PATCH now would only be refused.
                tries.wait_for_record()
                known = None
                continue
            if path.stat().st_size != size:
                raise UploadError(f"{path.name} changed while it was being uploaded")
            known = tus_client.send_from(location, api_key, path, known.offset, progress)
        except Retry as retry:
            tries.broken(retry)
            known = None


class GaveUp(UploadError):
    """Every try broke; the server keeps the bytes it has, for the next run to resume."""


class _Tries:
    """Counts tries; waits before the next one, or gives up after `retries` broken ones."""

    def __init__(
        self,
        *,
        retries: int,
        on_retry: Callable[[str, float], None] | None,
        sleep: Callable[[float], None],
    ) -> None:
        self._retries, self._on_retry, self._sleep = retries, on_retry, sleep
        self.attempts = 1
        self._broken = 0  # broken tries since the upload last moved forward
        self._recording = 0  # questions asked while the server records the upload

    def broken(self, retry: Retry) -> None:
        if self._broken >= self._retries:
            raise GaveUp(f"gave up after {self.attempts} tries: {retry.reason}")
        self.attempts += 1
        self._broken += 1
        # A server's Retry-After is followed, but never for longer than our own backoff.
        wait = _backoff(self._broken) if retry.after is None else min(retry.after, _MAX_BACKOFF_S)
        if self._on_retry is not None:
            self._on_retry(retry.reason, wait)
        self._sleep(wait)

    def wait_for_record(self) -> None:
        """Wait while the server records the complete upload; give up after an hour."""
        self._recording += 1
        if self._recording * _RECORD_POLL_S > _RECORD_WAIT_S:
            raise GaveUp("the server did not finish recording the upload within an hour")
        self._sleep(_RECORD_POLL_S)

    def progressed(self) -> None:
        """The server holds more than before: a network that drops every few minutes
        never exhausts the tries, and the wait starts short again."""
        self._broken = 0

    def run(self, action: Callable[[], str]) -> str:
        while True:
            try:
                return action()
            except Retry as retry:
                self.broken(retry)


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


def _backoff(attempt: int) -> float:
    return float(min(_MAX_BACKOFF_S, 2 ** (attempt - 1)))


def _get(url: str, api_key: str) -> bytes:
    try:
        return fetch(url, api_key)
    except urllib.error.HTTPError as error:
        raise UploadError(f"GET {url} answered HTTP {error.code}: {reason_of(error)}") from None
    except (urllib.error.URLError, OSError) as error:
        raise UploadError(f"GET {url} failed: {error}") from None
