"""Every route × every role × own organisation / other organisation / restricted item.

The cases come from the application's route table: a route that declares no
permission, or that this file has no request for, fails the suite.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute

from service.accounts.permissions import Permission, Role, allows, matrix_markdown
from service.app import ROUTERS, create_app
from tests.harness import Locker

PNG = b"\x89PNG\r\n\x1a\n" + b"matrix" * 200
ROLES = [Role.ADMIN, Role.INVESTIGATOR, Role.ANALYST, Role.AUDITOR]


def route_permission(route: APIRoute) -> Permission | None:
    """The Permission a route's dependencies declare, if any."""
    pending = list(route.dependant.dependencies)
    while pending:
        dependant = pending.pop()
        permission = getattr(dependant.call, "permission", None)
        if permission is not None:
            return Permission(permission)
        pending.extend(dependant.dependencies)
    return None


def api_routes() -> list[APIRoute]:
    app = create_app()
    mounted = [r for router in ROUTERS for r in router.routes]
    return [r for r in [*mounted, *app.routes] if isinstance(r, APIRoute)]


@dataclass
class World:
    """Items of organisation A (ours), of B (another), and restricted ones of A."""

    keys: dict[Role, str]
    spare_keys: dict[Role, str]
    ids: dict[str, dict[str, str]] = field(default_factory=dict)


def _post(client: httpx.Client, path: str, **kwargs: Any) -> dict[str, Any]:
    response = client.post(path, **kwargs)
    assert response.status_code in (200, 201, 202), (path, response.text)
    return dict(response.json())


def _items(client: httpx.Client, tag: str, *, restricted: bool = False) -> dict[str, str]:
    incident = _post(client, "/v1/incidents", json={"title": tag, "restricted": restricted})
    metadata = {"restricted": restricted, "incident_id": incident["id"]}
    evidence = _post(
        client,
        "/v1/evidence",
        files=[("file", (f"{tag}.png", PNG + tag.encode(), "image/png"))],
        data={"metadata": json.dumps(metadata)},
    )
    return {"incident": incident["id"], "evidence": evidence["id"]}


def build_world(locker: Locker) -> World:
    keys: dict[Role, str] = {Role.ADMIN: locker.api_key}
    spare: dict[Role, str] = {}
    with locker.client() as admin:
        for role in ROLES[1:]:
            email = f"{role}@a.example"
            _post(admin, "/v1/members", json={"email": email, "role": role})
            keys[role] = _post(admin, "/v1/keys", json={"email": email, "name": "m"})["key"]
        for role in ROLES:
            spare[role] = _post(admin, "/v1/keys", json={"email": _email(role), "name": "spare"})[
                "prefix"
            ]
        world = World(keys=keys, spare_keys=spare)
        world.ids["own"] = _items(admin, "own")
        world.ids["own"]["export"] = _post(
            admin, "/v1/exports", json={"evidence_ids": [world.ids["own"]["evidence"]]}
        )["id"]
        for role in ROLES:  # one incident per role for the restriction route
            world.ids["own"][f"incident_{role}"] = _items(admin, f"own-{role}")["incident"]
        # Restricted by a member outside the matrix: no role under test holds a grant.
        _post(admin, "/v1/members", json={"email": "owner@a.example", "role": "investigator"})
        _post(admin, "/v1/members", json={"email": "x@a.example", "role": "analyst"})
        owner = _post(admin, "/v1/keys", json={"email": "owner@a.example", "name": "o"})["key"]
        with locker.client(owner) as restricter:
            world.ids["restricted"] = _items(restricter, "restricted", restricted=True)
            spare_item = _items(restricter, "restricted-spare", restricted=True)
        world.ids["own"]["grant"] = _post(
            admin, f"/v1/incidents/{spare_item['incident']}/grants", json={"email": "x@a.example"}
        )["id"]
    other = locker.new_organisation("Other organisation")
    with locker.client(other) as b:
        world.ids["other"] = _items(b, "other")
        world.ids["other"]["export"] = _post(
            b, "/v1/exports", json={"evidence_ids": [world.ids["other"]["evidence"]]}
        )["id"]
        world.ids["other"]["key_prefix"] = _post(b, "/v1/keys", json={"name": "b"})["prefix"]
        restricted = _items(b, "other-restricted", restricted=True)
        _post(b, "/v1/members", json={"email": "x@b.example", "role": "analyst"})
        world.ids["other"]["grant"] = _post(
            b, f"/v1/incidents/{restricted['incident']}/grants", json={"email": "x@b.example"}
        )["id"]
    return world


