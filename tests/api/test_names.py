"""Names that cannot lie: kept exactly in the record, shown and written only in a safe form.

`photo\u202egpj".exe` is an executable that a right-to-left override displays as
`photoexe.jpg`; its `"` is a character Windows refuses in a file name.
"""

from __future__ import annotations

import io
import time
import zipfile
from urllib.parse import unquote

import httpx

from tests.harness import Locker

LYING = 'photo\u202egpj".exe'
HIDDEN = ("\u202e", "\u2066", "\u200d", '"')
CONTENT = b"MZ" + b"\x90" * 5000


def _upload(client: httpx.Client, filename: str) -> httpx.Response:
    boundary = "locker-test-boundary"
    quoted = filename.replace("\\", "\\\\").replace('"', '\\"')
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{quoted}"'
        "\r\n\r\n".encode()
        + CONTENT
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return client.post(
        "/v1/evidence",
        content=body,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )


def _export(client: httpx.Client, evidence_id: str) -> bytes:
    requested = client.post("/v1/exports", json={"evidence_ids": [evidence_id]})
    assert requested.status_code == 202, requested.text
    for _ in range(600):
        status = client.get(f"/v1/exports/{requested.json()['id']}").json()
        if status["status"] != "pending":
            break
        time.sleep(0.1)
    assert status["status"] == "done", status
    return client.get(f"/v1/exports/{status['id']}/content").content


def test_a_lying_name_is_kept_in_the_record_and_never_shown(locker: Locker) -> None:
    with locker.client() as client:
        uploaded = _upload(client, f"\u2066{LYING}\u200d")
        assert uploaded.status_code == 201, uploaded.text
        item = client.get(f"/v1/evidence/{uploaded.json()['id']}").json()
        download = client.get(f"/v1/evidence/{item['id']}/content")
        bundle = _export(client, item["id"])
    assert item["submissions"][0]["filename"] == f"\u2066{LYING}\u200d"  # exactly as sent
    assert download.status_code == 200
    disposition = download.headers["content-disposition"]
    shown = unquote(disposition.split("filename*=UTF-8''")[1])
    assert shown == "photogpj_.exe"
    assert disposition.split('filename="')[1].split('"')[0] == "photogpj_.exe"
    archive = zipfile.ZipFile(io.BytesIO(bundle))
    members = [n for n in archive.namelist() if "/data/evidence/" in n]
    assert members and members[0].endswith("/photogpj_.exe"), members
    for name in archive.namelist():
        assert not any(c in name for c in HIDDEN), name
    report = next(n for n in archive.namelist() if n.endswith("report/report.html"))
    html = archive.read(report).decode()
    assert "photogpj_.exe" in html
    assert not any(c in html for c in HIDDEN[:3])
