"""What the bytes say, read after upload: EXIF GPS, near-duplicates, hostile files (HTTP)."""

from __future__ import annotations

import io
import json
from typing import Any

import httpx
from PIL import Image

from service.operations.demo import forwarded_copy, sample_photo
from tests.harness import Locker, analysed


def _upload(client: httpx.Client, name: str, content: bytes, **metadata: object) -> str:
    response = client.post(
        "/v1/evidence",
        files=[("file", (name, content, "application/octet-stream"))],
        data={"metadata": json.dumps(metadata)},
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def test_a_photo_shows_its_exif_gps_as_extracted_metadata(locker: Locker) -> None:
    with locker.client() as client:
        photo = _upload(client, "site.jpg", sample_photo(seed=7), title="said by the collector")
        detail = analysed(client, photo)
        nearby = client.get("/v1/evidence", params={"bbox": "13.6,32.4,13.7,32.5"}).json()
        entries = client.get("/v1/custody/entries", params={"limit": 1000}).json()
    extracted = detail["analysis"]["extracted"]
    assert extracted["gps"]["latitude"] == 32.4335
    assert extracted["gps"]["longitude"] == 13.6345
    assert extracted["make"] == "Demo Phone"
    assert extracted["datetime_original"].startswith("2020-06-10T11:30:00")
    assert detail["analysis"]["error"] is None
    assert len(detail["analysis"]["perceptual_hashes"]) == 1
    # Asserted and extracted stay apart: the collector said nothing about GPS.
    assert detail["description"]["asserted"] == {"title": "said by the collector"}
    # The extracted position makes the item findable on the map.
    assert [i["id"] for i in nearby["items"]] == [photo]
    recorded = [e["fields"] for e in entries if e["fields"]["action"] == "evidence.analysed"]
    assert [e["subject"] for e in recorded] == [f"evidence:{photo}"]
    assert detail["analysis"]["custody_index"] == recorded[0]["index"]


def test_a_reencoded_resized_copy_is_flagged_on_both_items(locker: Locker) -> None:
    original_bytes = sample_photo(seed=7)
    copy_bytes = forwarded_copy(original_bytes)
    assert Image.open(io.BytesIO(copy_bytes)).size == (640, 480)  # really resized
    with locker.client() as client:
        original = _upload(client, "original.jpg", original_bytes)
        analysed(client, original)
        unrelated = _upload(client, "other.jpg", sample_photo(seed=99))
        analysed(client, unrelated)
        copy = _upload(client, "IMG-WA0004.jpg", copy_bytes)
        copy_detail = analysed(client, copy)
        original_detail = client.get(f"/v1/evidence/{original}").json()
        unrelated_detail = client.get(f"/v1/evidence/{unrelated}").json()
    assert copy_detail["sha256"] != original_detail["sha256"]  # not an exact duplicate
    [flag] = copy_detail["near_duplicates"]
    assert flag["evidence_id"] == original and 0 <= flag["distance"] <= 31
    assert original_detail["near_duplicates"] == [
        {"evidence_id": copy, "distance": flag["distance"]}
    ]
    assert unrelated_detail["near_duplicates"] == []


def test_the_threshold_is_configurable(make_locker: Any) -> None:
    strict = make_locker(near_duplicate_threshold=0)
    original_bytes = sample_photo(seed=7)
    with strict.client() as client:
        original = _upload(client, "original.jpg", original_bytes)
        analysed(client, original)
        copy = _upload(client, "copy.jpg", forwarded_copy(original_bytes))
        detail = analysed(client, copy)
    assert detail["near_duplicates"] == []


def test_a_hostile_file_is_stored_and_only_its_extraction_fails(locker: Locker) -> None:
    # JPEG magic, then garbage: sniffed as a JPEG, undecodable.
    hostile = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01" + bytes(range(256)) * 64
    with locker.client() as client:
        item = _upload(client, "evil.jpg", hostile)
        detail = analysed(client, item)
        content = client.get(f"/v1/evidence/{item}/content")
        health = client.get("/healthz")
    assert detail["media_type"] == "image/jpeg"
    assert detail["analysis"]["error"]
    assert "\n" not in detail["analysis"]["error"]
    assert content.content == hostile
    assert health.status_code == 200


def test_files_over_the_size_limit_are_recorded_as_not_read(make_locker: Any) -> None:
    small = make_locker(analysis_max_bytes=1000)
    with small.client() as client:
        item = _upload(client, "site.jpg", sample_photo(seed=7))
        detail = analysed(client, item)
    assert detail["analysis"]["extracted"] == {}
    assert "LOCKER_ANALYSIS_MAX_BYTES" in detail["analysis"]["error"]
