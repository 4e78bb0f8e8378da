"""Downloads that verify while they stream, and what a mismatch leaves behind.

A stored object can change under the locker (a disk fault, or an insider with write
access to the store). Its recorded digests are the only truth: bytes that do not hash
to them are never handed out as a complete, clean response.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import structlog

from service.core.digests import ContentDigester, ContentDigests
from service.db.models import Evidence, EvidenceQuarantine
from service.errors import DigestMismatch
from service.storage.base import ClosingChunks

if TYPE_CHECKING:
    from service.runtime import Runtime

_log = structlog.get_logger("locker.integrity")

INTEGRITY_FAILURE = "evidence.integrity_failure"


@dataclass(frozen=True, slots=True, kw_only=True)
class Expected:
    """What the record says a stored object holds (SHA-512 where one is recorded)."""

    sha256: str
    size: int
    sha512: str | None = None

    def mismatch(self, found: ContentDigests) -> str | None:
        """How `found` differs from the record, or None if it matches."""
        if found.size != self.size:
            return f"size: expected {self.size}, got {found.size}"
        if found.sha256.hex != self.sha256:
            return f"sha256: expected {self.sha256}, got {found.sha256.hex}"
        if self.sha512 is not None and found.sha512.hex != self.sha512:
            return f"sha512: expected {self.sha512}, got {found.sha512.hex}"
        return None


class ContentChanged(DigestMismatch):
    """Stored bytes read for a download do not match their recorded digests."""


class VerifiedChunks(Iterator[bytes]):
    """A stored object's chunks, checked against the record while they pass.

    The last chunk is held back until everything read has hashed to the recorded
    digests, so a changed object never ends as a complete response: on a mismatch
    `on_mismatch` runs once with the difference and ContentChanged is raised, which
    aborts the response before its last byte.
    """

    def __init__(
        self,
        chunks: ClosingChunks,
        *,
        expected: Expected,
        what: str,
        on_mismatch: Callable[[str], None],
    ) -> None:
        self._chunks = chunks
        self._expected = expected
        self._what = what
        self._on_mismatch = on_mismatch
        self._digester = ContentDigester()
        self._held: bytes | None = None
        self._finished = False

    def __iter__(self) -> VerifiedChunks:
        return self

    def __next__(self) -> bytes:
        while not self._finished:
            chunk = next(self._chunks, None)
            if chunk is None:
                self._finished = True
                self._check(self._expected.mismatch(self._digester.finish()))
                break
            self._digester.update(chunk)
            if self._digester.size > self._expected.size:
                self._check(f"size: expected {self._expected.size}, got more")
            held, self._held = self._held, chunk
            if held is not None:
                return held
        held, self._held = self._held, None
        if held is None:
            raise StopIteration
        return held

    def close(self) -> None:
        """Release the stored object; safe to call more than once."""
        self._finished = True
        self._held = None
        self._chunks.close()

    def _check(self, difference: str | None) -> None:
        if difference is None:
            return
        self.close()
        try:
            self._on_mismatch(difference)
        except Exception as exc:  # the abort must happen even if recording fails
            _log.error("integrity failure not recorded", what=self._what, error=repr(exc))
        raise ContentChanged(self._what, expected="the recorded content", actual=difference)


def log_mismatch(difference: str) -> None:
    """Report changed bytes in the server log (for objects that are not evidence)."""
    _log.error("stored bytes changed", difference=difference)


def record_integrity_failure(
    runtime: Runtime, evidence: Evidence, *, actor: str, difference: str
) -> None:
    """Append `evidence.integrity_failure` and quarantine the item, in one transaction."""
    _log.error("stored bytes changed", evidence=evidence.id, difference=difference)
    now = datetime.now(UTC)
    with runtime.database.session() as session:
        entry = runtime.log.append(
            session,
            organisation_id=evidence.organisation_id,
            actor=actor,
            action=INTEGRITY_FAILURE,
            subjects=[f"evidence:{evidence.id}"],
            details={"sha256": evidence.sha256, "finding": difference[:512]},
        )
        if session.get(EvidenceQuarantine, evidence.id) is None:
            session.add(
                EvidenceQuarantine(
                    evidence_id=evidence.id,
                    organisation_id=evidence.organisation_id,
                    detected_at=now,
                    custody_index=entry.index,
                    reason=difference[:1024],
                )
            )
