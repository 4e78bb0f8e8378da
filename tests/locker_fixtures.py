"""Fixtures that run the whole locker: (a) SQLite + filesystem, (b) PostgreSQL + S3."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from service.runtime import Runtime, open_runtime
from service.settings import Settings
from tests.databases import PostgresTemplate
from tests.harness import Locker, serve
from tests.seaweed import SeaweedServer

BACKENDS = ["sqlite-fs", "postgres-s3"]


@pytest.fixture(scope="session")
def postgres_template() -> Iterator[PostgresTemplate]:
    template = PostgresTemplate()
    yield template
    template.drop()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


SettingsFactory = Callable[..., Settings]


@pytest.fixture
def make_settings(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[SettingsFactory]:
    """Settings for this backend; each call gets its own database and bucket."""
    with ExitStack() as stack:

        def factory(**overrides: object) -> Settings:
            values: dict[str, object] = {"data_dir": tmp_path / f"data-{uuid.uuid4().hex[:6]}"}
            if backend == "postgres-s3":
                template: PostgresTemplate = request.getfixturevalue("postgres_template")
                s3: SeaweedServer = request.getfixturevalue("s3_server")
                url = stack.enter_context(template.fresh())
                values |= {
                    "database_url": url,
                    "s3_endpoint": s3.endpoint,
                    "s3_access_key": s3.access_key,
                    "s3_secret_key": s3.secret_key,
                    "s3_bucket": f"evidence-{uuid.uuid4().hex[:10]}",
                    "s3_secure": False,
                }
            return Settings(**(values | overrides))  # type: ignore[arg-type]

        yield factory


@pytest.fixture
def make_runtime(make_settings: SettingsFactory) -> Iterator[Callable[..., Runtime]]:
    opened: list[Runtime] = []

    def factory(**overrides: object) -> Runtime:
        runtime = open_runtime(make_settings(**overrides))
        opened.append(runtime)
        return runtime

    yield factory
    for runtime in opened:
        runtime.close()


@pytest.fixture
def make_locker(make_runtime: Callable[..., Runtime]) -> Iterator[Callable[..., Locker]]:
    """Start a real HTTP server over a fresh runtime (settings overridable)."""
    with ExitStack() as stack:

        def factory(**overrides: object) -> Locker:
            return stack.enter_context(serve(make_runtime(**overrides)))

        yield factory


@pytest.fixture
def locker(make_locker: Callable[..., Locker]) -> Locker:
    return make_locker()
