"""RFC 3161 timestamps of checkpoints, requested from every configured TSA and kept.

A token is independent evidence, from an authority other than the locker, that the log
held the checkpoint's state no later than the token's time. With several authorities
(one per jurisdiction, say) no single one's failure or compromise leaves the log without
a trusted time: each checkpoint is sent to every one, and each token is kept.

Requests happen outside any upload: in one background loop per authority, in `locker
timestamp`, and when an export is built. An authority that is down, slow or answers
nonsense costs a logged warning naming it, and is retried with backoff by its own loop;
it never fails or holds up a request, nor delays the other authorities. Only a token
that verifies against the authority's configured CA is stored.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import httpx
import structlog
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from service.core.bundle import timestamp_paths
from service.core.timestamp import authority_name, timestamp_request, verify_timestamp
from service.db.models import CheckpointTimestamp, SignedCheckpoint
from service.errors import Error, InvalidInput

if TYPE_CHECKING:
    from service.runtime import Runtime, Tsa, TsaAuthority

_log = structlog.get_logger("locker.timestamps")
_MAX_RESPONSE = 1024 * 1024
_QUERY, _REPLY = "application/timestamp-query", "application/timestamp-reply"  # RFC 3161 §3.4
_FIRST_RETRY = 5.0  # seconds after a failure; doubled after each further one, up to the interval


def timestamp_checkpoint(
    runtime: Runtime, checkpoint: SignedCheckpoint
) -> list[CheckpointTimestamp]:
    """The checkpoint's tokens, after asking (at once) each configured authority that has
    not stamped it and is not resting after a failure; failures are logged."""
    tsa = runtime.tsa
    if tsa is not None:
        stamped = {t.tsa_url for t in list_timestamps(runtime, checkpoint.size)}
        now = time.monotonic()
        pending = [
            a
            for a in tsa.authorities
            if a.url not in stamped and tsa.resting_until.get(a.name, 0.0) <= now
        ]
        if pending:
            with ThreadPoolExecutor(max_workers=len(pending)) as pool:
                list(pool.map(lambda a: stamp(runtime, a, checkpoint), pending))
    return list_timestamps(runtime, checkpoint.size)


def timestamp_latest(runtime: Runtime) -> list[CheckpointTimestamp]:
    """Sign a checkpoint over every committed entry (if the log grew) and timestamp it."""
    return timestamp_checkpoint(runtime, runtime.log.latest_checkpoint(runtime.database))


def timestamp_files(runtime: Runtime, tokens: list[CheckpointTimestamp]) -> list[tuple[str, bytes]]:
    """A bundle's tag files for `tokens`, byte for byte as the authorities sent them: the
    first configured authority's as custody/checkpoint.tsr, each other's named after it
    (`core.bundle.timestamp_paths`), each beside its CA certificate when configured."""
    authorities = runtime.tsa.authorities if runtime.tsa else ()
    rank = {a.url: n for n, a in enumerate(authorities)}
    ordered = sorted(tokens, key=lambda t: (rank.get(t.tsa_url, len(rank)), t.id or 0))
    files: list[tuple[str, bytes]] = []
    names: set[str | None] = set()
    for token in ordered:
        name: str | None = authority_name(token.tsa_url) if files else None
        if name in names:  # an authority no longer configured, on the same host as one
            name = f"{name}-{token.id}"
        names.add(name)
        token_path, ca_path = timestamp_paths(name)
        files.append((token_path, token.response))
        authority = runtime.tsa.authority(token.tsa_url) if runtime.tsa else None
        if authority is not None:
            files.append((ca_path, authority.ca_pem))
    return files


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


def stamp(
    runtime: Runtime, authority: TsaAuthority, checkpoint: SignedCheckpoint
) -> CheckpointTimestamp | None:
    """The authority's token over the checkpoint, requested, verified and stored; None
    when it failed (logged with the authority's name and a one-line reason)."""
    tsa = runtime.tsa
    assert tsa is not None
    try:
        token = _request(tsa, authority, checkpoint)
    except (httpx.HTTPError, Error, ValueError) as exc:
        pause = _rest(tsa, authority)
        _log.warning(
            "checkpoint not timestamped",
            tsa=authority.name,
            url=authority.url,
            size=checkpoint.size,
            error=_reason(exc, tsa.timeout),
            retry_in=pause,
        )
        return None
    tsa.resting_until.pop(authority.name, None)
    tsa.failures.pop(authority.name, None)
    try:
        with runtime.database.session() as session:
            session.add(token)
    except IntegrityError:  # another worker stored one first; theirs is as good as ours
        stored = list_timestamps(runtime, checkpoint.size)
        return next(t for t in stored if t.tsa_url == token.tsa_url)
    _log.info(
        "checkpoint timestamped",
        tsa=authority.name,
        size=checkpoint.size,
        attested_at=token.attested_at.isoformat(),
        serial_number=token.serial_number,
        authority=token.authority,
    )
    return token


async def timestamp_periodically(runtime: Runtime) -> None:
    """One loop per authority, until cancelled: each stamps the latest checkpoint every
    `LOCKER_TSA_INTERVAL` seconds, and after a failure retries sooner, backing off."""
    assert runtime.tsa is not None
    await asyncio.gather(*(_stamp_periodically(runtime, a) for a in runtime.tsa.authorities))


async def _stamp_periodically(runtime: Runtime, authority: TsaAuthority) -> None:
    tsa = runtime.tsa
    assert tsa is not None
    while True:
        try:
            await asyncio.to_thread(_stamp_latest, runtime, authority)
        except Exception:  # the loop outlives any one failure; it is logged
            _log.exception("timestamping failed", tsa=authority.name)
            _rest(tsa, authority)
        resting = tsa.resting_until.get(authority.name)
        await asyncio.sleep(tsa.interval if resting is None else resting - time.monotonic())


def _stamp_latest(runtime: Runtime, authority: TsaAuthority) -> None:
    checkpoint = runtime.log.latest_checkpoint(runtime.database)
    stored = list_timestamps(runtime, checkpoint.size)
    if all(t.tsa_url != authority.url for t in stored):
        stamp(runtime, authority, checkpoint)


def _rest(tsa: Tsa, authority: TsaAuthority) -> float:
    """Leave a failed authority alone a while, longer after each failure in a row: seconds."""
    failures = tsa.failures.get(authority.name, 0) + 1
    tsa.failures[authority.name] = failures
    pause = min(tsa.interval, _FIRST_RETRY * (1 << min(failures - 1, 32)))  # bounded: no overflow
    tsa.resting_until[authority.name] = time.monotonic() + pause
    return pause


def _reason(exc: Exception, timeout: float) -> str:
    """What went wrong, on one line."""
    if isinstance(exc, httpx.TimeoutException):
        message = f"no answer within {timeout:g} s ({type(exc).__name__})"
    elif isinstance(exc, httpx.HTTPStatusError):
        message = f"HTTP {exc.response.status_code} {exc.response.reason_phrase}"
    elif isinstance(exc, Error):
        message = exc.diagnostics()
    else:
        message = f"{type(exc).__name__}: {exc}"
    return " ".join(message.split())[:500]


def _request(
    tsa: Tsa, authority: TsaAuthority, checkpoint: SignedCheckpoint
) -> CheckpointTimestamp:
    """Ask the authority for a token over the note's bytes and verify it before keeping it."""
    note = checkpoint.note.encode()
    request = timestamp_request(note)
    headers = {"Content-Type": _QUERY, "Accept": _REPLY}
    with httpx.stream(
        "POST", authority.url, content=request.der, headers=headers, timeout=tsa.timeout
    ) as reply:
        reply.raise_for_status()
        body = bytearray()
        for chunk in reply.iter_bytes():
            body += chunk
            if len(body) > _MAX_RESPONSE:
                raise InvalidInput(f"the TSA's reply exceeds {_MAX_RESPONSE} bytes")
    attested = verify_timestamp(bytes(body), note, roots=authority.roots, nonce=request.nonce)
    return CheckpointTimestamp(
        checkpoint_size=checkpoint.size,
        tsa_url=authority.url,
        response=bytes(body),
        sha256=attested.sha256,
        attested_at=attested.time,
        authority=attested.authority[:1024],
        serial_number=str(attested.serial_number),
        fetched_at=datetime.now(UTC),
    )
