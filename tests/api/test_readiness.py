"""/healthz is liveness, /readyz readiness; a lost database answers 503, not 500."""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from fastapi import Depends
from sqlalchemy.exc import (
    DBAPIError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    ProgrammingError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeout

from service.api.deps import Public
from service.app import create_app
from service.db import Database, open_database
from service.operations.readiness import CHECK_TIMEOUT_SECONDS, database_failure
from service.runtime import Runtime
from service.storage import FilesystemStore, ObjectStore, S3Store
from tests.harness import Locker, free_port, serving


def _unreachable_database(backend: str, tmp_path: Path) -> Database:
    if backend == "postgres-s3":
        # Nothing listens on a port just freed: every connection is refused.
        return open_database(f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/locker")
    # A directory where the database file should be: SQLite cannot open it.
    return open_database(f"sqlite:///{tmp_path}")


def _unreachable_store(backend: str, tmp_path: Path) -> ObjectStore:
    if backend == "postgres-s3":
        return _s3_store(f"127.0.0.1:{free_port()}")
    store = FilesystemStore(tmp_path / "vanishing-store")
    shutil.rmtree(tmp_path / "vanishing-store")  # as when its volume is unmounted
    return store


def _s3_store(endpoint: str) -> S3Store:
    return S3Store(
        endpoint=endpoint, access_key="a", secret_key="b", bucket="evidence", secure=False
    )


@contextmanager
def _client_of(runtime: Runtime) -> Iterator[httpx.Client]:
    with serving(runtime) as base_url, httpx.Client(base_url=base_url, timeout=60) as client:
        yield client


def test_a_healthy_locker_is_ready(locker: Locker) -> None:
    with locker.client(api_key="") as client:
        ready = client.get("/readyz")
        alive = client.get("/healthz")
    assert (ready.status_code, ready.json()) == (200, {"status": "ready"})
    assert (alive.status_code, alive.json()) == (200, {"status": "ok"})


def test_an_unreachable_database_makes_the_locker_unready_and_requests_503(
    locker: Locker, backend: str, tmp_path: Path
) -> None:
    database = _unreachable_database(backend, tmp_path)
    cut_off = dataclasses.replace(locker.runtime, database=database)
    try:
        with _client_of(cut_off) as client:
            ready = client.get("/readyz")
            alive = client.get("/healthz")
            listed = client.get(
                "/v1/evidence", headers={"Authorization": f"Bearer {locker.api_key}"}
            )
            resumed = client.head(
                "/v1/uploads/any",
                headers={"Authorization": f"Bearer {locker.api_key}", "Tus-Resumable": "1.0.0"},
            )
    finally:
        database.dispose()
    assert ready.status_code == 503
    body = ready.json()
    assert (body["status"], body["storage"]) == ("unavailable", "ok")
    assert body["database"].startswith("OperationalError: "), body
    assert "\n" not in body["database"]
    assert alive.status_code == 200  # liveness does not depend on the database
    assert listed.status_code == 503
    assert listed.headers["content-type"] == "application/problem+json"
    assert listed.headers["retry-after"] == "10"
    assert listed.json()["detail"] == "database unavailable: try again later"
    # A tus client learns the protocol version from every answer, this one too.
    assert (resumed.status_code, resumed.headers["Tus-Resumable"]) == (503, "1.0.0")


def test_an_unreachable_store_makes_the_locker_unready(
    locker: Locker, backend: str, tmp_path: Path
) -> None:
    cut_off = dataclasses.replace(locker.runtime, store=_unreachable_store(backend, tmp_path))
    with _client_of(cut_off) as client:
        ready = client.get("/readyz")
    assert ready.status_code == 503
    body = ready.json()
    assert (body["status"], body["database"]) == ("unavailable", "ok")
    assert body["storage"].startswith("listing staging"), body


@pytest.mark.parametrize("backend", ["sqlite-fs"])
def test_a_stalled_store_is_reported_within_the_check_timeout(locker: Locker) -> None:
    # Accepts connections (the kernel's backlog) but never answers a request.
    with socket.create_server(("127.0.0.1", 0)) as stalled:
        endpoint = f"127.0.0.1:{stalled.getsockname()[1]}"
        cut_off = dataclasses.replace(locker.runtime, store=_s3_store(endpoint))
        with _client_of(cut_off) as client:
            started = time.monotonic()
            ready = client.get("/readyz")
            elapsed = time.monotonic() - started
            stalled.close()  # resets the waiting connection, so the abandoned check ends
    assert ready.status_code == 503
    assert ready.json()["storage"] == f"no answer within {CHECK_TIMEOUT_SECONDS:g} s"
    assert elapsed < CHECK_TIMEOUT_SECONDS + 3


def _answer_to(error: Exception) -> httpx.Response:
    """What the app answers when a handler raises `error` (no runtime needed)."""
    app = create_app()

    @app.get("/raise", dependencies=[Depends(Public())])
    def raise_it() -> None:
        raise error

    async def ask() -> httpx.Response:
        transport = httpx.ASGITransport(app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://locker") as client:
            return await client.get("/raise")

    return asyncio.run(ask())


@pytest.mark.parametrize(
    "error",
    [
        OperationalError("INSERT …", {}, Exception("database or disk is full")),
        InterfaceError("SELECT 1", {}, Exception("connection already closed")),
        DBAPIError("SELECT 1", {}, Exception("server closed"), connection_invalidated=True),
    ],
    ids=["operational", "interface", "invalidated"],
)
def test_database_connection_failures_answer_503(error: Exception) -> None:
    answer = _answer_to(error)
    assert answer.status_code == 503
    assert answer.headers["retry-after"] == "10"
    assert answer.json()["detail"] == "database unavailable: try again later"


def test_other_database_errors_stay_500_and_races_409() -> None:
    assert _answer_to(ProgrammingError("SELEC 1", {}, Exception("syntax"))).status_code == 500
    assert _answer_to(IntegrityError("INSERT …", {}, Exception("unique"))).status_code == 409


def test_database_failure_is_one_line_without_the_statement() -> None:
    cause = Exception("connection to server failed: refused\n\tIs the server running?")
    error = OperationalError("SELECT secret FROM keys WHERE k = %(k)s", {"k": "hunter2"}, cause)
    assert database_failure(error) == "OperationalError: connection to server failed: refused"


@pytest.mark.parametrize("backend", ["postgres-s3"], indirect=True)
def test_a_server_out_of_database_connections_answers_503(
    make_locker: Callable[..., Locker],
) -> None:
    locker = make_locker(database_pool_size=4, database_pool_timeout=0.5)
    engine = locker.runtime.database.engine
    with locker.client() as client:
        incident = client.post("/v1/incidents", json={"title": "before"}).json()["id"]
        held = []
        try:
            while True:  # everything the server's own threads do not hold
                held.append(engine.connect())
        except PoolTimeout:
            pass
        try:
            busy = client.get(f"/v1/incidents/{incident}")
            assert busy.status_code == 503, busy.text
            assert busy.headers["retry-after"] == "10"
            assert "too busy to reach its database" in busy.json()["detail"]
        finally:
            for connection in held:
                connection.close()
        assert client.get(f"/v1/incidents/{incident}").status_code == 200
