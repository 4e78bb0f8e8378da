"""Downloads that resume: Range and If-Range on evidence and export content, on both
databases and both stores, and one custody entry per download, not per range."""

from __future__ import annotations

import hashlib
import os
import time
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any

import httpx
import pytest

from tests.harness import Locker

# Past two 1 MiB store chunks, so ranges cross chunk boundaries.
CONTENT = b"%PDF-1.4\n" + os.urandom(2 * 1024 * 1024 + 4099)
SIZE = len(CONTENT)
ETAG = f'"{hashlib.sha256(CONTENT).hexdigest()}"'


def _upload(client: httpx.Client, content: bytes = CONTENT) -> dict[str, Any]:
    response = client.post("/v1/evidence", files=[("file", ("report.pdf", content, "x/y"))])
    assert response.status_code == 201, response.text
    return dict(response.json())


def _reads(client: httpx.Client, action: str) -> list[dict[str, Any]]:
    entries = client.get("/v1/custody/entries", params={"limit": 1000}).json()
    return [e["fields"] for e in entries if e["fields"]["action"] == action]


def _get(client: httpx.Client, path: str, **headers: str) -> httpx.Response:
    return client.get(path, headers=headers)


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [
        ("bytes=0-99", 0, 99),
        ("bytes=1048570-1048600", 1048570, 1048600),
        (f"bytes={SIZE - 10}-", SIZE - 10, SIZE - 1),
        ("bytes=-4096", SIZE - 4096, SIZE - 1),
        (f"bytes=5-{SIZE + 1000}", 5, SIZE - 1),
    ],
    ids=["head", "across-chunks", "open-ended", "suffix", "past-the-end"],
)
def test_a_single_range_is_206_byte_exact(
    locker: Locker, header: str, start: int, end: int
) -> None:
    with locker.client() as client:
        item = _upload(client)
        response = _get(client, f"/v1/evidence/{item['id']}/content", Range=header)
    assert response.status_code == 206, response.text
    assert response.content == CONTENT[start : end + 1]
    assert response.headers["content-range"] == f"bytes {start}-{end}/{SIZE}"
    assert response.headers["content-length"] == str(end - start + 1)
    assert response.headers["etag"] == ETAG
    assert response.headers["accept-ranges"] == "bytes"


def test_a_full_answer_offers_ranges_and_names_its_version(locker: Locker) -> None:
    with locker.client() as client:
        item = _upload(client)
        response = client.get(f"/v1/evidence/{item['id']}/content")
        several = _get(client, f"/v1/evidence/{item['id']}/content", Range="bytes=0-1,5-9")
        whole = _get(client, f"/v1/evidence/{item['id']}/content", Range="bytes=0-")
    assert response.status_code == 200 and response.content == CONTENT
    assert response.headers["accept-ranges"] == "bytes"
    assert response.headers["etag"] == ETAG
    stored = parsedate_to_datetime(response.headers["last-modified"])
    assert abs((stored - parsedate_to_datetime(response.headers["date"])).total_seconds()) < 3600
    # Several ranges: the whole item, 200 (RFC 9110 §14.2 lets a server ignore Range).
    assert several.status_code == 200 and several.content == CONTENT
    assert "content-range" not in several.headers
    assert whole.status_code == 206 and whole.content == CONTENT


@pytest.mark.parametrize("header", [f"bytes={SIZE}-", f"bytes={SIZE + 5}-{SIZE + 9}", "bytes=-0"])
def test_a_range_outside_the_item_is_416_with_its_size(locker: Locker, header: str) -> None:
    with locker.client() as client:
        item = _upload(client)
        response = _get(client, f"/v1/evidence/{item['id']}/content", Range=header)
        reads = _reads(client, "evidence.content_accessed")
    assert response.status_code == 416, response.text
    assert response.headers["content-range"] == f"bytes */{SIZE}"
    assert response.headers["content-type"] == "application/problem+json"
    assert reads == []  # no byte was handed out


def test_if_range_resumes_the_same_version_and_restarts_a_stale_one(locker: Locker) -> None:
    with locker.client() as client:
        item = _upload(client)
        path = f"/v1/evidence/{item['id']}/content"
        first = client.get(path)
        last_modified = first.headers["last-modified"]
        by_tag = _get(client, path, Range="bytes=100-", **{"If-Range": ETAG})
        by_date = _get(client, path, Range="bytes=100-", **{"If-Range": last_modified})
        stale_tag = _get(client, path, Range="bytes=100-", **{"If-Range": f'"{"0" * 64}"'})
        weak_tag = _get(client, path, Range="bytes=100-", **{"If-Range": f"W/{ETAG}"})
        earlier = format_datetime(parsedate_to_datetime(last_modified).replace(year=2019), True)
        stale_date = _get(client, path, Range="bytes=100-", **{"If-Range": earlier})
    assert by_tag.status_code == by_date.status_code == 206
    assert by_tag.content == by_date.content == CONTENT[100:]
    for stale in (stale_tag, weak_tag, stale_date):
        assert stale.status_code == 200, stale.headers
        assert stale.content == CONTENT
        assert "content-range" not in stale.headers


