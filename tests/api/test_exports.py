"""Evidence bundles through the API, checked by the offline verifier."""

from __future__ import annotations

import hashlib
import io
import json
import time
import zipfile
from pathlib import Path

import httpx

from service.client.verifier import verify_path
from service.operations.demo import sample_photo
from service.operations.fsck import fsck
from tests.harness import Locker, analysed
from tests.independent import verifier as independent
from tests.report.rendering import find_word, ink_runs

PHOTO = b"\xff\xd8\xff\xe0" + b"jpeg-bytes" * 2000
STATEMENT = "إفادة الشاهد: رأيت الجرافات عند المزرعة".encode() * 50


def _wait_done(client: httpx.Client, export_id: str) -> dict[str, object]:
    deadline = time.monotonic() + 60
    while True:
        status = client.get(f"/v1/exports/{export_id}").json()
        if status["status"] != "pending":
            return dict(status)
        assert time.monotonic() < deadline, "export never finished"
        time.sleep(0.1)


def _incident_with_evidence(client: httpx.Client) -> tuple[str, list[dict[str, object]]]:
    incident = client.post("/v1/incidents", json={"title": "مقابر ترهونة"}).json()
    items = []
    for name, content in (("صورة المقبرة.jpg", PHOTO), ("إفادة.txt", STATEMENT)):
        item = client.post("/v1/evidence", files=[("file", (name, content, "x/y"))]).json()
        link = client.post(
            f"/v1/incidents/{incident['id']}/evidence",
            json={"evidence_id": item["id"], "reason": "documents the site"},
        )
        assert link.status_code == 201
        items.append(item)
    return incident["id"], items


def test_incident_bundle_verifies_offline(locker: Locker, tmp_path: Path) -> None:
    with locker.client() as client:
        incident_id, items = _incident_with_evidence(client)
        requested = client.post("/v1/exports", json={"incident_id": incident_id})
        assert requested.status_code == 202, requested.text
        status = _wait_done(client, requested.json()["id"])
        assert status["status"] == "done", status
        download = client.get(f"/v1/exports/{status['id']}/content")
        key = client.get("/v1/custody/verifier-key").text
        trail = client.get(f"/v1/evidence/{items[0]['id']}/custody").json()
    assert download.status_code == 200
    assert hashlib.sha256(download.content).hexdigest() == status["sha256"]
    bundle = tmp_path / "bundle.zip"
    bundle.write_bytes(download.content)
    key_file = tmp_path / "key.txt"
    key_file.write_text(key)
    verdict = verify_path(bundle, key)
    assert verdict.ok, verdict.findings
    names = zipfile.ZipFile(io.BytesIO(download.content)).namelist()
    assert any(n.endswith("/صورة المقبرة.jpg") for n in names)
    assert any(n.endswith("report/report.html") for n in names)
    # The export and the download are custody events of each item.
    actions = [e["fields"]["action"] for e in trail["entries"]]
    assert "export.created" in actions and "export.downloaded" in actions
    # The bundle's checkpoint is one the independent verifier accepts too.
    root = next(n for n in names if n.endswith("custody/checkpoint.txt"))
    note = zipfile.ZipFile(bundle).read(root).decode()
    independent.open_checkpoint(note, key.strip())
    assert fsck(locker.runtime).findings == []


def test_bundle_carries_a_pdf_report_with_arabic_shaped(locker: Locker, tmp_path: Path) -> None:
    court = "محكمة"  # every letter joins the next (the last only joins the one before)
    with locker.client() as client:
        item = client.post("/v1/evidence", files=[("file", (f"{court}.jpg", PHOTO, "x/y"))])
        export_id = client.post("/v1/exports", json={"evidence_ids": [item.json()["id"]]}).json()[
            "id"
        ]
        assert _wait_done(client, export_id)["status"] == "done"
        content = client.get(f"/v1/exports/{export_id}/content").content
        key = client.get("/v1/custody/verifier-key").text
    bundle = tmp_path / "bundle.zip"
    bundle.write_bytes(content)
    assert verify_path(bundle, key).ok
    root = f"export-{export_id}/"
    with zipfile.ZipFile(bundle) as archive:
        pdf = archive.read(root + "report/report.pdf")
        tagmanifest = archive.read(root + "tagmanifest-sha256.txt").decode()
    assert pdf.startswith(b"%PDF-")
    assert f"{hashlib.sha256(pdf).hexdigest()}  report/report.pdf" in tagmanifest.splitlines()
    # Read back in logical order and drawn as one stroke; unshaped it reads reversed
    # and is five separate letters (tests/report/test_pdf.py shows both).
    word = find_word(pdf, court)
    assert word is not None
    assert ink_runs(pdf, word) == 1


