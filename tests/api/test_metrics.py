"""Metrics answer an operator's questions; every log line of a request carries its id."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import logging
from pathlib import Path

import httpx
import pytest
from fastapi import Depends
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from service.api.deps import Public
from service.app import create_app
from service.db import open_database
from service.db.models import Evidence
from service.logs import route_standard_logging
from tests.harness import Locker, analysed, serving
from tests.processes import locker_environment, serving_process

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
CONTENT = b"%PDF-1.4 metrics test\n" + bytes(range(256)) * 40


def _scrape(client: httpx.Client) -> Samples:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def _value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def _moved(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return _value(after, name, **labels) - _value(before, name, **labels)


def test_an_upload_a_read_and_a_failed_login_move_their_series(
    locker: Locker, backend: str
) -> None:
    store = "filesystem" if backend == "sqlite-fs" else "s3"
    with locker.client() as client, locker.client(api_key="not-a-key") as stranger:
        before = _scrape(client)
        uploaded = client.post("/v1/evidence", files=[("file", ("m.pdf", CONTENT, "text/plain"))])
        assert uploaded.status_code == 201, uploaded.text
        item = uploaded.json()["id"]
        again = client.post("/v1/evidence", files=[("file", ("m.pdf", CONTENT, "text/plain"))])
        assert again.json()["duplicate"] is True
        assert client.get(f"/v1/evidence/{item}").status_code == 200
        assert stranger.get("/v1/evidence").status_code == 401
        assert client.get("/v1/custody/checkpoint").status_code == 200
        after = _scrape(client)

    read = {"method": "GET", "route": "/v1/evidence/{evidence_id}"}
    assert _moved(before, after, "locker_http_requests_total", **read, status="200") == 1
    assert _moved(before, after, "locker_http_request_duration_seconds_count", **read) == 1
    listing = {"method": "GET", "route": "/v1/evidence", "status": "401"}
    assert _moved(before, after, "locker_http_requests_total", **listing) == 1
    # The route's template is the label, never the item's id.
    assert not [key for key in after if any(item in value for _, value in key[1])]
    assert _moved(before, after, "locker_uploads_total", store=store, outcome="stored") == 1
    assert _moved(before, after, "locker_uploads_total", store=store, outcome="duplicate") == 1
    assert _moved(before, after, "locker_upload_bytes_total", store=store) == len(CONTENT)
    for outcome in ("stored", "duplicate"):
        counted = _moved(before, after, "locker_ingest_duration_seconds_count", outcome=outcome)
        assert counted == 1
    assert _moved(before, after, "locker_authentication_failures_total") == 1
    appended = _moved(before, after, "locker_custody_appends_total")
    assert appended >= 2  # each upload appends its ingest entry
    assert _moved(before, after, "locker_custody_append_duration_seconds_count") == appended


def test_the_state_series_are_read_from_the_database(locker: Locker) -> None:
    with locker.client() as client:
        uploaded = client.post("/v1/evidence", files=[("file", ("s.txt", b"state", "text/plain"))])
        assert uploaded.status_code == 201
        checkpoint = client.get("/v1/custody/checkpoint")
        entries = client.get("/v1/custody/entries").json()
        samples = _scrape(client)
    signed_size = int(checkpoint.text.splitlines()[1])
    assert _value(samples, "locker_state_up") == 1
    assert _value(samples, "locker_log_entries") >= len(entries) >= 1
    assert _value(samples, "locker_log_checkpoint_entries") == signed_size
    assert 0 <= _value(samples, "locker_log_checkpoint_age_seconds") < 3600
    states = {dict(labels)["state"] for name, labels in samples if name == "locker_jobs"}
    assert states == {"queued", "running", "failed"}


@pytest.mark.parametrize("backend", ["sqlite-fs"])
def test_a_changed_object_counts_as_an_integrity_failure(locker: Locker) -> None:
    with locker.client() as client:
        uploaded = client.post("/v1/evidence", files=[("file", ("i.pdf", CONTENT, "text/plain"))])
        item = uploaded.json()["id"]
        analysed(client, item)
        before = _scrape(client)
        with locker.runtime.database.session() as session:
            stored = session.get(Evidence, item)
            assert stored is not None
            key = stored.object_key
        path = locker.runtime.settings.data_dir / "store" / "objects" / key
        data = bytearray(path.read_bytes())
        data[-1] ^= 0x01
        path.chmod(0o600)
        path.write_bytes(bytes(data))
        with pytest.raises(httpx.TransportError):  # the download is broken off
            client.get(f"/v1/evidence/{item}/content")
        after = _scrape(client)
    assert _moved(before, after, "locker_integrity_failures_total", kind="ContentChanged") == 1


def _log_lines(log: Path) -> list[dict[str, object]]:
    lines = log.read_text().splitlines()
    return [json.loads(line) for line in lines if line.startswith("{")]


def test_locker_serve_writes_json_access_lines_with_the_request_id(tmp_path: Path) -> None:
    env = locker_environment(LOCKER_DATA_DIR=str(tmp_path / "data"))
    log = tmp_path / "serve.log"
    with serving_process(env, log) as (url, _process), httpx.Client(base_url=url) as client:
        given = client.get("/v1/evidence", headers={"X-Request-ID": "field-upload-0042"})
        junk = client.get("/v1/evidence", headers={"X-Request-ID": "two words"})
        nameless = client.get("/v1/nowhere")
    assert given.headers["x-request-id"] == "field-upload-0042"
    generated = junk.headers["x-request-id"]
    assert generated != "two words" and len(generated) == 32
    assert len(nameless.headers["x-request-id"]) == 32
    lines = _log_lines(log)
    # The failed login's security line and the access line both carry the request's id.
    mine = [line for line in lines if line.get("request_id") == "field-upload-0042"]
    assert [line["event"] for line in mine] == ["authentication.failed", "request"]
    access = mine[-1]
    assert access["route"] == "/v1/evidence" and access["status"] == 401
    assert access["method"] == "GET" and access["client"] == "127.0.0.1"
    assert isinstance(access["duration_ms"], float)
    unmatched = [
        line for line in lines if line.get("request_id") == nameless.headers["x-request-id"]
    ]
    assert [(line["route"], line["status"]) for line in unmatched] == [("unmatched", 404)]
    # uvicorn's own lines are JSON too, and its plain access log is off.
    text = log.read_text()
    assert "Uvicorn running" in next(line for line in text.splitlines() if "Uvicorn" in line)
    assert all(line.startswith("{") for line in text.splitlines() if "Uvicorn" in line)
    assert '"GET /v1/evidence HTTP/1.1"' not in text


def test_standard_library_records_are_written_as_json() -> None:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    out, terminal = io.StringIO(), io.StringIO()
    try:
        route_standard_logging(out, console=False)
        logging.getLogger("minio").warning("bucket %s gone", "evidence")
        logging.getLogger("minio").info("below the root's level: dropped")
        route_standard_logging(terminal, console=True)
        logging.getLogger("uvicorn.error").warning("for a person at a terminal")
    finally:
        root.handlers, root.level = handlers, level
    line = json.loads(out.getvalue())  # exactly one line
    assert line["event"] == "bucket evidence gone"
    assert (line["logger"], line["level"]) == ("minio", "warning")
    assert line["timestamp"].endswith("Z")
    assert "for a person at a terminal" in terminal.getvalue()
    assert not terminal.getvalue().startswith("{")  # the console format, not JSON


def test_a_crash_answers_a_problem_with_the_request_id_and_counts_as_500() -> None:
    app = create_app()

    @app.get("/crash", dependencies=[Depends(Public())])
    def crash() -> None:
        raise RuntimeError("a bug")

    async def ask() -> tuple[httpx.Response, httpx.Response]:
        transport = httpx.ASGITransport(app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://locker") as client:
            given = await client.get("/crash", headers={"X-Request-ID": "crash-1"})
            refused = await client.get("/crash", headers={"X-Request-ID": "x" * 129})
            return given, refused

    before = REGISTRY.get_sample_value(
        "locker_http_requests_total", {"method": "GET", "route": "/crash", "status": "500"}
    )
    answer, refused = asyncio.run(ask())
    after = REGISTRY.get_sample_value(
        "locker_http_requests_total", {"method": "GET", "route": "/crash", "status": "500"}
    )
    assert answer.status_code == 500
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.headers["x-request-id"] == "crash-1"
    assert "a bug" not in answer.text  # the details go to the log, not to the client
    assert (after or 0) - (before or 0) == 2
    assert len(refused.headers["x-request-id"]) == 32  # too long: a new one instead


@pytest.mark.parametrize("backend", ["sqlite-fs"])
def test_a_scrape_without_the_database_still_answers(locker: Locker, tmp_path: Path) -> None:
    # A directory where the database file should be: SQLite cannot open it.
    database = open_database(f"sqlite:///{tmp_path}")
    cut_off = dataclasses.replace(locker.runtime, database=database)
    try:
        with serving(cut_off) as base_url, httpx.Client(base_url=base_url) as client:
            samples = _scrape(client)
    finally:
        database.dispose()
    assert _value(samples, "locker_state_up") == 0
    assert not [name for name, _ in samples if name.startswith(("locker_log_", "locker_jobs"))]
