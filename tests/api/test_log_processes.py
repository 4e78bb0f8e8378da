"""One log, several processes: concurrent appends, a SIGKILL, a restart — and nothing lost.

Two `locker serve` processes share one PostgreSQL database and one signing key. Clients
alternate between them creating incidents (each a custody append) while one server is
killed with SIGKILL and later restarted. Afterwards every acknowledged entry must be in
the log at the index it was acknowledged with, the indexes must be gap-free, the root
recomputed from every leaf must equal the latest signed checkpoint, and every checkpoint
seen during the run must be consistent with it — checked by the independent verifier.
"""

from __future__ import annotations

import base64
import hashlib
import signal
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.databases import PostgresTemplate
from tests.independent.tiles import TileReader
from tests.independent.verifier import open_checkpoint, verify_consistency
from tests.processes import bootstrap_key, locker_environment, serving_process

_WRITERS = 8
_PER_WRITER = 30


@dataclass
class _Run:
    """What the clients were told: acknowledged (index, incident id) pairs."""

    acknowledged: list[tuple[int, str]] = field(default_factory=list)
    acknowledged_at: list[float] = field(default_factory=list)  # time.monotonic()
    refused: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _writer(urls: list[str], key: str, number: int, run: _Run) -> None:
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(headers=headers, timeout=30) as client:
        for n in range(_PER_WRITER):
            url = urls[(number + n) % len(urls)]
            try:
                response = client.post(f"{url}/v1/incidents", json={"title": f"w{number}-{n}"})
            except httpx.TransportError as exc:  # a killed server: not acknowledged
                with run.lock:
                    run.refused.append(type(exc).__name__)
                continue
            if response.status_code != 201:
                with run.lock:
                    run.refused.append(f"{response.status_code} {response.text[:200]}")
                continue
            body = response.json()
            with run.lock:
                run.acknowledged.append((body["custody_index"], body["id"]))
                run.acknowledged_at.append(time.monotonic())


def _checkpoint(url: str, verifier_key: str) -> tuple[int, bytes]:
    _, size, root = open_checkpoint(httpx.get(f"{url}/log/checkpoint").text, verifier_key)
    return size, root


def _all_leaves(url: str, key: str, size: int) -> list[bytes]:
    leaves: list[bytes] = []
    headers = {"Authorization": f"Bearer {key}"}
    while len(leaves) < size:
        page = httpx.get(
            f"{url}/v1/custody/entries",
            params={"start": len(leaves), "limit": 1000},
            headers=headers,
        ).json()
        assert page, f"entries end at {len(leaves)} of {size}"
        assert [e["index"] for e in page] == list(range(len(leaves), len(leaves) + len(page)))
        leaves += [base64.b64decode(e["leaf_b64"]) for e in page]
    return leaves


def _root(leaf_hashes: list[bytes]) -> bytes:
    """RFC 9162 MTH, computed from scratch."""
    if len(leaf_hashes) == 1:
        return leaf_hashes[0]
    k = 1 << ((len(leaf_hashes) - 1).bit_length() - 1)
    left, right = _root(leaf_hashes[:k]), _root(leaf_hashes[k:])
    return hashlib.sha256(b"\x01" + left + right).digest()


def test_two_servers_one_log_survive_a_sigkill(
    postgres_template: PostgresTemplate, tmp_path: Path
) -> None:
    with ExitStack() as stack:
        database_url = stack.enter_context(postgres_template.fresh())
        env = locker_environment(
            LOCKER_DATA_DIR=str(tmp_path / "data"), LOCKER_DATABASE_URL=database_url
        )
        key = bootstrap_key(env, "Two Servers")
        log = tmp_path / "servers.log"
        url_a, process_a = stack.enter_context(serving_process(env, log))
        url_b, _ = stack.enter_context(serving_process(env, log))
        verifier_key = httpx.get(f"{url_a}/v1/custody/verifier-key").text
        assert httpx.get(f"{url_b}/v1/custody/verifier-key").text == verifier_key

        run = _Run()
        seen = [_checkpoint(url_a, verifier_key)]
        writers = [
            threading.Thread(target=_writer, args=([url_a, url_b], key, n, run))
            for n in range(_WRITERS)
        ]
        for writer in writers:
            writer.start()
        while len(run.acknowledged) < _WRITERS * _PER_WRITER // 3:
            time.sleep(0.01)
        seen.append(_checkpoint(url_b, verifier_key))
        # A started first, so A's sequencer leads; B integrates nothing until A is gone.
        process_a.send_signal(signal.SIGKILL)  # mid-append, with requests in flight
        killed_at = time.monotonic()
        process_a.wait(timeout=10)
        for writer in writers:
            writer.join(timeout=120)
        assert not any(w.is_alive() for w in writers)
        seen.append(_checkpoint(url_b, verifier_key))

        # Requests to the killed server failed; every other one was acknowledged.
        assert len(run.acknowledged) + len(run.refused) == _WRITERS * _PER_WRITER
        assert len(run.acknowledged) > _WRITERS * _PER_WRITER // 2
        assert run.refused, "no request reached the killed server"
        assert all(reason.endswith("Error") for reason in run.refused), run.refused
        # B took the sequencing over: its writers were answered again within 5 s.
        after = [t - killed_at for t in run.acknowledged_at if t > killed_at]
        assert after, "no request was acknowledged after the kill"
        assert min(after) < 5, f"first acknowledgement {min(after):.1f} s after the kill"

        url_a2, _ = stack.enter_context(serving_process(env, log))  # restarted
        size, root = _checkpoint(url_a2, verifier_key)
        leaves = _all_leaves(url_a2, key, size)

        # No duplicate index, every acknowledged entry at its index, naming its incident.
        indexes = [index for index, _ in run.acknowledged]
        assert len(set(indexes)) == len(indexes)
        for index, incident_id in run.acknowledged:
            assert incident_id.encode() in leaves[index], f"entry {index} is not {incident_id}"
        # The root of every leaf, recomputed from scratch, is the signed one.
        assert _root([hashlib.sha256(b"\x00" + leaf).digest() for leaf in leaves]) == root
        # Every checkpoint seen during the run is a prefix of the final log.
        tiles = TileReader(lambda path: httpx.get(f"{url_b}/log/{path}").content, size)
        for first, first_root in seen:
            if first < size:
                proof = tiles.consistency_proof(first)
                verify_consistency(first, size, first_root, root, proof)
