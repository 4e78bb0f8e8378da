"""Bytes that match an item the uploader cannot see: neither revealed nor changed."""

from __future__ import annotations

import json

from service.operations.fsck import fsck
from tests.api.test_visibility import SECRET_BYTES, SECRET_NAME, _ok, build_scene
from tests.harness import Locker, analysed


def test_uploading_a_restricted_items_bytes_neither_reveals_nor_changes_it(
    locker: Locker,
) -> None:
    scene = build_scene(locker)
    with locker.client(scene.investigator) as investigator:
        own = _ok(investigator.post("/v1/incidents", json={"title": "My own"}))
        upload = investigator.post(
            "/v1/evidence",
            files=[("file", ("copy.png", SECRET_BYTES, "image/png"))],
            data={"metadata": json.dumps({"incident_id": own["id"]})},
        )
        assert upload.status_code == 201, upload.text
        answer = upload.json()
        mine = investigator.get(f"/v1/evidence/{answer['id']}")
        again = investigator.post(
            "/v1/evidence", files=[("file", ("again.png", SECRET_BYTES, "image/png"))]
        )
    assert answer["id"] != scene.secret["id"]
    assert answer["duplicate"] is False
    assert mine.status_code == 200 and mine.json()["sha256"] == scene.secret["sha256"]
    # A second upload of the same bytes by someone who sees the copy dedupes onto it.
    assert again.json()["id"] == answer["id"] and again.json()["duplicate"] is True
    with locker.client(scene.admin) as admin:
        secret = admin.get(f"/v1/evidence/{scene.secret['id']}").json()
        incident = admin.get(f"/v1/incidents/{own['id']}").json()
        content = admin.get(f"/v1/evidence/{answer['id']}/content")
        # Both records' background analyses land before the audit reads the log.
        analysed(admin, answer["id"])
        analysed(admin, scene.secret["id"])
    assert [s["filename"] for s in secret["submissions"]] == [SECRET_NAME]
    assert [link["evidence_id"] for link in incident["evidence"]] == [answer["id"]]
    assert content.content == SECRET_BYTES
    # Two records over one stored object: the audit finds nothing wrong with either.
    assert fsck(locker.runtime).findings == []
