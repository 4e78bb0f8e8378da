"""The audit export as an auditor reads it: people named, details labelled, proofs last."""

from __future__ import annotations

import base64
import csv
import io
import json

from service.audit.formats import CSV_COLUMNS
from tests.harness import Locker

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


def _export(locker: Locker) -> tuple[list[dict[str, str]], list[str], list[dict[str, object]]]:
    with locker.client() as client:
        member = client.post(
            "/v1/members", json={"email": "نور@example.org", "role": "investigator"}
        ).json()
        client.post("/v1/evidence", files=[("file", ("مقبرة.png", PNG, "image/png"))])
        table = client.get("/v1/custody/export", params={"format": "csv"})
        lines = client.get("/v1/custody/export", params={"format": "jsonl"})
    assert table.status_code == 200 and lines.status_code == 200
    rows = list(csv.reader(io.StringIO(table.text)))
    header, body = rows[0], rows[1:]
    named = [dict(zip(header, row, strict=True)) for row in body]
    assert named[-1]["index"] == "checkpoint"
    documents = [json.loads(line) for line in lines.text.splitlines()]
    return named, [member["id"]], documents


def test_csv_names_people_and_keeps_proofs_in_the_last_columns(locker: Locker) -> None:
    rows, (member_id,), _ = _export(locker)
    header = list(rows[0])
    assert header == list(CSV_COLUMNS)
    assert header[-3:] == ["leaf_b64", "inclusion_proof", "leaf_hash"]
    entries = rows[:-1]
    added = next(r for r in entries if r["subject_id"] == f"user:{member_id}")
    assert added["action"] == "member.added"
    assert added["actor"] == "lead@example.org" and added["actor_id"].startswith("user:")
    assert added["subject"] == "نور@example.org"
    assert added["organisation"] == "Tarhuna Documentation Project"
    # The entry signs who was added; a right-to-left value is isolated.
    assert added["details"] == "email: \u2068نور@example.org\u2069; role: investigator"
    ingested = next(r for r in entries if r["action"] == "evidence.ingested")
    assert ingested["actor"] == "lead@example.org"
    assert {"media type: image/png", f"size: {len(PNG)}"} <= set(ingested["details"].split("; "))
    operator = entries[0]
    assert operator["actor_id"].startswith("operator") and "operator" in operator["actor"]
    for row in entries:  # no base64 or braces in the reader's columns
        for column in CSV_COLUMNS[:-3]:
            assert "{" not in row[column], (column, row[column])
        assert base64.b64decode(row["leaf_b64"]).startswith(b"{")


def test_jsonl_names_the_references_beside_the_fields(locker: Locker) -> None:
    _, (member_id,), lines = _export(locker)
    added = next(d for d in lines[:-1] if d["fields"]["subject"] == f"user:{member_id}")
    assert added["names"][f"user:{member_id}"] == "نور@example.org"
    assert added["names"][added["fields"]["actor"]] == "lead@example.org"
    assert added["names"][added["fields"]["organisation"]] == "Tarhuna Documentation Project"
    assert "checkpoint" in lines[-1]