def _email(role: Role) -> str:
    return "lead@example.org" if role is Role.ADMIN else f"{role}@a.example"


Request = Callable[[httpx.Client, dict[str, str], Role, World], httpx.Response]
# One request per route (method, path). Item-scoped routes use the scenario's ids.
ALL = ("own", "other", "restricted")
OWN = ("own",)
NOT_ITEMS = ("own", "other")  # keys and grants are not restricted items
TUS = {"Tus-Resumable": "1.0.0"}


def _own_upload(client: httpx.Client) -> str:
    """A new upload of the caller's (its own: another member's answers 404)."""
    created = client.post(
        "/v1/uploads", headers=TUS | {"Upload-Length": "4", "Upload-Metadata": "filename eA=="}
    )
    return str(created.headers.get("Location", "/v1/uploads/none"))


CASES: dict[tuple[str, str], tuple[tuple[str, ...], Request]] = {
    ("OPTIONS", "/v1/uploads"): (OWN, lambda c, i, r, w: c.options("/v1/uploads")),
    ("POST", "/v1/uploads"): (
        OWN,
        lambda c, i, r, w: c.post(
            "/v1/uploads", headers=TUS | {"Upload-Length": "4", "Upload-Metadata": "filename eA=="}
        ),
    ),
    ("HEAD", "/v1/uploads/{upload_id}"): (
        OWN,
        lambda c, i, r, w: c.head(_own_upload(c), headers=TUS),
    ),
    ("PATCH", "/v1/uploads/{upload_id}"): (
        OWN,
        lambda c, i, r, w: c.patch(
            _own_upload(c),
            content=b"ab",
            headers=TUS | {"Content-Type": "application/offset+octet-stream", "Upload-Offset": "0"},
        ),
    ),
    ("DELETE", "/v1/uploads/{upload_id}"): (
        OWN,
        lambda c, i, r, w: c.delete(_own_upload(c), headers=TUS),
    ),
    ("POST", "/v1/evidence"): (
        OWN,
        lambda c, i, r, w: c.post(
            "/v1/evidence", files=[("file", (f"{r}.png", PNG + r.encode() + b"new", "image/png"))]
        ),
    ),
    ("GET", "/v1/evidence/{evidence_id}"): (
        ALL,
        lambda c, i, r, w: c.get(f"/v1/evidence/{i['evidence']}"),
    ),
    ("GET", "/v1/evidence/{evidence_id}/content"): (
        ALL,
        lambda c, i, r, w: c.get(f"/v1/evidence/{i['evidence']}/content"),
    ),
    ("GET", "/v1/evidence/{evidence_id}/custody"): (
        ALL,
        lambda c, i, r, w: c.get(f"/v1/evidence/{i['evidence']}/custody"),
    ),
    ("POST", "/v1/incidents"): (
        OWN,
        lambda c, i, r, w: c.post("/v1/incidents", json={"title": "new"}),
    ),
    ("GET", "/v1/incidents"): (OWN, lambda c, i, r, w: c.get("/v1/incidents")),
    ("GET", "/v1/incidents/{incident_id}"): (
        ALL,
        lambda c, i, r, w: c.get(f"/v1/incidents/{i['incident']}"),
    ),
    ("POST", "/v1/incidents/{incident_id}/evidence"): (
        ALL,
        lambda c, i, r, w: c.post(
            f"/v1/incidents/{i['incident']}/evidence",
            json={"evidence_id": i["evidence"], "reason": f"by {r}"},
        ),
    ),
    ("PATCH", "/v1/incidents/{incident_id}"): (
        ALL,
        lambda c, i, r, w: c.patch(f"/v1/incidents/{i['incident']}", json={"status": "closed"}),
    ),
    ("GET", "/v1/incidents/{incident_id}/history"): (
        ALL,
        lambda c, i, r, w: c.get(f"/v1/incidents/{i['incident']}/history"),
    ),
    ("POST", "/v1/incidents/{incident_id}/evidence/{evidence_id}/unlink"): (
        ALL,
        lambda c, i, r, w: c.post(
            f"/v1/incidents/{i['incident']}/evidence/{i['evidence']}/unlink",
            json={"reason": f"by {r}"},
        ),
    ),
    ("GET", "/v1/evidence"): (OWN, lambda c, i, r, w: c.get("/v1/evidence")),
    ("PATCH", "/v1/evidence/{evidence_id}/metadata"): (
        ALL,
        lambda c, i, r, w: c.patch(
            f"/v1/evidence/{i['evidence']}/metadata", json={"title": f"by {r}"}
        ),
    ),
    ("GET", "/v1/evidence/{evidence_id}/history"): (
        ALL,
        lambda c, i, r, w: c.get(f"/v1/evidence/{i['evidence']}/history"),
    ),
    ("POST", "/v1/{kind}/{item_id}/notes"): (
        ALL,
        lambda c, i, r, w: c.post(f"/v1/evidence/{i['evidence']}/notes", json={"body": r}),
    ),
    ("GET", "/v1/{kind}/{item_id}/notes"): (
        ALL,
        lambda c, i, r, w: c.get(f"/v1/incidents/{i['incident']}/notes"),
    ),
    ("GET", "/v1/search"): (OWN, lambda c, i, r, w: c.get("/v1/search", params={"q": "own"})),
    ("GET", "/v1/vocabulary"): (OWN, lambda c, i, r, w: c.get("/v1/vocabulary")),
    ("GET", "/v1/custody/checkpoint"): (OWN, lambda c, i, r, w: c.get("/v1/custody/checkpoint")),
    ("GET", "/v1/custody/checkpoint/timestamps"): (
        OWN,
        lambda c, i, r, w: c.get("/v1/custody/checkpoint/timestamps", params={"tree_size": 1}),
    ),
    ("GET", "/log/checkpoint"): (OWN, lambda c, i, r, w: c.get("/log/checkpoint")),
    ("GET", "/log/tile/{path:path}"): (OWN, lambda c, i, r, w: c.get("/log/tile/0/000.p/1")),
    ("GET", "/v1/custody/verifier-key"): (
        OWN,
        lambda c, i, r, w: c.get("/v1/custody/verifier-key"),
    ),
    ("GET", "/v1/custody/key-history"): (
        OWN,
        lambda c, i, r, w: c.get("/v1/custody/key-history"),
    ),
    ("GET", "/v1/custody/entries"): (OWN, lambda c, i, r, w: c.get("/v1/custody/entries")),
    ("GET", "/v1/custody/proof/inclusion"): (
        OWN,
        lambda c, i, r, w: c.get(
            "/v1/custody/proof/inclusion", params={"index": 0, "tree_size": 1}
        ),
    ),
    ("GET", "/v1/custody/proof/consistency"): (
        OWN,
        lambda c, i, r, w: c.get("/v1/custody/proof/consistency", params={"first": 1, "second": 2}),
    ),
    ("GET", "/v1/members"): (OWN, lambda c, i, r, w: c.get("/v1/members")),
    ("POST", "/v1/members"): (
        OWN,
        lambda c, i, r, w: c.post(
            "/v1/members", json={"email": f"new-{r}@a.example", "role": "auditor"}
        ),
    ),
    ("GET", "/v1/keys"): (OWN, lambda c, i, r, w: c.get("/v1/keys")),
    ("POST", "/v1/keys"): (OWN, lambda c, i, r, w: c.post("/v1/keys", json={"name": "x"})),
    ("DELETE", "/v1/keys/{prefix}"): (
        NOT_ITEMS,
        lambda c, i, r, w: c.delete(f"/v1/keys/{i.get('key_prefix', w.spare_keys[r])}"),
    ),
    ("POST", "/v1/{kind}/{item_id}/restriction"): (
        ALL,
        lambda c, i, r, w: c.post(
            f"/v1/incidents/{i.get('incident_' + r, i['incident'])}/restriction"
        ),
    ),
    ("POST", "/v1/{kind}/{item_id}/grants"): (
        ALL,
        lambda c, i, r, w: c.post(
            f"/v1/evidence/{i['evidence']}/grants", json={"email": "x@a.example"}
        ),
    ),
    ("DELETE", "/v1/grants/{grant_id}"): (
        NOT_ITEMS,
        lambda c, i, r, w: c.delete(f"/v1/grants/{i['grant']}"),
    ),
    ("POST", "/v1/exports"): (
        ALL,
        lambda c, i, r, w: c.post("/v1/exports", json={"evidence_ids": [i["evidence"]]}),
    ),
    ("GET", "/v1/exports/{export_id}"): (
        NOT_ITEMS,
        lambda c, i, r, w: c.get(f"/v1/exports/{i['export']}"),
    ),
    ("GET", "/v1/exports/{export_id}/content"): (
        NOT_ITEMS,
        lambda c, i, r, w: c.get(f"/v1/exports/{i['export']}/content"),
    ),
    ("GET", "/v1/custody/export"): (
        ALL,
        lambda c, i, r, w: c.get("/v1/custody/export", params={"evidence": i["evidence"]}),
    ),
    ("GET", "/healthz"): (OWN, lambda c, i, r, w: c.get("/healthz")),
    ("GET", "/readyz"): (OWN, lambda c, i, r, w: c.get("/readyz")),
    ("GET", "/metrics"): (OWN, lambda c, i, r, w: c.get("/metrics")),
}


