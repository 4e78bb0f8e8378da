"""The locker as an operator runs it: `python -m service ...` processes on one database.

For the tests that start several processes, kill one, restart it: every process's
output goes to one log file, shown when a process fails to start.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.harness import free_port

ROOT = Path(__file__).resolve().parents[1]
LOCKER = (sys.executable, "-m", "service")


def locker_environment(**settings: str) -> dict[str, str]:
    """This process's environment without any LOCKER_* of its own, plus `settings`."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("LOCKER_")}
    return inherited | settings


def bootstrap_key(env: dict[str, str], organisation: str) -> str:
    """`locker admin bootstrap`: a new organisation's admin API key."""
    done = subprocess.run(
        [*LOCKER, "admin", "bootstrap", "--org", organisation, "--email", "lead@example.org"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip().splitlines()[-1]


@contextmanager
def locker_process(
    args: list[str], env: dict[str, str], log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """`locker ARGS` running until the block ends (terminated, unless it already died)."""
    with log.open("ab") as out:
        process = subprocess.Popen([*LOCKER, *args], env=env, cwd=ROOT, stdout=out, stderr=out)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=30)


@contextmanager
def serving_process(
    env: dict[str, str], log: Path
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`locker serve` on a free port, once it is ready: (its URL, the process)."""
    port = free_port()
    with locker_process(["serve", "--port", str(port)], env, log) as process:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert process.poll() is None, log.read_text(errors="replace")[-3000:]
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            pytest.fail(f"the locker did not start:\n{log.read_text(errors='replace')[-3000:]}")
        yield url, process
