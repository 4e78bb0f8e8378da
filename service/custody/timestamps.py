"""RFC 3161 timestamps of checkpoints, requested from the configured TSA and kept.

A token is independent evidence, from an authority other than the locker, that the log
held the checkpoint's state no later than the token's time. Requests happen outside any
upload: in a background loop of the server, in `locker timestamp`, and when an export is
built. A TSA that is down, slow or answers nonsense costs a logged warning, never a
failed request; only a token that verifies against the configured CA is stored.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import httpx
import structlog
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from service.core.timestamp import timestamp_request, verify_timestamp
from service.db.models import CheckpointTimestamp, SignedCheckpoint
from service.errors import Error, InvalidInput, describe

if TYPE_CHECKING:
    from service.runtime import Runtime, Tsa

_log = structlog.get_logger("locker.timestamps")
_MAX_RESPONSE = 1024 * 1024
_QUERY, _REPLY = "application/timestamp-query", "application/timestamp-reply"  # RFC 3161 §3.4


def timestamp_checkpoint(
    runtime: Runtime, checkpoint: SignedCheckpoint
) -> CheckpointTimestamp | None:
    """The checkpoint's stored token, else a new one from the TSA; None without a TSA or
    when it failed (logged)."""
    stored = list_timestamps(runtime, checkpoint.size)
    if stored or runtime.tsa is None:
        return stored[0] if stored else None
    try:
        token = _request(runtime.tsa, checkpoint)
    except (httpx.HTTPError, Error) as exc:
        _log.warning(
            "checkpoint not timestamped",
            tsa=runtime.tsa.url,
            size=checkpoint.size,
            error=describe(exc),
        )
        return None
    try:
        with runtime.database.session() as session:
            session.add(token)
    except IntegrityError:  # another worker stored one first; theirs is as good as ours
        return list_timestamps(runtime, checkpoint.size)[0]
    return token


def timestamp_latest(runtime: Runtime) -> CheckpointTimestamp | None:
    """Sign a checkpoint over every committed entry (if the log grew) and timestamp it."""
    return timestamp_checkpoint(runtime, runtime.log.latest_checkpoint(runtime.database))


def list_timestamps(runtime: Runtime, tree_size: int) -> list[CheckpointTimestamp]:
    """The stored tokens over the checkpoint of `tree_size`, oldest first."""
    if tree_size < 0:
        raise InvalidInput(f"tree_size must be >= 0, got {tree_size}")
    with runtime.database.session() as session:
        return list(
            session.exec(
                select(CheckpointTimestamp)
                .where(CheckpointTimestamp.checkpoint_size == tree_size)
                .order_by(col(CheckpointTimestamp.id))
            )
        )


async def timestamp_periodically(runtime: Runtime) -> None:
    """Timestamp the latest checkpoint every `LOCKER_TSA_INTERVAL` seconds, until cancelled."""
    assert runtime.tsa is not None
    while True:
        try:
            await asyncio.to_thread(timestamp_latest, runtime)
        except Exception:  # the loop outlives any one failure; it is logged
            _log.exception("timestamping failed")
        await asyncio.sleep(runtime.tsa.interval)


def _request(tsa: Tsa, checkpoint: SignedCheckpoint) -> CheckpointTimestamp:
    """Ask the TSA for a token over the note's bytes and verify it before keeping it."""
    note = checkpoint.note.encode()
    request = timestamp_request(note)
    headers = {"Content-Type": _QUERY, "Accept": _REPLY}
    with httpx.stream(
        "POST", tsa.url, content=request.der, headers=headers, timeout=tsa.timeout
    ) as reply:
        reply.raise_for_status()
        body = bytearray()
        for chunk in reply.iter_bytes():
            body += chunk
            if len(body) > _MAX_RESPONSE:
                raise InvalidInput(f"the TSA's reply exceeds {_MAX_RESPONSE} bytes")
    attested = verify_timestamp(bytes(body), note, roots=tsa.roots, nonce=request.nonce)
    return CheckpointTimestamp(
        checkpoint_size=checkpoint.size,
        tsa_url=tsa.url,
        response=bytes(body),
        sha256=attested.sha256,
        attested_at=attested.time,
        authority=attested.authority[:1024],
        serial_number=str(attested.serial_number),
        fetched_at=datetime.now(UTC),
    )