def _cases() -> list[tuple[str, str, Permission]]:
    found = []
    for route in api_routes():
        permission = route_permission(route)
        for method in sorted(route.methods):
            found.append((method, route.path, permission))
    return found


def test_every_route_declares_a_permission_and_has_a_case() -> None:
    undeclared = [(m, p) for m, p, perm in _cases() if perm is None]
    assert undeclared == [], f"routes without an explicit permission: {undeclared}"
    missing = [(m, p) for m, p, _ in _cases() if (m, p) not in CASES]
    assert missing == [], f"routes the matrix does not exercise: {missing}"
    stale = set(CASES) - {(m, p) for m, p, _ in _cases()}
    assert not stale, f"cases for routes that no longer exist: {stale}"


# Auditors pass the route's gate for content (a grant may let them read an item), so
# without a grant the permission that decides is the content one.
DECIDING = {("GET", "/v1/evidence/{evidence_id}/content"): Permission.EVIDENCE_CONTENT}


def _expected(gate: Permission, deciding: Permission, role: Role, scenario: str, path: str) -> str:
    if not allows(role, gate):
        return "forbidden"
    if scenario == "restricted" and path.endswith("/grants"):
        return "allowed"  # admins grant on their organisation's items without seeing them
    if scenario != "own":
        return "hidden"  # before any other answer: nothing may reveal the item exists
    return "allowed" if allows(role, deciding) else "forbidden"


