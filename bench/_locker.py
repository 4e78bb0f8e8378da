"""The locker as an operator runs it, for the benchmarks: a separate server process.

Shared by `upload_throughput.py` and `upload_memory.py`: a scratch PostgreSQL database,
the environment for the S3 backend, and `run_locker`, which bootstraps an API key with
`python -m service admin bootstrap` and serves with `python -m service serve`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # for tests.seaweed and tests.harness

from tests.harness import free_port  # noqa: E402
from tests.seaweed import SeaweedServer, run_seaweed, stop_process  # noqa: E402

ADMIN_URL = os.environ.get("LOCKER_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
_START_TIMEOUT_S = 60.0


@contextmanager
def scratch_database(prefix: str, *, keep: bool = False) -> Iterator[str]:
    """A new, empty PostgreSQL database (its URL), dropped on exit unless `keep`."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = f"{ADMIN_URL.rpartition('/')[0]}/{name}"
    try:
        yield url
    finally:
        if keep:
            print(f"kept the database: {url}")
        else:
            with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
                admin.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                )


def s3_environment(s3: SeaweedServer, *, database_url: str, data_dir: Path) -> dict[str, str]:
    """LOCKER_* settings for PostgreSQL and the S3 store on `s3`."""
    return {
        "LOCKER_DATA_DIR": str(data_dir),
        "LOCKER_DATABASE_URL": database_url,
        "LOCKER_S3_ENDPOINT": s3.endpoint,
        "LOCKER_S3_ACCESS_KEY": s3.access_key,
        "LOCKER_S3_SECRET_KEY": s3.secret_key,
        "LOCKER_S3_BUCKET": "bench-evidence",
        "LOCKER_S3_SECURE": "false",
    }


def embedded_environment(data_dir: Path) -> dict[str, str]:
    """LOCKER_* settings for the embedded default: SQLite and the filesystem store."""
    return {"LOCKER_DATA_DIR": str(data_dir)}


@dataclass(frozen=True, slots=True, kw_only=True)
class Locker:
    """A running locker process: where it listens, its pid and an admin API key."""

    url: str
    pid: int
    api_key: str
    env: dict[str, str]  # its LOCKER_* settings: another process can share its database and store


def _environment(locker_env: dict[str, str]) -> dict[str, str]:
    """The caller's environment without any LOCKER_* of its own, plus `locker_env`."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("LOCKER_")}
    return inherited | locker_env


def _bootstrap(env: dict[str, str]) -> str:
    """Create an organisation and admin; the API key is the last line of stdout."""
    command = [sys.executable, "-m", "service", "admin", "bootstrap"]
    command += ["--org", "Benchmark Project", "--email", "bench@example.org"]
    done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"bootstrap failed ({done.returncode}):\n{done.stderr}")
    return done.stdout.strip().splitlines()[-1]


def _wait_until_healthy(url: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + _START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    tail = log_path.read_text(errors="replace")[-3000:]
    raise RuntimeError(f"the locker did not become healthy:\n{tail}")


@contextmanager
def run_locker(locker_env: dict[str, str], *, log_path: Path) -> Iterator[Locker]:
    """Bootstrap, then serve on a free port as a separate process; stop it on exit."""
    api_key = _bootstrap(_environment(locker_env))
    with serve_locker(locker_env, log_path=log_path) as (url, pid):
        yield Locker(url=url, pid=pid, api_key=api_key, env=locker_env)


@contextmanager
def serve_locker(locker_env: dict[str, str], *, log_path: Path) -> Iterator[tuple[str, int]]:
    """`locker serve` on a free port as a separate process, once healthy: (URL, pid)."""
    port = free_port()
    with locker_process(["serve", "--port", str(port)], locker_env, log_path=log_path) as process:
        url = f"http://127.0.0.1:{port}"
        _wait_until_healthy(url, process, log_path)
        yield url, process.pid


@contextmanager
def locker_process(
    args: list[str], locker_env: dict[str, str], *, log_path: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """`python -m service ARGS` as a separate process until the block ends."""
    command = [sys.executable, "-m", "service", *args]
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            command, env=_environment(locker_env), cwd=ROOT, stdout=log, stderr=log
        )
    try:
        yield process
    finally:
        stop_process(process)


def bootstrap_key(locker_env: dict[str, str]) -> str:
    """`locker admin bootstrap` with these settings: the new admin's API key."""
    return _bootstrap(_environment(locker_env))


def start_locker(
    stack: ExitStack, root: Path, *, backend: str, database: str, **settings: str
) -> Locker:
    """A locker on `backend` ("s3": SeaweedFS and a scratch PostgreSQL database named
    after `database`; "embedded": SQLite and the filesystem) with these LOCKER_*
    `settings` besides, running until `stack` closes."""
    if backend == "s3":
        s3 = stack.enter_context(run_seaweed(root / "seaweed"))
        url = stack.enter_context(scratch_database(database))
        env = s3_environment(s3, database_url=url, data_dir=root / "data")
    else:
        env = embedded_environment(root / "data")
    return stack.enter_context(run_locker(env | settings, log_path=root / "locker.log"))
