"""`locker serve` as deployed: forwarded headers and slow headers, against a real process.

Without LOCKER_TRUSTED_PROXIES a client cannot pick its own address with
X-Forwarded-For (uvicorn's default believes it from 127.0.0.1); with it, failures are
still limited per key prefix. A client that trickles its header is disconnected.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.harness import free_port

_BOUND = 30.0  # seconds any wait here may take before the test fails


@contextmanager
def _serving(data_dir: Path, **env: str) -> Iterator[str]:
    port = free_port()
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LOCKER_")}
    settings = {"LOCKER_DATA_DIR": str(data_dir), "LOCKER_PORT": str(port)} | env
    process = subprocess.Popen(
        [sys.executable, "-m", "service", "serve"],
        env=clean | settings,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + _BOUND
        while True:
            assert process.poll() is None, "locker serve exited"
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "locker serve did not start"
            time.sleep(0.1)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=_BOUND)


def _guesses(base: str, prefixes: list[str], addresses: list[str]) -> list[int]:
    with httpx.Client(base_url=base, timeout=10) as client:
        return [
            client.get(
                "/v1/incidents",
                headers={"Authorization": f"Bearer lk_{p}_guess", "X-Forwarded-For": a},
            ).status_code
            for p, a in zip(prefixes, addresses, strict=True)
        ]


def test_forwarded_for_counts_only_from_trusted_proxies(tmp_path: Path) -> None:
    addresses = [f"203.0.113.{n}" for n in range(12)]
    prefixes = [f"{n:012d}" for n in range(12)]
    with _serving(tmp_path / "direct") as base:
        rotated = _guesses(base, prefixes, addresses)
    assert rotated[:10] == [401] * 10 and rotated[10:] == [429, 429], rotated
    with _serving(tmp_path / "proxied", LOCKER_TRUSTED_PROXIES="127.0.0.1") as base:
        many_keys = _guesses(base, prefixes, addresses)
        one_key = _guesses(base, ["000000000099"] * 12, [f"198.51.100.{n}" for n in range(12)])
    assert many_keys == [401] * 12  # each guess from its own (forwarded) address
    assert one_key[:10] == [401] * 10 and one_key[10:] == [429, 429], one_key


def test_a_slow_header_is_cut_off(tmp_path: Path) -> None:
    with _serving(tmp_path, LOCKER_HEADER_TIMEOUT_SECONDS="1") as base:
        port = int(base.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=_BOUND) as slow:
            slow.sendall(b"GET /healthz HTTP/1.1\r\nHost: locker\r\nX-Slow: ")
            slow.settimeout(0.25)
            closed = False
            deadline = time.monotonic() + _BOUND
            while not closed and time.monotonic() < deadline:
                try:
                    slow.sendall(b"a")  # one header byte at a time, never the end
                    closed = slow.recv(1024) == b""
                except TimeoutError:
                    continue
                except (BrokenPipeError, ConnectionResetError):
                    closed = True
        assert closed, "the server kept a trickling header's connection open"
        assert httpx.get(f"{base}/healthz", timeout=10).status_code == 200
