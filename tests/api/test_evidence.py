"""Uploading and reading evidence through the HTTP API, on every backend."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest
from sqlmodel import select

from service.db.models import CustodyEntry, Evidence, Submission, UploadIntent
from tests.harness import Locker, analysed

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(range(256)) * 40
ARABIC_NAME = "صورة مقبرة ترهونة.png"


def upload(
    client,
    content: bytes,
    *,
    filename: str = "photo.png",
    metadata=None,
    sha256=None,
    content_type: str = "text/plain",
):
    files = [("file", (filename, content, content_type))]
    data = {}
    if metadata is not None:
        data["metadata"] = metadata if isinstance(metadata, str) else json.dumps(metadata)
    if sha256 is not None:
        data["sha256"] = sha256
    return client.post("/v1/evidence", files=files, data=data)


def log_size(locker: Locker) -> int:
    with locker.runtime.database.session() as session:
        return locker.runtime.log.size(session)


def stored_objects(locker: Locker) -> list[str]:
    return [o.key for o in locker.runtime.store.iter_objects()]


def assert_recorded(
    locker: Locker, body: dict[str, object], content: bytes, *, filename: str, media_type: str
) -> None:
    """The answer, the evidence record, its submission and its custody entry all agree
    with the bytes sent: digests recomputed here, size, sniffed type, exact file name."""
    sha256 = hashlib.sha256(content).hexdigest()
    assert body["sha256"] == sha256
    assert body["sha512"] == hashlib.sha512(content).hexdigest()
    assert body["size"] == len(content)
    assert body["media_type"] == media_type
    assert body["filename"] == filename
    with locker.runtime.database.session() as session:
        evidence = session.get(Evidence, body["id"])
        [submission] = session.exec(
            select(Submission).where(Submission.custody_index == body["custody_index"])
        ).all()
        entry = session.get(CustodyEntry, body["custody_index"])
    assert evidence is not None and entry is not None
    assert (evidence.sha256, evidence.size, evidence.media_type) == (
        sha256,
        len(content),
        media_type,
    )
    assert evidence.sha512 == body["sha512"]
    assert evidence.organisation_id == locker.organisation_id
    assert (submission.evidence_id, submission.filename) == (body["id"], filename)
    leaf = json.loads(entry.leaf)
    assert leaf["action"] == "evidence.ingested"
    assert leaf["sha256"] == sha256
    assert leaf["subject"] == f"evidence:{body['id']}"
    assert leaf["organisation"] == locker.organisation_id


def test_upload_records_digests_sniffed_type_and_exact_arabic_name(locker: Locker) -> None:
    with locker.client() as client:
        response = upload(
            client,
            PNG,
            filename=ARABIC_NAME,
            metadata={"title": "مقبرة جماعية", "source_url": "https://example.org/x"},
        )
    assert response.status_code == 201, response.text
    body = response.json()
    # The media type is sniffed from the bytes, not the client's text/plain.
    assert_recorded(locker, body, PNG, filename=ARABIC_NAME, media_type="image/png")
    assert body["duplicate"] is False
    assert set(body) >= {"id", "received_at", "custody_index"}


def test_metadata_and_content_read_back_exactly(locker: Locker) -> None:
    with locker.client() as client:
        created = upload(client, PNG, filename=ARABIC_NAME, metadata={"title": "عنوان"}).json()
        analysed(client, created["id"])  # its entry lands after the 201: not counted below
        before = log_size(locker)
        record = client.get(f"/v1/evidence/{created['id']}")
        content = client.get(f"/v1/evidence/{created['id']}/content")
    assert record.status_code == 200
    assert record.json()["submissions"][0]["metadata"] == {"title": "عنوان"}
    assert record.json()["filename"] == ARABIC_NAME
    assert content.status_code == 200
    assert content.content == PNG
    expected = base64.b64encode(hashlib.sha256(PNG).digest()).decode()
    assert content.headers["repr-digest"] == f"sha-256=:{expected}:"
    assert content.headers["content-type"] == "image/png"
    # Reading the record is not a custody event; reading the content is.
    assert log_size(locker) == before + 1


def test_matching_field_sha256_is_accepted(locker: Locker) -> None:
    with locker.client() as client:
        response = upload(client, PNG, sha256=hashlib.sha256(PNG).hexdigest().upper())
    assert response.status_code == 201, response.text
    assert_recorded(locker, response.json(), PNG, filename="photo.png", media_type="image/png")


def test_wrong_sha256_stores_and_records_nothing(locker: Locker) -> None:
    before = log_size(locker)
    with locker.client() as client:
        response = upload(client, PNG, sha256="0" * 64)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert "sha256" in response.json()["detail"]
    assert log_size(locker) == before
    assert stored_objects(locker) == []
    assert list(locker.runtime.store.iter_staged()) == []
    with locker.runtime.database.session() as session:
        assert session.exec(select(Evidence)).all() == []
        intents = session.exec(select(UploadIntent)).all()
    assert [i.status for i in intents] == ["abandoned"]


def test_same_content_twice_is_one_object_and_two_custody_events(locker: Locker) -> None:
    with locker.client() as client:
        first = upload(client, PNG, filename="a.png").json()
        second = upload(client, PNG, filename="b.png").json()
        record = client.get(f"/v1/evidence/{first['id']}").json()
    assert second["id"] == first["id"]
    assert second["duplicate"] is True
    assert second["custody_index"] > first["custody_index"]
    assert len(stored_objects(locker)) == 1
    assert [s["filename"] for s in record["submissions"]] == ["a.png", "b.png"]


def test_same_content_in_two_organisations_is_kept_apart(locker: Locker) -> None:
    other = locker.new_organisation("Second NGO")
    with locker.client() as mine, locker.client(other) as theirs:
        a = upload(mine, PNG).json()
        b = upload(theirs, PNG).json()
        assert theirs.get(f"/v1/evidence/{a['id']}").status_code == 404
        assert theirs.get(f"/v1/evidence/{a['id']}/content").status_code == 404
    assert a["id"] != b["id"]
    assert len(stored_objects(locker)) == 2


def test_filename_is_metadata_only(locker: Locker) -> None:
    with locker.client() as client:
        response = upload(client, PNG, filename="../../etc/passwd")
    assert response.status_code == 201, response.text
    assert_recorded(
        locker, response.json(), PNG, filename="../../etc/passwd", media_type="image/png"
    )
    # The key is the upload's own, fixed before its first byte: never the client's name.
    [key] = stored_objects(locker)
    with locker.runtime.database.session() as session:
        [intent] = session.exec(select(UploadIntent)).all()
    assert key == f"org/{locker.organisation_id}/evidence/{intent.id}"


@pytest.mark.parametrize(
    ("metadata", "fragment"),
    [
        ("{not json", "metadata: malformed JSON"),
        ("[1, 2]", "metadata: must be a JSON object"),
        ('{"captured_at": "yesterday"}', "metadata.captured_at"),
        ('{"incident_id": "00000000-0000-0000-0000-000000000000"}', "metadata.incident_id"),
    ],
)
def test_bad_metadata_is_a_422_naming_it(locker: Locker, metadata: str, fragment: str) -> None:
    before = log_size(locker)
    with locker.client() as client:
        response = upload(client, PNG, metadata=metadata)
    assert response.status_code == 422, response.text
    assert fragment in response.json()["detail"]
    assert log_size(locker) == before
    assert stored_objects(locker) == []


def test_empty_file_is_refused(locker: Locker) -> None:
    with locker.client() as client:
        response = upload(client, b"")
    assert response.status_code == 422
    assert "empty" in response.json()["detail"]
    assert stored_objects(locker) == []


def test_missing_file_part_and_non_multipart_are_422(locker: Locker) -> None:
    with locker.client() as client:
        no_file = client.post("/v1/evidence", files=[("metadata", (None, "{}"))])
        not_multipart = client.post("/v1/evidence", json={"file": "x"})
    assert no_file.status_code == 422
    assert "no file part" in no_file.json()["detail"]
    assert not_multipart.status_code == 422


def test_authentication_is_required(locker: Locker) -> None:
    with locker.client(api_key="") as anonymous, locker.client("lk_abc_wrong") as wrong:
        assert anonymous.get("/v1/incidents").status_code == 401
        assert wrong.get("/v1/incidents").status_code == 401
        assert upload(wrong, PNG).status_code == 401
    assert stored_objects(locker) == []


def test_unknown_evidence_is_404(locker: Locker) -> None:
    with locker.client() as client:
        response = client.get("/v1/evidence/does-not-exist")
    assert response.status_code == 404
    assert response.json()["detail"] == "no evidence does-not-exist"