def test_bundle_tampering_is_found(locker: Locker, tmp_path: Path) -> None:
    with locker.client() as client:
        _, items = _incident_with_evidence(client)
        export_id = client.post(
            "/v1/exports", json={"evidence_ids": [i["id"] for i in items]}
        ).json()["id"]
        _wait_done(client, export_id)
        content = client.get(f"/v1/exports/{export_id}/content").content
        key = client.get("/v1/custody/verifier-key").text
    tampered = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(content)) as src, zipfile.ZipFile(tampered, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.endswith(".jpg"):
                data = data[:10] + bytes([data[10] ^ 1]) + data[11:]
            dst.writestr(info, data)
    path = tmp_path / "tampered.zip"
    path.write_bytes(tampered.getvalue())
    verdict = verify_path(path, key)
    assert not verdict.ok
    assert any(".jpg" in f.subject for f in verdict.findings), verdict.findings


def test_exports_are_refused_without_content_rights_or_across_organisations(
    locker: Locker,
) -> None:
    other = locker.new_organisation("Other NGO")
    with locker.client() as admin, locker.client(other) as theirs:
        item = admin.post("/v1/evidence", files=[("file", ("a.jpg", PHOTO, "x/y"))]).json()
        admin.post("/v1/members", json={"email": "aud@example.org", "role": "auditor"})
        auditor = admin.post("/v1/keys", json={"email": "aud@example.org", "name": "a"}).json()[
            "key"
        ]
        with locker.client(auditor) as client:
            assert (
                client.post("/v1/exports", json={"evidence_ids": [item["id"]]}).status_code == 403
            )
        assert theirs.post("/v1/exports", json={"evidence_ids": [item["id"]]}).status_code == 404
        assert admin.post("/v1/exports", json={}).status_code == 422
        mine = admin.post("/v1/exports", json={"evidence_ids": [item["id"]]}).json()
        assert theirs.get(f"/v1/exports/{mine['id']}").status_code == 404


def test_bundle_records_keep_asserted_and_extracted_metadata_apart(
    locker: Locker, tmp_path: Path
) -> None:
    with locker.client() as client:
        item = client.post(
            "/v1/evidence",
            files=[("file", ("site.jpg", sample_photo(seed=2), "x/y"))],
            data={"metadata": json.dumps({"title": "صورة الموقع", "source_reliability": "B"})},
        ).json()
        analysed(client, item["id"])
        export_id = client.post("/v1/exports", json={"evidence_ids": [item["id"]]}).json()["id"]
        assert _wait_done(client, export_id)["status"] == "done"
        content = client.get(f"/v1/exports/{export_id}/content").content
    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        names = archive.namelist()
        record_name = next(n for n in names if n.endswith(f"{item['id']}.json"))
        record = json.loads(archive.read(record_name))
        report = archive.read(next(n for n in names if n.endswith("report/report.html"))).decode()
    assert record["description"]["asserted"] == {"title": "صورة الموقع", "source_reliability": "B"}
    assert record["description"]["version"] == 1
    assert record["extracted"]["metadata"]["gps"]["latitude"] == 32.4335
    assert "gps" not in record["description"]["asserted"]
    assert "Asserted by the collector (version 1)" in report and "صورة الموقع" in report
    assert "Read from the file" in report and "32.4335" in report
