"""Members' names: recorded when they are added, signed in the log, and shown beside their
e-mail and id wherever the audit export and the report name people."""

from __future__ import annotations

import base64
import csv
import io
import json
import zipfile
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from service.core.readable import isolate
from service.operations.fsck import fsck
from tests.api.test_exports import _wait_done
from tests.harness import Locker
from tests.report.rendering import page_texts

NOOR = "نور الهدى"
NOOR_EMAIL = "noor@example.org"
NOOR_LABEL = f"{isolate(NOOR)} <{NOOR_EMAIL}>"  # the name isolated, then the e-mail
PHOTO = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


def _add_noor(client: httpx.Client) -> dict[str, object]:
    added = client.post(
        "/v1/members",
        json={"email": NOOR_EMAIL, "role": "investigator", "name": f"  {NOOR}\t"},
    )
    assert added.status_code == 201, added.text
    return dict(added.json())


def _audit(client: httpx.Client) -> tuple[list[dict[str, str]], list[dict[str, Any]]]:
    table = client.get("/v1/custody/export", params={"format": "csv"})
    lines = client.get("/v1/custody/export", params={"format": "jsonl"})
    assert table.status_code == 200 and lines.status_code == 200
    rows = list(csv.DictReader(io.StringIO(table.text)))
    return rows[:-1], [json.loads(line) for line in lines.text.splitlines()[:-1]]


def test_a_name_is_recorded_trimmed_and_listed(locker: Locker) -> None:
    with locker.client() as client:
        noor = _add_noor(client)
        unnamed = client.post("/v1/members", json={"email": "x@example.org", "role": "analyst"})
        listed = client.get("/v1/members").json()
    assert noor["name"] == NOOR and noor["email"] == NOOR_EMAIL
    assert unnamed.status_code == 201 and unnamed.json()["name"] is None
    assert [(m["email"], m["name"]) for m in listed] == [
        ("lead@example.org", None),  # bootstrapped without a name
        (NOOR_EMAIL, NOOR),
        ("x@example.org", None),
    ]


def test_the_audit_export_names_people_from_their_signed_entry(locker: Locker) -> None:
    with locker.client() as client:
        noor = _add_noor(client)
        noor_key = client.post("/v1/keys", json={"email": NOOR_EMAIL}).json()["key"]
        with locker.client(noor_key) as as_noor:
            assert as_noor.post("/v1/evidence", files=[("file", ("a.png", PHOTO))]).is_success
        rows, lines = _audit(client)
    reference = f"user:{noor['id']}"
    added = next(r for r in rows if r["action"] == "member.added" and r["subject_id"] == reference)
    assert added["subject"] == NOOR_LABEL
    assert added["details"] == f"email: {NOOR_EMAIL}; name: {isolate(NOOR)}; role: investigator"
    ingested = next(r for r in rows if r["action"] == "evidence.ingested")
    assert (ingested["actor"], ingested["actor_id"]) == (NOOR_LABEL, reference)
    # The lead was bootstrapped without a name: the e-mail alone, never "None".
    assert added["actor"] == "lead@example.org"
    assert all("None" not in r["actor"] + r["subject"] for r in rows)
    signed = next(
        d["fields"] | {"names": d["names"]}
        for d in lines
        if d["fields"]["action"] == "member.added" and d["fields"]["subject"] == reference
    )
    assert (signed["name"], signed["email"], signed["role"]) == (NOOR, NOOR_EMAIL, "investigator")
    assert signed["names"][reference] == NOOR_LABEL


def test_the_report_names_the_member_beside_their_id(locker: Locker) -> None:
    with locker.client() as client:
        noor = _add_noor(client)
        noor_key = client.post("/v1/keys", json={"email": NOOR_EMAIL}).json()["key"]
        with locker.client(noor_key) as as_noor:
            item = as_noor.post("/v1/evidence", files=[("file", ("a.png", PHOTO))]).json()
        export_id = client.post("/v1/exports", json={"evidence_ids": [item["id"]]}).json()["id"]
        assert _wait_done(client, export_id)["status"] == "done"
        content = client.get(f"/v1/exports/{export_id}/content").content
    root = f"export-{export_id}/report/"
    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        html = archive.read(root + "report.html").decode()
        pdf = archive.read(root + "report.pdf")
    labelled = f'<td dir="auto"><bdi>{NOOR}</bdi> &lt;{NOOR_EMAIL}&gt;</td>'
    assert f'{labelled}<td dir="auto">user:{noor["id"]}</td>' in html  # the People table
    assert html.count(labelled) >= 3  # and the acquisition and timeline rows
    text = "\n".join(page_texts(pdf))
    assert f"<{NOOR_EMAIL}>" in text and f"user:{noor['id']}" in text
    assert "None" not in text and "None" not in html


def test_the_log_not_the_row_names_a_member(locker: Locker) -> None:
    with locker.client() as client:
        noor = _add_noor(client)
        _edit_member(locker, noor, "name = 'someone else'")
        rows, _ = _audit(client)
    added = next(r for r in rows if r["subject_id"] == f"user:{noor['id']}")
    assert added["subject"] == NOOR_LABEL
    findings = fsck(locker.runtime).findings
    assert findings == [
        f"member {noor['id']}: record has name='someone else', entry {added['index']} has {NOOR!r}"
    ]


def test_a_row_moved_onto_another_entry_names_no_one_from_it(locker: Locker) -> None:
    with locker.client() as client:
        noor = _add_noor(client)
        _edit_member(locker, noor, "custody_index = 0")  # organisation.created
        rows, _ = _audit(client)
    added = next(r for r in rows if r["subject_id"] == f"user:{noor['id']}")
    assert added["subject"] == NOOR_EMAIL  # the row's e-mail, and no name from the row
    findings = fsck(locker.runtime).findings
    assert f"member {noor['id']}: record has action='member.added', entry 0 has" in findings[0]


def _edit_member(locker: Locker, member: dict[str, object], change: str) -> None:
    """What an insider with the database could do: the member table is not append-only."""
    with locker.runtime.database.engine.begin() as connection:
        connection.execute(
            text(f"UPDATE user_account SET {change} WHERE id = :id"), {"id": member["id"]}
        )


def test_a_member_added_before_names_is_named_by_e_mail_alone(locker: Locker) -> None:
    with locker.client() as client:
        noor = _add_noor(client)
        # As the migration leaves a member added earlier: no name, no signing entry.
        _edit_member(locker, noor, "name = NULL, custody_index = NULL")
        rows, _ = _audit(client)
    added = next(r for r in rows if r["subject_id"] == f"user:{noor['id']}")
    assert added["subject"] == NOOR_EMAIL
    assert fsck(locker.runtime).findings == []


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("   ", "name: must not be empty"),
        ("", "name: must not be empty"),
        ("نور\u0007", "name: must not hold control characters"),
        ("نور\nالهدى", "name: must not hold control characters"),
        ("\u202egnp.exe", "name: must not hold control characters"),
        ("نور\u2069", "name: must not hold control characters"),
        ("ن" * 201, "name: "),
        (7, "name: "),
    ],
)
def test_a_bad_name_is_a_one_line_422_and_adds_no_one(
    locker: Locker, name: object, words: str
) -> None:
    with locker.client() as client:
        refused = client.post(
            "/v1/members", json={"email": NOOR_EMAIL, "role": "analyst", "name": name}
        )
        listed = client.get("/v1/members").json()
    assert refused.status_code == 422, refused.text
    detail = refused.json()["detail"]
    assert detail.startswith(words) and "\n" not in detail and len(detail) <= 300, detail
    assert [m["email"] for m in listed] == ["lead@example.org"]
