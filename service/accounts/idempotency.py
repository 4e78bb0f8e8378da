"""Idempotency keys: a retried creating request gets its first answer, not a second record.

A client that lost the answer to a POST (a dropped connection in the field) sends it
again with the same `Idempotency-Key`. The first request with a key claims it (one row
per owner and key, so of two simultaneous requests one claims and the other is told
the key is in use); when it succeeds its answer is kept for `KEEP`. A repeat with the
same method, path and body gets that answer back and creates nothing; with another
body it is refused. A request that fails releases its claim, so it can be tried again.

The key is the client's secret for its answer: POST /v1/keys answers with an API key
that exists nowhere else. So the row's id is a digest of owner and key, and the answer
and the request fingerprint are sealed (AES-256-GCM, HMAC) under a key derived from
the Idempotency-Key: a reader of the database who does not hold the key learns
neither. Clients should use random keys (a UUID).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlmodel import col

from service.db.models import IdempotencyRecord
from service.errors import Conflict, InvalidInput

if TYPE_CHECKING:
    from service.runtime import Runtime

KEEP = timedelta(hours=24)
"""How long a first answer is kept (at least; expired rows go at the next clean-up)."""

CLAIM_TIMEOUT = timedelta(hours=1)
"""A claim never answered (its server stopped mid-request) may be taken over after this."""

_NONCE = 12
_IN_PROGRESS = "a request with this Idempotency-Key is in progress; try again later"
_MAX_KEY = 255


def valid_key(value: str) -> bool:
    """1–255 printable ASCII characters (space to tilde), as the header allows."""
    return 0 < len(value) <= _MAX_KEY and all(" " <= c <= "~" for c in value)


class Fingerprint:
    """SHA-256 of a request's method, path and body, fed as the body streams.

    A multipart body's boundary is left out: a client picks a fresh one for each
    request, so a retry of the same upload would otherwise never match.
    """

    def __init__(self, method: str, path: str, *, boundary: bytes | None = None) -> None:
        self._hash = hashlib.sha256(f"{method}\n{path}\n".encode())
        self._boundary = boundary or b""
        self._pending = b""

    def update(self, chunk: bytes) -> None:
        """Add the next bytes of the body."""
        size = len(self._boundary)
        if not size:
            self._hash.update(chunk)
            return
        if len(chunk) < size:  # too short to settle the held tail: hold it all
            data, position = self._pending + chunk, 0
        else:  # settle the held tail on its own, without copying the chunk
            data, position = chunk, self._settle(chunk)
        view = memoryview(data)  # slices of a view are not copies
        while (found := data.find(self._boundary, position)) >= 0:
            self._hash.update(view[position:found])
            position = found + size
        # Hold what could be the start of a boundary split across two chunks.
        keep = max(position, len(data) - size + 1)
        self._hash.update(view[position:keep])
        self._pending = bytes(view[keep:])

    def _settle(self, chunk: bytes) -> int:
        """Hash the held tail, up to a boundary that begins in it; where `chunk` resumes.

        Requires len(chunk) >= len(boundary): then any boundary that begins in the tail
        ends within the seam. The tail holds no whole boundary (it is shorter).
        """
        held, self._pending = self._pending, b""
        seam = held + chunk[: len(self._boundary) - 1]
        found = seam.find(self._boundary)
        if 0 <= found < len(held):
            self._hash.update(held[:found])
            return found + len(self._boundary) - len(held)
        self._hash.update(held)
        return 0

    def hexdigest(self) -> str:
        """The fingerprint of everything fed so far (call once the body has ended)."""
        final = self._hash.copy()
        final.update(self._pending)
        return final.hexdigest()


@dataclass(frozen=True, slots=True, kw_only=True)
class Answer:
    """The first answer to a request: what a repeat of it gets back."""

    status: int
    body: bytes
    media_type: str | None
    location: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Claim:
    """A key held by one request until it answers; `_secret` seals what is stored."""

    owner_id: str
    record_id: str
    secret: bytes

    @classmethod
    def of(cls, owner_id: str, key: str) -> Claim:
        """The claim on `key` of `owner_id` (nothing is stored yet)."""
        record_id = hashlib.sha256(f"locker idempotency key\n{owner_id}\n{key}".encode())
        secret = hmac.digest(
            key.encode(), f"locker idempotency answer\n{owner_id}".encode(), "sha256"
        )
        return cls(owner_id=owner_id, record_id=record_id.hexdigest(), secret=secret)

    def seal_fingerprint(self, fingerprint: str) -> str:
        return hmac.new(self.secret, fingerprint.encode(), "sha256").hexdigest()


def stored_answer(runtime: Runtime, claim: Claim, fingerprint: str) -> Answer | None:
    """The first answer if this key has one; None if the key is free.

    Raises Conflict while another request holds the key, and InvalidInput when the
    key was used for another request (another body, method or path).
    """
    with runtime.database.session() as session:
        record = session.get(IdempotencyRecord, claim.record_id)
        if record is None or _expired(record, datetime.now(UTC)):
            return None
        if record.status is None or record.answer is None:
            raise Conflict(_IN_PROGRESS)
        if not hmac.compare_digest(record.fingerprint or "", claim.seal_fingerprint(fingerprint)):
            raise InvalidInput("Idempotency-Key was used for another request (another body)")
        sealed = record.answer
    plain = json.loads(AESGCM(claim.secret).decrypt(sealed[:_NONCE], sealed[_NONCE:], None))
    return Answer(
        status=int(plain["status"]),
        body=bytes.fromhex(plain["body"]),
        media_type=plain["media_type"],
        location=plain["location"],
    )


def answered(runtime: Runtime, claim: Claim) -> bool:
    """Whether the key has a first answer (False: it is free); Conflict while in use."""
    with runtime.database.session() as session:
        record = session.get(IdempotencyRecord, claim.record_id)
        if record is None or _expired(record, datetime.now(UTC)):
            return False
        if record.status is None:
            raise Conflict(_IN_PROGRESS)
        return True


def begin(runtime: Runtime, claim: Claim, fingerprint: str | None) -> None:
    """Hold the key for this request; Conflict if another request holds it.

    `fingerprint` is None while the body has not been read (a streamed upload): it is
    recorded with the answer. An expired record of the key is replaced.
    """
    now = datetime.now(UTC)
    try:
        with runtime.database.session() as session:
            record = session.get(IdempotencyRecord, claim.record_id)
            if record is not None:
                if not _expired(record, now):
                    raise Conflict(_IN_PROGRESS)
                session.delete(record)
                session.flush()
            session.add(
                IdempotencyRecord(
                    id=claim.record_id,
                    owner_id=claim.owner_id,
                    fingerprint=claim.seal_fingerprint(fingerprint) if fingerprint else None,
                    created_at=now,
                )
            )
    except IntegrityError:
        # The primary key: another request claimed this key first.
        raise Conflict(_IN_PROGRESS) from None


def finish(runtime: Runtime, claim: Claim, fingerprint: str, answer: Answer) -> None:
    """Keep the answer of the request that held the key, for its repeats."""
    plain = json.dumps(
        {
            "status": answer.status,
            "body": answer.body.hex(),
            "media_type": answer.media_type,
            "location": answer.location,
        }
    ).encode()
    nonce = os.urandom(_NONCE)
    with runtime.database.session() as session:
        record = session.get(IdempotencyRecord, claim.record_id)
        assert record is not None, "finish() of a key that was never claimed"
        record.fingerprint = claim.seal_fingerprint(fingerprint)
        record.status = answer.status
        record.answer = nonce + AESGCM(claim.secret).encrypt(nonce, plain, None)
        session.add(record)


def release(runtime: Runtime, claim: Claim) -> None:
    """Free the key of a request that created nothing (it failed), for a retry."""
    with runtime.database.session() as session:
        session.execute(
            delete(IdempotencyRecord).where(
                col(IdempotencyRecord.id) == claim.record_id,
                col(IdempotencyRecord.status).is_(None),
            )
        )


def purge_expired(runtime: Runtime) -> int:
    """Delete the records older than KEEP; the number deleted."""
    with runtime.database.session() as session:
        result = session.execute(
            delete(IdempotencyRecord).where(
                col(IdempotencyRecord.created_at) < datetime.now(UTC) - KEEP
            )
        )
        return int(getattr(result, "rowcount", 0) or 0)


def _expired(record: IdempotencyRecord, now: datetime) -> bool:
    created = record.created_at
    if created.tzinfo is None:  # SQLite gives stored UTC times back without their zone
        created = created.replace(tzinfo=UTC)
    if record.status is None:
        return now - created > CLAIM_TIMEOUT
    return now - created > KEEP
