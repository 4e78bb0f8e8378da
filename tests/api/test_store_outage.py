"""An object-store outage answers 503 with Retry-After, as a database outage does."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.harness import Locker
from tests.seaweed import run_seaweed, stop_process


def _assert_retry_later(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["retry-after"] == "10"
    assert "\n" not in response.json()["detail"]


@pytest.mark.s3
@pytest.mark.parametrize("backend", ["postgres-s3"])
def test_a_stopped_s3_server_answers_503_with_retry_after(
    make_locker: Callable[..., Locker], tmp_path: Path
) -> None:
    # A SeaweedFS of this test's own, so stopping it leaves the session's server alone.
    with run_seaweed(tmp_path / "own-seaweed") as own:
        locker = make_locker(
            s3_endpoint=own.endpoint, s3_access_key=own.access_key, s3_secret_key=own.secret_key
        )
        with locker.client() as client:
            uploaded = client.post(
                "/v1/evidence", files=[("file", ("a.txt", b"kept", "text/plain"))]
            )
            assert uploaded.status_code == 201, uploaded.text
            item = uploaded.json()["id"]
            stop_process(own.process)
            download = client.get(f"/v1/evidence/{item}/content")
            upload = client.post("/v1/evidence", files=[("file", ("b.txt", b"new", "text/plain"))])
            record = client.get(f"/v1/evidence/{item}")
    _assert_retry_later(download)
    _assert_retry_later(upload)
    assert record.status_code == 200  # what the database holds is still served