def test_a_download_in_ranges_is_one_custody_entry(locker: Locker) -> None:
    with locker.client() as client:
        item = _upload(client)
        path = f"/v1/evidence/{item['id']}/content"
        parts = [
            _get(client, path, Range="bytes=0-999999"),
            _get(client, path, Range="bytes=1000000-1999999"),
            _get(client, path, Range="bytes=2000000-"),
        ]
        after_one = _reads(client, "evidence.content_accessed")
        client.get(path)
        after_full = _reads(client, "evidence.content_accessed")
    assert [p.status_code for p in parts] == [206, 206, 206]
    assert b"".join(p.content for p in parts) == CONTENT
    [entry] = after_one
    assert entry["subject"] == f"evidence:{item['id']}"
    assert entry["range"] == f"bytes 0-999999/{SIZE}"
    assert len(after_full) == 2 and "range" not in after_full[1]


def test_a_continuation_range_without_a_logged_read_is_logged(locker: Locker) -> None:
    with locker.client() as admin:
        item = _upload(admin)
        admin.post("/v1/members", json={"email": "an@a.example", "role": "analyst"})
        key = admin.post("/v1/keys", json={"email": "an@a.example", "name": "a"}).json()["key"]
        admin.get(f"/v1/evidence/{item['id']}/content", headers={"Range": "bytes=0-9"})
    path = f"/v1/evidence/{item['id']}/content"
    with locker.client(key) as analyst:
        # The admin's earlier read covers the admin, not this reader.
        tail = _get(analyst, path, Range="bytes=500-")
        again = _get(analyst, path, Range="bytes=600-")
    with locker.client() as admin:
        reads = _reads(admin, "evidence.content_accessed")
    assert tail.status_code == again.status_code == 206
    assert tail.content == CONTENT[500:] and again.content == CONTENT[600:]
    assert [(r["actor"] == reads[0]["actor"], r.get("range")) for r in reads] == [
        (True, f"bytes 0-9/{SIZE}"),
        (False, f"bytes 500-{SIZE - 1}/{SIZE}"),
    ]


def test_a_reader_without_content_access_gets_403_not_416(locker: Locker) -> None:
    with locker.client() as admin:
        item = _upload(admin)
        admin.post("/v1/members", json={"email": "au@a.example", "role": "auditor"})
        key = admin.post("/v1/keys", json={"email": "au@a.example", "name": "a"}).json()["key"]
    with locker.client(key) as auditor:
        path = f"/v1/evidence/{item['id']}/content"
        beyond = _get(auditor, path, Range=f"bytes={SIZE + 1}-")
        inside = _get(auditor, path, Range="bytes=0-9")
    assert beyond.status_code == inside.status_code == 403
    assert "content-range" not in beyond.headers


def _export(client: httpx.Client, evidence_id: str) -> dict[str, Any]:
    requested = client.post("/v1/exports", json={"evidence_ids": [evidence_id]})
    assert requested.status_code == 202, requested.text
    deadline = time.monotonic() + 120
    while (status := client.get(f"/v1/exports/{requested.json()['id']}").json())["status"] in (
        "pending",
        "retrying",
    ):
        assert time.monotonic() < deadline, "export never finished"
        time.sleep(0.1)
    assert status["status"] == "done", status
    return dict(status)


def test_an_export_resumes_with_one_custody_entry(locker: Locker) -> None:
    with locker.client() as client:
        export = _export(client, _upload(client)["id"])
        path = f"/v1/exports/{export['id']}/content"
        full = client.get(path)
        bundle = full.content
        etag = full.headers["etag"]
        before = len(_reads(client, "export.downloaded"))
        first = _get(client, path, Range="bytes=0-65535")
        rest = _get(client, path, Range="bytes=65536-", **{"If-Range": etag})
        stale = _get(client, path, Range="bytes=65536-", **{"If-Range": f'"{"0" * 64}"'})
        beyond = _get(client, path, Range=f"bytes={len(bundle)}-")
        reads = _reads(client, "export.downloaded")
    assert full.status_code == 200 and full.headers["accept-ranges"] == "bytes"
    assert etag == f'"{export["sha256"]}"'
    assert hashlib.sha256(bundle).hexdigest() == export["sha256"]
    assert first.status_code == rest.status_code == 206
    assert first.content + rest.content == bundle
    assert rest.headers["content-range"] == f"bytes 65536-{len(bundle) - 1}/{len(bundle)}"
    assert stale.status_code == 200 and stale.content == bundle
    assert beyond.status_code == 416
    assert beyond.headers["content-range"] == f"bytes */{len(bundle)}"
    # The full download, the ranged one (logged at its first range), the stale restart.
    assert before == 1 and len(reads) == 3
    assert reads[1]["range"] == f"bytes 0-65535/{len(bundle)}" and "range" not in reads[2]
