"""Every route × every role, with and without grants: nothing restricted leaks.

The requests come from the application's route table: a new route fails the suite
until it has a request here. Each route is called with the ids of a restricted item and
a restricted incident (as a member without a grant, the answer must be exactly the one
an unknown id gets) and with the ids of visible ones (the answer must not carry the
restricted item's id, digests, filename or title, nor the restricted incident's id or
title, in its body, its headers, or any file of an export it leads to).
"""

from __future__ import annotations

import base64
import io
import json
import re
import time
import uuid
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from service.accounts.permissions import Role
from tests.api.test_authorization_matrix import api_routes
from tests.harness import Locker

PNG = b"\x89PNG\r\n\x1a\n"
SECRET_NAME = "informant-k-interview.png"
SECRET_TITLE = "Interview with informant K"
HIDDEN_INCIDENT_TITLE = "Detention site list"
ROLES = [Role.ADMIN, Role.INVESTIGATOR, Role.ANALYST, Role.AUDITOR]

Ids = dict[str, str]
# (method, path) → the requests to send: keyword arguments for httpx, built from ids.
Variants = Callable[[Ids], list[dict[str, Any]]]


def _upload(ids: Ids) -> list[dict[str, Any]]:
    metadata = json.dumps({"incident_id": ids["incident_id"]})
    data = PNG + uuid.uuid4().bytes * 40  # new bytes every time
    return [{"files": [("file", ("n.png", data, "image/png"))], "data": {"metadata": metadata}}]


TUS = {"Tus-Resumable": "1.0.0"}
_TUS_CHUNK = TUS | {"Content-Type": "application/offset+octet-stream", "Upload-Offset": "0"}


def _tus_creation(ids: Ids) -> list[dict[str, Any]]:
    metadata = base64.b64encode(json.dumps({"incident_id": ids["incident_id"]}).encode()).decode()
    header = f"filename bi5wbmc=,metadata {metadata}"
    return [{"headers": TUS | {"Upload-Length": "10", "Upload-Metadata": header}}]


