"""Watching a locker's log from outside: is today's checkpoint an extension of the last?

A partner NGO runs `locker verify --server URL --verifier-key KEY --state FILE` from cron. It
fetches the latest signed checkpoint, checks the signature against the key it holds,
and checks a consistency proof (RFC 9162 §2.1.4) from the checkpoint it saved last
time; only then does it save the new one. A rewritten or forked log cannot pass.
Standard library only (urllib), like the rest of the offline verifier.
"""

from __future__ import annotations

import base64
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from service.core import merkle
from service.core.checkpoint import Checkpoint, KeyHistory, NoteVerifier, open_checkpoint
from service.errors import Error

_TIMEOUT = 30


@dataclass(slots=True)
class MonitorResult:
    """What the monitor saw: `findings` are integrity failures; `unchecked` says why the
    check could not be made (the server unreachable or refusing); neither means consistent."""

    findings: list[str] = field(default_factory=list)
    unchecked: str | None = None
    previous: Checkpoint | None = None
    current: Checkpoint | None = None

    @property
    def ok(self) -> bool:
        return not self.findings and self.unchecked is None


def fetch(url: str, api_key: str | None) -> bytes:
    """GET `url` (with the API key, if given); urllib's errors propagate."""
    request = urllib.request.Request(url)
    if api_key:
        request.add_header("Authorization", f"Bearer {api_key}")
    with urllib.request.urlopen(request, timeout=_TIMEOUT) as response:
        body: bytes = response.read()
        return body


def check_server(
    server: str, verifier: NoteVerifier | KeyHistory, state: Path, *, api_key: str | None = None
) -> MonitorResult:
    """Compare the server's latest checkpoint with the one saved in `state`."""
    result = MonitorResult()
    base = server.rstrip("/")
    try:
        note = fetch(f"{base}/v1/custody/checkpoint", api_key).decode("utf-8")
        result.current = open_checkpoint(note, verifier)
    except (urllib.error.URLError, OSError) as exc:
        # An outage is not evidence of tampering: the check was not made (exit 2).
        result.unchecked = f"cannot fetch the checkpoint: {exc}"
        return result
    except UnicodeDecodeError as exc:
        result.findings.append(f"the server's checkpoint is not UTF-8 text: {exc}")
        return result
    except Error as exc:
        result.findings.append(f"the server's checkpoint does not verify: {exc.diagnostics()}")
        return result
    if state.exists():
        try:
            result.previous = open_checkpoint(state.read_text("utf-8"), verifier)
        except Error as exc:
            result.findings.append(f"the saved checkpoint does not verify: {exc.diagnostics()}")
            return result
        _check_consistency(base, api_key, result.previous, result.current, result)
    if result.ok:
        _save(state, note)
    return result


def _check_consistency(
    base: str, api_key: str | None, old: Checkpoint, new: Checkpoint, result: MonitorResult
) -> None:
    if new.size < old.size:
        result.findings.append(f"the log shrank: saved size {old.size}, now {new.size}")
        return
    if new.size == old.size:
        if new.root_hash != old.root_hash:
            result.findings.append(f"fork: two different roots for size {new.size}")
        return
    query = urllib.parse.urlencode({"first": old.size, "second": new.size})
    try:
        body = fetch(f"{base}/v1/custody/proof/consistency?{query}", api_key)
    except (urllib.error.URLError, OSError) as exc:
        result.unchecked = f"cannot fetch the consistency proof: {exc}"
        return
    try:
        answer = json.loads(body)
        proof = [base64.b64decode(h, validate=True) for h in answer["hashes"]]
        merkle.verify_consistency(
            first=old.size,
            second=new.size,
            first_root=old.root_hash,
            second_root=new.root_hash,
            proof=proof,
        )
    except (ValueError, KeyError, TypeError) as exc:
        # The server answered, but not with a proof: the log is not shown consistent.
        result.findings.append(f"the server's consistency proof is malformed: {exc}")
    except Error as exc:
        result.findings.append(
            f"the log at size {new.size} is not an extension of the saved size {old.size}: "
            f"{exc.diagnostics()}"
        )


def _save(state: Path, note: str) -> None:
    """Replace the state file atomically: a crash never leaves half a checkpoint."""
    state.parent.mkdir(parents=True, exist_ok=True)
    temporary = state.with_name(state.name + ".tmp")
    temporary.write_text(note, "utf-8")
    with temporary.open("rb") as handle:
        os.fsync(handle.fileno())
    temporary.replace(state)