def test_authorisation_matrix(locker: Locker) -> None:
    world = build_world(locker)
    failures = []
    for method, path, permission in _cases():
        assert permission is not None
        scenarios, request = CASES[(method, path)]
        for role in ROLES:
            for scenario in scenarios:
                deciding = DECIDING.get((method, path), permission)
                want = _expected(permission, deciding, role, scenario, path)
                with locker.client(world.keys[role]) as client:
                    response = request(client, world.ids[scenario], role, world)
                got = response.status_code
                ok = {
                    "forbidden": got == 403,
                    "hidden": got == 404,
                    "allowed": got < 400 or got == 422,
                }[want]
                if not ok:
                    failures.append(
                        f"{method} {path} as {role} on {scenario}: want {want}, "
                        f"got {got} {response.text[:120]}"
                    )
    assert failures == [], "\n".join(failures)


@pytest.mark.parametrize("scenario", ["other", "restricted"])
def test_hidden_items_answer_exactly_like_unknown_ones(locker: Locker, scenario: str) -> None:
    world = build_world(locker)
    with locker.client(world.keys[Role.INVESTIGATOR]) as client:
        hidden = client.get(f"/v1/evidence/{world.ids[scenario]['evidence']}")
        unknown = client.get("/v1/evidence/00000000-0000-0000-0000-000000000000")
    assert hidden.status_code == unknown.status_code == 404
    assert hidden.json().keys() == unknown.json().keys()
    assert hidden.json()["detail"].startswith("no evidence ")


def test_docs_show_the_matrix_the_code_enforces() -> None:
    docs = (Path(__file__).resolve().parents[2] / "docs" / "security.md").read_text()
    assert matrix_markdown() in docs