REQUESTS: dict[tuple[str, str], Variants] = {
    ("OPTIONS", "/v1/uploads"): lambda i: [{}],
    ("POST", "/v1/uploads"): _tus_creation,
    ("HEAD", "/v1/uploads/{upload_id}"): lambda i: [{"headers": TUS}],
    ("PATCH", "/v1/uploads/{upload_id}"): lambda i: [{"headers": _TUS_CHUNK, "content": b"ab"}],
    ("DELETE", "/v1/uploads/{upload_id}"): lambda i: [{"headers": TUS}],
    ("POST", "/v1/evidence"): _upload,
    ("GET", "/v1/evidence"): lambda i: [
        {},
        {"params": {"incident": i["incident_id"]}},
        {"params": {"q": "informant"}},
    ],
    ("PATCH", "/v1/evidence/{evidence_id}/metadata"): lambda i: [{"json": {"title": "edited"}}],
    ("POST", "/v1/incidents"): lambda i: [
        {"json": {"title": "new", "related_incidents": [i["incident_id"]]}}
    ],
    ("PATCH", "/v1/incidents/{incident_id}"): lambda i: [{"json": {"status": "closed"}}],
    ("POST", "/v1/incidents/{incident_id}/evidence"): lambda i: [
        {"json": {"evidence_id": i["evidence_id"], "reason": "r"}}
    ],
    ("POST", "/v1/incidents/{incident_id}/evidence/{evidence_id}/unlink"): lambda i: [
        {"json": {"reason": "r"}}
    ],
    ("GET", "/v1/incidents"): lambda i: [{}, {"params": {"q": "detention"}}],
    ("GET", "/v1/custody/checkpoint/timestamps"): lambda i: [{"params": {"tree_size": 1}}],
    ("GET", "/v1/custody/entries"): lambda i: [{"params": {"limit": 1000}}],
    ("GET", "/v1/custody/proof/inclusion"): lambda i: [{"params": {"index": 0, "tree_size": 2}}],
    ("GET", "/v1/custody/proof/consistency"): lambda i: [{"params": {"first": 1, "second": 2}}],
    ("POST", "/v1/members"): lambda i: [
        {"json": {"email": f"{uuid.uuid4().hex[:8]}@a.example", "role": "auditor"}}
    ],
    ("POST", "/v1/keys"): lambda i: [{"json": {"name": "x"}}],
    ("DELETE", "/v1/keys/{prefix}"): lambda i: [{}],
    ("POST", "/v1/{kind}/{item_id}/restriction"): lambda i: [{}],
    ("POST", "/v1/{kind}/{item_id}/grants"): lambda i: [{"json": {"email": "spare@a.example"}}],
    ("DELETE", "/v1/grants/{grant_id}"): lambda i: [{}],
    ("POST", "/v1/exports"): lambda i: [
        {"json": {"evidence_ids": [i["evidence_id"]]}},
        {"json": {"incident_id": i["incident_id"]}},
    ],
    ("GET", "/v1/custody/export"): lambda i: [
        {"params": {"format": f, **q}}
        for f in ("jsonl", "csv", "case")
        for q in ({}, {"evidence": i["evidence_id"]}, {"incident": i["incident_id"]})
    ],
    ("POST", "/v1/{kind}/{item_id}/notes"): lambda i: [{"json": {"body": "a note"}}],
    ("GET", "/v1/search"): lambda i: [
        {"params": {"q": "informant"}},
        {"params": {"q": "detention"}},
        {"params": {"q": "interview", "type": "evidence", "incident": i["incident_id"]}},
    ],
}
# Run last: they change who sees what, or revoke what others use.
LAST = {
    "/v1/{kind}/{item_id}/restriction",
    "/v1/keys/{prefix}",
    "/v1/grants/{grant_id}",
    "/v1/uploads/{upload_id}",
}
# Grants are managed by admins on items they need not see, named by the id the admin
# gives (or, to revoke, by the grant the admin made): the answer names that item.
ADMIN_NAMES_WHAT_IT_GRANTS = {"/v1/{kind}/{item_id}/grants", "/v1/grants/{grant_id}"}


@dataclass
class World:
    plain: dict[Role, str]  # a member of each role without any grant
    granted: dict[Role, str]  # a member of each role holding grants on both
    hidden: Ids
    visible: Ids
    markers: list[str] = field(default_factory=list)


def _ok(response: httpx.Response) -> Any:
    assert response.status_code in (200, 201, 202, 204), (response.request.url, response.text)
    return response.json() if response.content else None


def _member(admin: httpx.Client, email: str, role: Role) -> str:
    _ok(admin.post("/v1/members", json={"email": email, "role": role}))
    return str(_ok(admin.post("/v1/keys", json={"email": email, "name": "k"}))["key"])


def _finished(client: httpx.Client, export_id: str) -> None:
    for _ in range(600):
        status = _ok(client.get(f"/v1/exports/{export_id}"))["status"]
        if status != "pending":
            assert status == "done"
            return
        time.sleep(0.05)
    raise AssertionError(f"export {export_id} never finished")


