"""An item's asserted metadata (versioned) and analyst notes, through the HTTP API."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import httpx
import pytest
import rfc8785

from service.operations.fsck import fsck
from tests.harness import Locker

PNG = b"\x89PNG\r\n\x1a\n" + b"describe" * 300
ASSERTED = {
    "title": "صورة من موقع المكب",
    "description": "Taken on the second visit",
    "source_url": "https://example.org/post/1",
    "source_platform": "Telegram",
    "collector": "Field team 2",
    "collected_at": "2020-06-12T10:00:00Z",
    "captured_at": "2020-06-10T09:30:00+02:00",
    "capture_device": "phone",
    "location": {"name": "ترهونة", "country": "LY", "lat": 32.4335, "lon": 13.6345},
    "language": "ar-LY",
    "source_reliability": "B",
    "information_credibility": 2,
    "tags": ["Tarhuna"],
    "extra": {"camera_roll_id": "IMG_0042"},  # free-form additions, kept as given
}


def _upload(client: httpx.Client, metadata: dict[str, Any]) -> httpx.Response:
    return client.post(
        "/v1/evidence",
        files=[("file", ("site.png", PNG, "image/png"))],
        data={"metadata": json.dumps(metadata)},
    )


def _entries(client: httpx.Client) -> list[dict[str, Any]]:
    return [e["fields"] for e in client.get("/v1/custody/entries", params={"limit": 1000}).json()]


def test_asserted_metadata_is_version_one_and_its_digest_is_in_the_ingest_entry(
    locker: Locker,
) -> None:
    with locker.client() as client:
        item = _upload(client, ASSERTED).json()
        detail = client.get(f"/v1/evidence/{item['id']}").json()
        entries = _entries(client)
    description = detail["description"]
    assert description["version"] == 1
    asserted = description["asserted"]
    assert asserted["title"] == ASSERTED["title"]
    assert asserted["source_reliability"] == "B" and asserted["information_credibility"] == 2
    assert asserted["location"]["country"] == "LY"
    assert asserted["extra"] == {"camera_roll_id": "IMG_0042"}
    assert "incident_id" not in asserted and "restricted" not in asserted
    digest = hashlib.sha256(rfc8785.dumps(asserted)).hexdigest()
    assert description["asserted_sha256"] == digest
    [ingest] = [e for e in entries if e["action"] == "evidence.ingested"]
    assert ingest["asserted_sha256"] == digest and ingest["index"] == description["custody_index"]
    # What the collector says and what the bytes say are kept apart.
    assert "extracted" not in asserted


def test_editing_twice_keeps_three_versions(locker: Locker) -> None:
    with locker.client() as client:
        item = _upload(client, ASSERTED).json()
        path = f"/v1/evidence/{item['id']}"
        second = client.patch(
            f"{path}/metadata",
            json={"source_reliability": "A", "reason": "source confirmed in person"},
        )
        third = client.patch(f"{path}/metadata", json={"description": None, "base_version": 2})
        stale = client.patch(f"{path}/metadata", json={"title": "x", "base_version": 1})
        controls = client.patch(f"{path}/metadata", json={"restricted": True})
        history = client.get(f"{path}/history").json()
        current = client.get(path).json()["description"]
        entries = _entries(client)
    assert second.status_code == 200, second.text
    assert third.status_code == 200 and third.json()["version"] == 3
    assert stale.status_code == 409
    assert controls.status_code == 422
    assert [v["version"] for v in history] == [1, 2, 3]
    assert [v["asserted"]["source_reliability"] for v in history] == ["B", "A", "A"]
    assert "description" in history[1]["asserted"] and "description" not in history[2]["asserted"]
    assert history[1]["reason"] == "source confirmed in person"
    assert current == history[2]
    logged = {e.get("asserted_sha256"): e for e in entries}
    for version in history:
        assert (
            hashlib.sha256(rfc8785.dumps(version["asserted"])).hexdigest()
            == (version["asserted_sha256"])
        )
        assert logged[version["asserted_sha256"]]["index"] == version["custody_index"]
    assert [logged[v["asserted_sha256"]]["action"] for v in history[1:]] == [
        "evidence.described",
        "evidence.described",
    ]


@pytest.mark.parametrize(
    ("metadata", "field"),
    [
        ({"source_reliability": "G"}, "metadata.source_reliability"),
        ({"information_credibility": 7}, "metadata.information_credibility"),
        ({"language": "not a language"}, "metadata.language"),
        ({"location": {"lat": -91, "lon": 0}}, "metadata.location.lat"),
        ({"location": {"country": "ZZ"}}, "metadata.location.country"),
        ({"captured_at": "yesterday"}, "metadata.captured_at"),
        ({"title": "t" * 501}, "metadata.title"),
        ({"tags": [""]}, "metadata.tags.0"),
        # Values RFC 8785 cannot write would be changed or lost: refused before storing.
        ({"frames": 9007199254740993}, "metadata: cannot canonicalise"),
        ({"ratio": 1e400}, "metadata: cannot canonicalise"),
        # A time at the calendar's edge cannot be moved to UTC.
        ({"captured_at": "9999-12-31T23:59:59-14:00"}, "metadata.captured_at"),
        ({"collected_at": "0001-01-01T00:00:00+14:00"}, "metadata.collected_at"),
        # JSON types are not coerced: "yes" and 1 are not true, true is not 1.
        ({"restricted": "yes"}, "metadata.restricted"),
        ({"restricted": 1}, "metadata.restricted"),
        ({"information_credibility": True}, "metadata.information_credibility"),
        ({"information_credibility": 2.0}, "metadata.information_credibility"),
        ({"location": {"lat": "32.4", "lon": 13.6}}, "metadata.location.lat"),
        ({"captured_at": 1591774200}, "metadata.captured_at"),
        # A time without an offset is no instant.
        ({"captured_at": "2020-01-01T00:00:00"}, "metadata.captured_at"),
        ({"collected_at": "2020-06-12T10:00:00"}, "metadata.collected_at"),
    ],
)
def test_bad_asserted_metadata_is_422_and_stores_nothing(
    locker: Locker, metadata: dict[str, Any], field: str
) -> None:
    with locker.client() as client:
        response = _upload(client, metadata)
        listed = client.get("/v1/evidence").json()
    assert response.status_code == 422, response.text
    assert response.json()["detail"].startswith(field), response.json()
    assert listed["items"] == []
    report = fsck(locker.runtime)
    assert report.findings == [] and report.checked["objects re-hashed"] == 0


def test_an_edit_is_held_to_the_same_rules(locker: Locker) -> None:
    with locker.client() as client:
        item = _upload(client, ASSERTED).json()
        path = f"/v1/evidence/{item['id']}/metadata"
        naive = client.patch(path, json={"captured_at": "2020-01-01T00:00:00"})
        truthy = client.patch(path, json={"information_credibility": True})
        history = client.get(f"/v1/evidence/{item['id']}/history").json()
    assert naive.status_code == 422 and naive.json()["detail"].startswith("captured_at")
    assert truthy.status_code == 422
    assert truthy.json()["detail"].startswith("information_credibility")
    assert len(history) == 1


def test_the_language_tag_is_kept_in_its_canonical_case(locker: Locker) -> None:
    with locker.client() as client:
        item = _upload(client, {"language": "AR-ly"}).json()
        asserted = client.get(f"/v1/evidence/{item['id']}").json()["description"]["asserted"]
    assert asserted["language"] == "ar-LY"


def test_notes_are_append_only_and_logged(locker: Locker) -> None:
    with locker.client() as client:
        item = _upload(client, {}).json()
        incident = client.post("/v1/incidents", json={"title": "Tarhuna"}).json()
        first = client.post(f"/v1/evidence/{item['id']}/notes", json={"body": "الظل يوحي بالصباح"})
        second = client.post(f"/v1/evidence/{item['id']}/notes", json={"body": "Matches W-03"})
        on_incident = client.post(f"/v1/incidents/{incident['id']}/notes", json={"body": "n"})
        empty = client.post(f"/v1/evidence/{item['id']}/notes", json={"body": ""})
        notes = client.get(f"/v1/evidence/{item['id']}/notes").json()
        entries = _entries(client)
        # There is no route that edits or deletes a note.
        edit = client.patch(f"/v1/evidence/{item['id']}/notes", json={"body": "changed"})
    assert first.status_code == second.status_code == on_incident.status_code == 201
    assert empty.status_code == 422
    assert [n["body"] for n in notes] == ["الظل يوحي بالصباح", "Matches W-03"]
    assert edit.status_code == 405
    noted = {e["note"]: e for e in entries if e["action"] == "note.added"}
    for note in notes:
        entry = noted[note["id"]]
        assert entry["index"] == note["custody_index"]
        assert entry["body_sha256"] == hashlib.sha256(note["body"].encode()).hexdigest()
        assert entry["subject"] == f"evidence:{item['id']}"


def test_auditors_read_but_cannot_describe_or_annotate(locker: Locker) -> None:
    with locker.client() as admin:
        item = _upload(admin, {"title": "t"}).json()
        admin.post("/v1/members", json={"email": "au@a.example", "role": "auditor"})
        key = admin.post("/v1/keys", json={"email": "au@a.example", "name": "a"}).json()["key"]
    with locker.client(key) as auditor:
        history = auditor.get(f"/v1/evidence/{item['id']}/history")
        edit = auditor.patch(f"/v1/evidence/{item['id']}/metadata", json={"title": "u"})
        note = auditor.post(f"/v1/evidence/{item['id']}/notes", json={"body": "n"})
    assert history.status_code == 200
    assert edit.status_code == 403 and note.status_code == 403
