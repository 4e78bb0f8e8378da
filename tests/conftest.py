"""Shared fixtures. Storage: a session-wide SeaweedFS and a store per backend."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.storage import FilesystemStore, ObjectStore, S3Store
from tests.seaweed import SeaweedServer, run_seaweed

# The whole locker over each backend pair: tests/locker_fixtures.py.
pytest_plugins = ["tests.locker_fixtures"]

# Contract-test backend name → the fixture that builds it.
_STORE_FIXTURES = {"filesystem": "fs_store", "s3": "s3_store"}


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedServer]:
    """One real S3 server (SeaweedFS) for the whole session; fails the tests if it cannot start."""
    with run_seaweed(tmp_path_factory.mktemp("seaweed")) as server:
        yield server


@pytest.fixture
def s3_store(s3_server: SeaweedServer) -> S3Store:
    """An S3Store on a fresh Object Lock bucket of its own."""
    store = S3Store(
        endpoint=s3_server.endpoint,
        access_key=s3_server.access_key,
        secret_key=s3_server.secret_key,
        bucket=f"test-{uuid.uuid4().hex[:16]}",
        secure=False,
    )
    store.ensure_bucket()
    return store


@pytest.fixture
def fs_store(tmp_path: Path) -> FilesystemStore:
    """A FilesystemStore in this test's temporary directory."""
    return FilesystemStore(tmp_path / "store")


@pytest.fixture(params=["filesystem", pytest.param("s3", marks=pytest.mark.s3)])
def object_store(request: pytest.FixtureRequest) -> ObjectStore:
    """Each storage backend in turn, for the shared contract test."""
    store: ObjectStore = request.getfixturevalue(_STORE_FIXTURES[request.param])
    return store
