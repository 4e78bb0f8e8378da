"""A real locker HTTP server for integration tests, on a free loopback port."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import uvicorn

from service.accounts.members import bootstrap
from service.app import create_app
from service.runtime import Runtime


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass(frozen=True, slots=True, kw_only=True)
class Locker:
    """A running server, its runtime, and an API key of a freshly bootstrapped org."""

    base_url: str
    runtime: Runtime
    api_key: str
    organisation_id: str

    def client(self, api_key: str | None = None, **kwargs: object) -> httpx.Client:
        key = self.api_key if api_key is None else api_key
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=60, **kwargs)  # type: ignore[arg-type]

    def new_organisation(self, name: str) -> str:
        """Bootstrap another organisation; returns its API key."""
        return bootstrap(self.runtime, organisation=name, email=f"admin@{name}.example").api_key


@contextmanager
def serving(runtime: Runtime) -> Iterator[str]:
    """Run the app over `runtime` on a free port; yields its base URL."""
    # Bound here and handed over: a port only looked up could be taken by another test
    # worker before the server binds it.
    listening = socket.socket()
    listening.bind(("127.0.0.1", 0))
    port = listening.getsockname()[1]
    config = uvicorn.Config(
        create_app(runtime=runtime),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="on",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listening]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the locker test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)
        listening.close()


@contextmanager
def serve(runtime: Runtime) -> Iterator[Locker]:
    """A server over `runtime` with a freshly bootstrapped organisation."""
    with serving(runtime) as base_url:
        made = bootstrap(
            runtime, organisation="Tarhuna Documentation Project", email="lead@example.org"
        )
        yield Locker(
            base_url=base_url,
            runtime=runtime,
            api_key=made.api_key,
            organisation_id=made.organisation_id,
        )


def analysed(client: httpx.Client, evidence_id: str) -> dict[str, Any]:
    """The item once its background analysis is recorded (it runs after the 201)."""
    for _ in range(600):
        detail = client.get(f"/v1/evidence/{evidence_id}").json()
        if detail["analysis"] is not None:
            return dict(detail)
        time.sleep(0.05)
    raise AssertionError(f"evidence {evidence_id} was never analysed")
