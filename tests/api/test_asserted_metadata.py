"""Asserted metadata is checked, not guessed: unknown fields are refused, `extra` is the
place for free-form additions, and versions stored before that rule still read."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import httpx
import pytest
import rfc8785

from service.core.canonical import canonical_sha256
from service.db.models import Evidence, EvidenceVersion
from service.documentation.documents import AssertedMetadata
from service.evidence.descriptions import reindex_evidence
from service.evidence.recording import UploadMetadata
from tests.harness import Locker

PNG = b"\x89PNG\r\n\x1a\n" + b"asserted" * 300
KNOWN = (
    "title, description, source_url, source_platform, collector, collected_at, captured_at, "
    "capture_device, location, language, source_reliability, information_credibility, tags, "
    "extra"
)


def _upload(client: httpx.Client, metadata: dict[str, Any], content: bytes = PNG) -> httpx.Response:
    return client.post(
        "/v1/evidence",
        files=[("file", ("site.png", content, "image/png"))],
        data={"metadata": json.dumps(metadata)},
    )


@pytest.mark.parametrize("misspelt", ["titel", "source_reliabilty"])
def test_an_unknown_field_in_an_upload_is_refused_with_the_known_ones(
    locker: Locker, misspelt: str
) -> None:
    with locker.client() as client:
        response = _upload(client, {misspelt: "B"})
        listed = client.get("/v1/evidence").json()
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert detail == (
        f"metadata: unknown field '{misspelt}' (free-form additions go under extra); "
        f"known fields: {KNOWN}, incident_id, restricted"
    )
    assert "\n" not in detail
    assert listed["items"] == []


def test_an_unknown_field_in_an_edit_is_refused_and_nothing_is_recorded(locker: Locker) -> None:
    with locker.client() as client:
        item = _upload(client, {"title": "Site"}).json()
        response = client.patch(
            f"/v1/evidence/{item['id']}/metadata", json={"source_reliabilty": "A"}
        )
        history = client.get(f"/v1/evidence/{item['id']}/history").json()
    assert response.status_code == 422, response.text
    assert response.json()["detail"] == (
        "unknown field 'source_reliabilty' (free-form additions go under extra); "
        f"known fields: {KNOWN}"
    )
    assert len(history) == 1


def test_extra_is_kept_as_given_digested_and_replaced_whole_by_an_edit(locker: Locker) -> None:
    extra = {"camera_roll_id": "IMG_0042", "witness": {"code": "W-03", "heard": [1, 2.5, None]}}
    with locker.client() as client:
        item = _upload(client, {"title": "Site", "extra": extra}).json()
        first = client.get(f"/v1/evidence/{item['id']}").json()["description"]
        edited = client.patch(
            f"/v1/evidence/{item['id']}/metadata", json={"extra": {"camera_roll_id": "IMG_0043"}}
        )
        entries = client.get("/v1/custody/entries", params={"limit": 1000}).json()
    assert first["asserted"] == {"title": "Site", "extra": extra}
    assert first["asserted_sha256"] == hashlib.sha256(rfc8785.dumps(first["asserted"])).hexdigest()
    assert edited.status_code == 200, edited.text
    second = edited.json()
    assert second["asserted"] == {"title": "Site", "extra": {"camera_roll_id": "IMG_0043"}}
    [described] = [e["fields"] for e in entries if e["fields"]["action"] == "evidence.described"]
    assert described["asserted_sha256"] == second["asserted_sha256"]


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        (["not", "an", "object"], "metadata.extra: Input should be a valid dictionary"),
        ({"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": {"i": 1}}}}}}}}}, "deeper than 8"),
        ({f"k{i}": i for i in range(101)}, "metadata.extra: Dictionary should have at most 100"),
        ({"long": "x" * 19_990, "more": "y" * 100}, "at most 20000"),
        ({"": 1}, "metadata.extra."),
    ],
    ids=["not-an-object", "too-deep", "too-many-keys", "too-large", "empty-key"],
)
def test_extra_is_bounded(locker: Locker, extra: object, problem: str) -> None:
    with locker.client() as client:
        response = _upload(client, {"extra": extra})
    assert response.status_code == 422, response.text
    assert problem in response.json()["detail"]


def _write_old_version(locker: Locker, evidence_id: str, asserted: dict[str, Any]) -> None:
    """Version 2 as an edit made before `extra` existed wrote it: unknown key and all."""
    runtime = locker.runtime
    with runtime.database.session() as session:
        evidence = session.get(Evidence, evidence_id)
        first = session.get(EvidenceVersion, (evidence_id, 1))
        assert evidence is not None and first is not None
        digest = canonical_sha256(asserted)
        entry = runtime.log.append(
            session,
            organisation_id=evidence.organisation_id,
            actor="user:legacy",
            action="evidence.described",
            subjects=[f"evidence:{evidence_id}"],
            details={"version": 2, "asserted_sha256": digest, "reason": "before extra"},
        )
        session.add(
            EvidenceVersion(
                evidence_id=evidence_id,
                version=2,
                organisation_id=evidence.organisation_id,
                asserted_json=json.dumps(asserted, ensure_ascii=False),
                asserted_sha256=digest,
                reason="before extra",
                recorded_by=first.recorded_by,
                recorded_at=entry.time,
                custody_index=entry.index,
            )
        )
        session.flush()
        reindex_evidence(session, evidence)


def test_a_version_stored_with_an_unknown_key_still_reads(locker: Locker) -> None:
    old = {"title": "Farmland", "camera_roll_id": "IMG_0042", "tags": ["legacy"]}
    with locker.client() as client:
        item = _upload(client, {"title": "Farmland"}).json()
        _write_old_version(locker, item["id"], old)
        detail = client.get(f"/v1/evidence/{item['id']}")
        history = client.get(f"/v1/evidence/{item['id']}/history").json()
        found = client.get("/v1/search", params={"q": "legacy", "type": "evidence"}).json()
    assert detail.status_code == 200, detail.text
    assert detail.json()["description"]["asserted"] == old
    assert [v["asserted"] for v in history][-1] == old
    assert [hit["id"] for hit in found["items"]] == [item["id"]]


def test_an_edit_of_an_old_version_must_drop_or_move_its_unknown_key(locker: Locker) -> None:
    old = {"title": "Farmland", "camera_roll_id": "IMG_0042"}
    with locker.client() as client:
        item = _upload(client, {"title": "Farmland"}).json()
        _write_old_version(locker, item["id"], old)
        path = f"/v1/evidence/{item['id']}/metadata"
        carried = client.patch(path, json={"title": "Farmland south"})
        moved = client.patch(
            path, json={"camera_roll_id": None, "extra": {"camera_roll_id": "IMG_0042"}}
        )
    assert carried.status_code == 422
    assert carried.json()["detail"] == (
        "'camera_roll_id' of version 2 is not a known field: send "
        '"camera_roll_id": null to drop it, or move it under extra'
    )
    assert moved.status_code == 200, moved.text
    assert moved.json()["version"] == 3
    assert moved.json()["asserted"] == {
        "title": "Farmland",
        "extra": {"camera_roll_id": "IMG_0042"},
    }


def test_stored_metadata_reads_leniently_and_input_strictly() -> None:
    """An upload intent written before the rule finishes (fsck --repair reads it back)."""
    stored = '{"titel": "Site", "incident_id": null, "restricted": false}'
    metadata = UploadMetadata.from_stored_json(stored)
    assert metadata.model_extra == {"titel": "Site"}
    assert AssertedMetadata.from_stored({"titel": "Site"}).model_dump(exclude_none=True) == {
        "titel": "Site",
        "tags": [],
    }
    with pytest.raises(ValueError, match="unknown field 'titel'"):
        UploadMetadata.model_validate_json(stored)
