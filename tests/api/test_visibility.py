"""What a member cannot see does not exist for them: not in exports, custody views or dedupe.

A restricted item R sits in an ordinary incident I beside an ordinary item E; E is also
linked to a restricted incident. The admin holds a grant on both; the investigator does
not. Nothing the investigator can reach may carry R's id, digest, filename or title, or
the restricted incident's id.
"""

from __future__ import annotations

import base64
import io
import json
import time
import zipfile
from dataclasses import dataclass

import httpx

from service.core.checkpoint import Checkpoint
from service.core.merkle import verify_inclusion
from tests.harness import Locker

PNG = b"\x89PNG\r\n\x1a\n"
SECRET_BYTES = PNG + b"protected witness statement" * 40
SECRET_NAME = "witness-7-statement.png"
SECRET_TITLE = "Statement of witness seven"
OPEN_BYTES = PNG + b"market square photograph" * 40


@dataclass(frozen=True, slots=True, kw_only=True)
class Scene:
    admin: str
    investigator: str
    incident: str  # ordinary, holds the restricted item and the ordinary one
    restricted_incident: str
    secret: dict[str, str]  # id, sha256
    item: str  # ordinary item in the ordinary incident

    def markers(self) -> list[str]:
        """What must never reach the investigator."""
        return [
            self.secret["id"],
            self.secret["sha256"],
            SECRET_NAME,
            SECRET_TITLE,
            self.restricted_incident,
        ]


def _ok(response: httpx.Response) -> dict[str, object]:
    assert response.status_code in (200, 201, 202), response.text
    return dict(response.json())


def build_scene(locker: Locker) -> Scene:
    with locker.client() as admin:
        _ok(admin.post("/v1/members", json={"email": "inv@example.org", "role": "investigator"}))
        investigator = str(
            _ok(admin.post("/v1/keys", json={"email": "inv@example.org", "name": "i"}))["key"]
        )
        incident = str(_ok(admin.post("/v1/incidents", json={"title": "Market shelling"}))["id"])
        hidden_incident = _ok(
            admin.post("/v1/incidents", json={"title": "Witness list", "restricted": True})
        )
        secret = _ok(
            admin.post(
                "/v1/evidence",
                files=[("file", (SECRET_NAME, SECRET_BYTES, "image/png"))],
                data={
                    "metadata": json.dumps(
                        {"incident_id": incident, "restricted": True, "title": SECRET_TITLE}
                    )
                },
            )
        )
        item = _ok(
            admin.post(
                "/v1/evidence",
                files=[("file", ("square.png", OPEN_BYTES, "image/png"))],
                data={"metadata": json.dumps({"incident_id": incident})},
            )
        )
        _ok(
            admin.post(
                f"/v1/incidents/{hidden_incident['id']}/evidence",
                json={"evidence_id": item["id"], "reason": "same square"},
            )
        )
    return Scene(
        admin=locker.api_key,
        investigator=investigator,
        incident=incident,
        restricted_incident=str(hidden_incident["id"]),
        secret={"id": str(secret["id"]), "sha256": str(secret["sha256"])},
        item=str(item["id"]),
    )


def _export(client: httpx.Client, body: dict[str, object]) -> str:
    export = _ok(client.post("/v1/exports", json=body))
    for _ in range(600):
        status = _ok(client.get(f"/v1/exports/{export['id']}"))
        if status["status"] == "done":
            return str(export["id"])
        assert status["status"] == "pending", status
        time.sleep(0.05)
    raise AssertionError("the export never finished")


def _leaks(text: str, scene: Scene) -> list[str]:
    return [m for m in scene.markers() if m in text]


def test_an_export_holding_a_restricted_item_is_not_downloadable_without_a_grant(
    locker: Locker,
) -> None:
    scene = build_scene(locker)
    with locker.client(scene.admin) as admin:
        export_id = _export(admin, {"incident_id": scene.incident})
        # The admin holds the grant: the bundle is theirs, restricted item included.
        assert admin.get(f"/v1/exports/{export_id}/content").status_code == 200
    with locker.client(scene.investigator) as investigator:
        download = investigator.get(f"/v1/exports/{export_id}/content")
        status = investigator.get(f"/v1/exports/{export_id}")
        unknown = investigator.get("/v1/exports/00000000-0000-0000-0000-000000000000/content")
    assert download.status_code == 404, download.status_code
    assert SECRET_BYTES not in download.content
    assert status.status_code == 404
    assert download.json().keys() == unknown.json().keys()


def test_custody_of_a_visible_item_withholds_what_the_reader_cannot_see(locker: Locker) -> None:
    scene = build_scene(locker)
    with locker.client(scene.admin) as admin:
        _export(admin, {"incident_id": scene.incident})
    with locker.client(scene.investigator) as investigator:
        trail = investigator.get(f"/v1/evidence/{scene.item}/custody")
        entries = investigator.get("/v1/custody/entries", params={"limit": 1000})
        audit = investigator.get("/v1/custody/export", params={"evidence": scene.item})
        audit_csv = investigator.get("/v1/custody/export", params={"format": "csv"})
        case = investigator.get("/v1/custody/export", params={"format": "case"})
    for response in (trail, entries, audit, audit_csv, case):
        assert response.status_code == 200, response.text
        assert _leaks(response.text, scene) == [], response.request.url
    withheld = [e for e in trail.json()["entries"] if e["withheld"]]
    # The export and the link to the restricted incident are there, their parties withheld.
    assert {e["fields"]["action"] for e in withheld} == {
        "export.created",
        "incident.evidence_linked",
    }
    checkpoint = Checkpoint.from_text(trail.json()["checkpoint"].split("\n\n")[0] + "\n")
    for entry in withheld:
        assert entry["leaf_b64"] is None
        verify_inclusion(
            index=entry["index"],
            size=checkpoint.size,
            leaf_hash=base64.b64decode(entry["leaf_hash"]),
            proof=[base64.b64decode(h) for h in entry["inclusion_proof"]],
            root=checkpoint.root_hash,
        )


def test_an_investigators_own_export_names_nothing_restricted(locker: Locker) -> None:
    scene = build_scene(locker)
    with locker.client(scene.admin) as admin:
        _export(admin, {"incident_id": scene.incident})  # names R in its export.created
    with locker.client(scene.investigator) as investigator:
        export_id = _export(investigator, {"incident_id": scene.incident})
        download = investigator.get(f"/v1/exports/{export_id}/content")
    assert download.status_code == 200, download.text
    leaks = []
    with zipfile.ZipFile(io.BytesIO(download.content)) as bundle:
        names = bundle.namelist()
        for name in names:
            found = _leaks(name + bundle.read(name).decode("latin-1"), scene)
            leaks += [f"{name}: {m}" for m in found]
    assert leaks == []
    assert any(n.endswith(f"{scene.item}.json") for n in names)
