"""Keys, roles, restricted items and the record of every refusal."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import httpx
from sqlmodel import select

from service.db.models import ApiKey
from tests.harness import Locker

PNG = b"\x89PNG\r\n\x1a\n" + b"access" * 300


def _member_key(admin: httpx.Client, email: str, role: str, **key: object) -> str:
    assert admin.post("/v1/members", json={"email": email, "role": role}).status_code == 201
    response = admin.post("/v1/keys", json={"email": email, "name": "t", **key})
    assert response.status_code == 201, response.text
    return str(response.json()["key"])


def _actions(client: httpx.Client) -> list[dict[str, object]]:
    entries = client.get("/v1/custody/entries", params={"limit": 1000}).json()
    # A withheld entry has no leaf bytes, only its fields with the hidden parts withheld.
    return [
        e["fields"] if e["withheld"] else json.loads(base64.b64decode(e["leaf_b64"]))
        for e in entries
    ]


def test_key_is_shown_once_stored_hashed_and_revoked_at_once(locker: Locker) -> None:
    with locker.client() as admin:
        created = admin.post("/v1/keys", json={"name": "laptop", "role": "auditor"}).json()
        secret = created["key"]
        assert created["role"] == "auditor" and secret.startswith(f"lk_{created['prefix']}_")
        listed = admin.get("/v1/keys").json()
        assert all("key" not in k for k in listed)
        with locker.client(secret) as laptop:
            assert laptop.get("/v1/incidents").status_code == 200
            assert admin.delete(f"/v1/keys/{created['prefix']}").status_code == 200
            assert laptop.get("/v1/incidents").status_code == 401
    with locker.runtime.database.session() as session:
        row = session.exec(select(ApiKey).where(ApiKey.prefix == created["prefix"])).one()
    assert row.key_sha256 != secret and secret not in row.model_dump_json()
    assert row.last_used_at is not None


def test_expired_key_is_refused(locker: Locker) -> None:
    with locker.client() as admin:
        created = admin.post("/v1/keys", json={"name": "short", "expires_days": 1}).json()
    with locker.runtime.database.session() as session:
        row = session.exec(select(ApiKey).where(ApiKey.prefix == created["prefix"])).one()
        row.expires_at = datetime.now(UTC) - timedelta(seconds=1)
        session.add(row)
    with locker.client(created["key"]) as expired:
        response = expired.get("/v1/incidents")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


def test_escalation_is_refused_and_recorded(locker: Locker) -> None:
    with locker.client() as admin:
        analyst = _member_key(admin, "analyst@example.org", "analyst")
        with locker.client(analyst) as client:
            above = client.post("/v1/keys", json={"name": "x", "role": "admin"})
            as_other = client.post("/v1/keys", json={"name": "x", "email": "lead@example.org"})
        incident = admin.post("/v1/incidents", json={"title": "t", "restricted": True}).json()
        self_grant = admin.post(
            f"/v1/incidents/{incident['id']}/grants", json={"email": "lead@example.org"}
        )
        actions = _actions(admin)
    assert above.status_code == 403 and "cannot exceed" in above.json()["detail"]
    assert as_other.status_code == 403
    assert self_grant.status_code == 403
    denied = [a for a in actions if a["action"] == "access.denied"]
    assert len(denied) == 3, denied


def test_auditor_reads_records_but_not_content_unless_granted(locker: Locker) -> None:
    with locker.client() as admin:
        auditor = _member_key(admin, "auditor@example.org", "auditor")
        item = admin.post("/v1/evidence", files=[("file", ("a.png", PNG, "image/png"))]).json()
        with locker.client(auditor) as client:
            assert client.get(f"/v1/evidence/{item['id']}").status_code == 200
            assert client.get(f"/v1/evidence/{item['id']}/custody").status_code == 200
            assert client.get(f"/v1/evidence/{item['id']}/content").status_code == 403
            assert client.post("/v1/incidents", json={"title": "x"}).status_code == 403
            assert admin.post(f"/v1/evidence/{item['id']}/restriction").status_code == 204
            grant = admin.post(
                f"/v1/evidence/{item['id']}/grants", json={"email": "auditor@example.org"}
            )
            assert grant.status_code == 201, grant.text
            content = client.get(f"/v1/evidence/{item['id']}/content")
            assert content.status_code == 200 and content.content == PNG
            assert admin.delete(f"/v1/grants/{grant.json()['id']}").status_code == 200
            assert client.get(f"/v1/evidence/{item['id']}").status_code == 404


def test_restricted_items_are_undetectable_without_a_grant(locker: Locker) -> None:
    with locker.client() as admin:
        investigator = _member_key(admin, "inv@example.org", "investigator")
        colleague = _member_key(admin, "colleague@example.org", "investigator")
        with locker.client(investigator) as owner, locker.client(colleague) as other:
            secret = owner.post(
                "/v1/incidents", json={"title": "witness list", "restricted": True}
            ).json()
            evidence = owner.post(
                "/v1/evidence",
                files=[("file", ("w.png", PNG, "image/png"))],
                data={"metadata": json.dumps({"restricted": True})},
            ).json()
            public = owner.post("/v1/incidents", json={"title": "public"}).json()
            owner.post(
                f"/v1/incidents/{public['id']}/evidence",
                json={"evidence_id": evidence["id"], "reason": "r"},
            )
            assert owner.get(f"/v1/incidents/{secret['id']}").status_code == 200
            assert other.get(f"/v1/incidents/{secret['id']}").status_code == 404
            assert [i["id"] for i in other.get("/v1/incidents").json()["items"]] == [public["id"]]
            assert other.get(f"/v1/incidents/{public['id']}").json()["evidence"] == []
            assert other.get(f"/v1/evidence/{evidence['id']}").status_code == 404
            link = other.post(
                f"/v1/incidents/{secret['id']}/evidence",
                json={"evidence_id": evidence["id"], "reason": "r"},
            )
            assert link.status_code == 404
            seen = json.dumps(_actions(other))
            assert secret["id"] not in seen and evidence["id"] not in seen
            assert secret["id"] in json.dumps(_actions(owner))
            # Nothing the colleague sees of the log reveals the attempts either.
            assert "access.denied" not in seen


def test_other_organisation_cannot_see_list_or_detect(locker: Locker) -> None:
    other = locker.new_organisation("Organisation B")
    with locker.client() as mine, locker.client(other) as theirs:
        incident = mine.post("/v1/incidents", json={"title": "A's"}).json()
        item = mine.post("/v1/evidence", files=[("file", ("a.png", PNG, "image/png"))]).json()
        assert theirs.get(f"/v1/evidence/{item['id']}/custody").status_code == 404
        assert theirs.get(f"/v1/incidents/{incident['id']}").status_code == 404
        assert theirs.get("/v1/incidents").json()["items"] == []
        seen = json.dumps(_actions(theirs))
        assert item["id"] not in seen and incident["id"] not in seen
        denied = [a for a in _actions(mine) if a["action"] == "access.denied"]
    assert {d["subject"] for d in denied} == {
        f"evidence:{item['id']}",
        f"incident:{incident['id']}",
    }