def build_world(locker: Locker) -> World:
    with locker.client() as admin:
        plain = {r: _member(admin, f"plain-{r}@a.example", r) for r in ROLES}
        granted = {r: _member(admin, f"granted-{r}@a.example", r) for r in ROLES}
        owner = _member(admin, "owner@a.example", Role.INVESTIGATOR)
        _member(admin, "spare@a.example", Role.ANALYST)
        incident = _ok(admin.post("/v1/incidents", json={"title": "Market shelling"}))["id"]
        with locker.client(owner) as restricter:
            hidden_incident = _ok(
                restricter.post(
                    "/v1/incidents", json={"title": HIDDEN_INCIDENT_TITLE, "restricted": True}
                )
            )["id"]
            metadata = {"incident_id": incident, "restricted": True, "title": SECRET_TITLE}
            secret = _ok(
                restricter.post(
                    "/v1/evidence",
                    files=[("file", (SECRET_NAME, PNG + b"informant" * 50, "image/png"))],
                    data={"metadata": json.dumps(metadata)},
                )
            )
            visible = _ok(
                restricter.post(
                    "/v1/evidence",
                    files=[("file", ("square.png", PNG + b"square" * 50, "image/png"))],
                    data={"metadata": json.dumps({"incident_id": incident})},
                )
            )["id"]
            _ok(
                restricter.post(
                    f"/v1/incidents/{hidden_incident}/evidence",
                    json={"evidence_id": visible, "reason": "same square"},
                )
            )
            for kind, item in (("evidence", secret["id"]), ("incidents", hidden_incident)):
                _ok(restricter.post(f"/v1/{kind}/{item}/notes", json={"body": "secret note"}))
            related = {"related_incidents": [hidden_incident]}
            _ok(restricter.patch(f"/v1/incidents/{incident}", json=related))
            spare_key = _ok(restricter.post("/v1/keys", json={"name": "spare"}))["prefix"]
        grants = {}
        for role in ROLES:
            for kind, item in (("evidence", secret["id"]), ("incidents", hidden_incident)):
                email = f"granted-{role}@a.example"
                grants[(role, kind)] = _ok(
                    admin.post(f"/v1/{kind}/{item}/grants", json={"email": email})
                )["id"]
        with locker.client(granted[Role.ADMIN]) as holder:
            # Built with a grant: it holds the restricted item.
            with_secret = _ok(holder.post("/v1/exports", json={"incident_id": incident}))["id"]
            _finished(holder, with_secret)
        plain_export = _ok(admin.post("/v1/exports", json={"evidence_ids": [visible]}))["id"]
        _finished(admin, plain_export)
        spare_grant = _ok(
            admin.post(f"/v1/evidence/{secret['id']}/grants", json={"email": "spare@a.example"})
        )["id"]
        upload = admin.post(
            "/v1/uploads", headers=TUS | {"Upload-Length": "9", "Upload-Metadata": "filename eA=="}
        )
    common = {
        "prefix": spare_key,
        "grant_id": spare_grant,
        "upload_id": upload.headers["Location"].rsplit("/", 1)[1],
    }
    return World(
        plain=plain,
        granted=granted,
        hidden={
            "evidence_id": secret["id"],
            "incident_id": hidden_incident,
            "export_id": with_secret,
            **common,
        },
        visible={
            "evidence_id": visible,
            "incident_id": incident,
            "export_id": plain_export,
            **common,
        },
        markers=[
            secret["id"],
            secret["sha256"],
            secret["sha512"],
            SECRET_NAME,
            SECRET_TITLE,
            hidden_incident,
            HIDDEN_INCIDENT_TITLE,
        ],
    )


@dataclass(frozen=True, slots=True)
class Call:
    method: str
    path: str  # the route's template
    url: str
    kwargs: dict[str, Any]


def _calls(method: str, template: str, ids: Ids) -> list[Call]:
    """The route's requests with its path parameters filled from `ids`."""
    variants = REQUESTS.get((method, template), lambda i: [{}])(ids)
    if "{kind}" in template:
        targets = [("evidence", ids["evidence_id"]), ("incidents", ids["incident_id"])]
        paths = [template.replace("{kind}", k).replace("{item_id}", i) for k, i in targets]
    else:
        paths = [re.sub(r"\{(\w+)\}", lambda m: ids[m.group(1)], template)]
    return [Call(method, template, p, v) for p in paths for v in variants]


def _names_hidden(template: str) -> bool:
    """Whether the hidden scenario's ids reach this route (keys and grants are not items)."""
    return "{prefix}" not in template and "{grant_id}" not in template


