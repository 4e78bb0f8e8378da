"""`locker fsck` checks versions, notes and analyses against the digests in the log."""

from __future__ import annotations

import json

import pytest

from service.operations.demo import sample_photo
from service.operations.fsck import fsck
from tests.cli.test_fsck import _tamper
from tests.harness import Locker, analysed


@pytest.fixture
def documented(locker: Locker) -> dict[str, str]:
    with locker.client() as client:
        incident = client.post("/v1/incidents", json={"title": "ترهونة"}).json()
        client.patch(f"/v1/incidents/{incident['id']}", json={"status": "closed"})
        item = client.post(
            "/v1/evidence",
            files=[("file", ("site.jpg", sample_photo(seed=3), "image/jpeg"))],
            data={"metadata": json.dumps({"title": "site"})},
        ).json()
        analysed(client, item["id"])
        client.patch(f"/v1/evidence/{item['id']}/metadata", json={"title": "the site"})
        note = client.post(f"/v1/incidents/{incident['id']}/notes", json={"body": "n"}).json()
    return {"incident": incident["id"], "evidence": item["id"], "note": note["id"]}


def test_a_documented_locker_passes(locker: Locker, documented: dict[str, str]) -> None:
    report = fsck(locker.runtime)
    assert report.findings == []
    # two incident versions, two metadata versions, one note, one analysis
    assert report.checked["documentation records"] == 6


@pytest.mark.parametrize(
    ("table", "statement", "finding"),
    [
        (
            "incident_version",
            "UPDATE incident_version SET document_json = "
            "replace(document_json, 'closed', 'open') WHERE version = 2",
            "version 2: its stored digest does not match its text",
        ),
        (
            "incident_version",
            "UPDATE incident_version SET document_json = replace(document_json, 'closed', 'open'),"
            " document_sha256 = 'x' WHERE version = 2",
            "document_sha256",
        ),
        (
            "evidence_version",
            'UPDATE evidence_version SET asserted_json = \'{"title": "forged"}\' WHERE version = 1',
            "metadata version 1",
        ),
        ("note", "UPDATE note SET body = 'rewritten'", "body_sha256"),
        (
            "evidence_analysis",
            "UPDATE evidence_analysis SET extracted_json = '{}'",
            "extracted_sha256",
        ),
    ],
)
def test_an_edited_record_is_found(
    locker: Locker, documented: dict[str, str], table: str, statement: str, finding: str
) -> None:
    _tamper(locker.runtime, table, statement)
    findings = fsck(locker.runtime).findings
    assert any(finding in f for f in findings), findings