def _seen(client: httpx.Client, response: httpx.Response) -> str:
    """Everything a response shows: headers, body, and every file of a bundle it leads to."""
    shown = [str(sorted(response.headers.items())), response.content.decode("latin-1")]
    if response.headers.get("content-type") == "application/zip" and response.status_code == 200:
        with zipfile.ZipFile(io.BytesIO(response.content)) as bundle:
            for name in bundle.namelist():
                shown += [name, bundle.read(name).decode("latin-1")]
    request = response.request
    if request.method == "POST" and request.url.path == "/v1/exports" and response.is_success:
        export_id = response.json()["id"]
        _finished(client, export_id)
        shown.append(_seen(client, client.get(f"/v1/exports/{export_id}/content")))
    return "\n".join(shown)


def _send(client: httpx.Client, call: Call) -> httpx.Response:
    return client.request(call.method, call.url, **call.kwargs)


def _ordered_routes() -> list[tuple[str, str]]:
    found = sorted((m, r.path) for r in api_routes() for m in r.methods)
    return [c for c in found if c[1] not in LAST] + [c for c in found if c[1] in LAST]


def test_every_write_route_has_a_request() -> None:
    missing = [(m, p) for m, p in _ordered_routes() if m != "GET" and (m, p) not in REQUESTS]
    assert missing == [], f"routes this test does not know how to call: {missing}"
    stale = set(REQUESTS) - set(_ordered_routes())
    assert not stale, f"requests for routes that no longer exist: {stale}"


def _check_plain(
    client: httpx.Client, world: World, role: Role, method: str, template: str
) -> list[str]:
    failures = []
    for call in _calls(method, template, world.visible):
        response = _send(client, call)
        leaked = [m for m in world.markers if m in _seen(client, response)]
        if leaked and not (role is Role.ADMIN and template in ADMIN_NAMES_WHAT_IT_GRANTS):
            failures.append(f"{role} {call.method} {call.url} ({response.status_code}): {leaked}")
    if not _names_hidden(template):
        return failures
    unknown = {k: str(uuid.uuid4()) for k in ("evidence_id", "incident_id", "export_id")}
    swap = {world.hidden[k]: v for k, v in unknown.items()}
    twins = _calls(method, template, world.hidden | unknown)
    for call, twin in zip(_calls(method, template, world.hidden), twins, strict=True):
        if role is Role.ADMIN and template in ADMIN_NAMES_WHAT_IT_GRANTS:
            continue
        if not any(h in f"{call.url} {call.kwargs}" for h in swap):
            continue  # names nothing hidden: covered by the visible scenario
        response, expected = _send(client, call), _send(client, twin)
        same = response.status_code == expected.status_code
        same = same and _swapped(response.text, swap) == expected.text
        leaked = [m for m in world.markers if m in _swapped(_seen(client, response), swap)]
        if not same or leaked:
            failures.append(
                f"{role} {call.method} {call.url}: {response.status_code} {response.text[:160]}"
                f" — for an unknown id: {expected.status_code} {expected.text[:160]}"
            )
    return failures


def _swapped(text: str, swap: dict[str, str]) -> str:
    for hidden_id, stand_in in swap.items():
        text = text.replace(hidden_id, stand_in)
    return text


def test_nothing_restricted_leaks_through_any_route(locker: Locker) -> None:
    world = build_world(locker)
    failures: list[str] = []
    for method, template in _ordered_routes():
        for role in ROLES:
            with locker.client(world.plain[role]) as client:
                failures += _check_plain(client, world, role, method, template)
            if method != "GET":
                continue  # holders of grants only read: their writes would move the scene
            with locker.client(world.granted[role]) as holder:
                for call in _calls(method, template, world.hidden) + _calls(
                    method, template, world.visible
                ):
                    response = _send(holder, call)
                    if response.status_code >= 500:
                        failures.append(f"granted {role} {call.method} {call.url}: 5xx")
    assert failures == [], "\n".join(failures)
    # The grants were real: each granted member sees what the others cannot.
    with locker.client(world.granted[Role.AUDITOR]) as holder:
        assert holder.get(f"/v1/evidence/{world.hidden['evidence_id']}").status_code == 200
        assert holder.get(f"/v1/incidents/{world.hidden['incident_id']}").status_code == 200
