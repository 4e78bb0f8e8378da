"""Identical writes sent at once get the answers they would get one after another.

On PostgreSQL the requests really overlap: each reads "not there yet", and all but one
then meet a unique constraint. The losers must get the domain answer (409, 422, or the
same success an idempotent request gets), never a 500, and the record must hold one.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from sqlmodel import col, select

from service.db.models import AccessGrant, Restriction
from tests.harness import Locker

PNG = b"\x89PNG\r\n\x1a\n" + b"race" * 300
RACERS = 8

Send = Callable[[httpx.Client], httpx.Response]


def _race(locker: Locker, send: Send, *, api_key: str | None = None) -> list[httpx.Response]:
    """`send` from RACERS clients at once (each connected first, then released together)."""
    start = threading.Barrier(RACERS)

    def one(_: int) -> httpx.Response:
        with locker.client(api_key) as client:
            assert client.get("/v1/vocabulary").status_code == 200  # connect before the start
            start.wait(timeout=10)
            return send(client)

    with ThreadPoolExecutor(RACERS) as pool:
        return list(pool.map(one, range(RACERS)))


def _statuses(responses: list[httpx.Response]) -> Counter[int]:
    return Counter(r.status_code for r in responses)


def _details(responses: list[httpx.Response], status: int) -> set[str]:
    return {r.json()["detail"] for r in responses if r.status_code == status}


def _entries(client: httpx.Client, action: str) -> list[dict[str, Any]]:
    entries = client.get("/v1/custody/entries", params={"limit": 1000}).json()
    return [e["fields"] for e in entries if e["fields"]["action"] == action]


def _incident(client: httpx.Client) -> str:
    created = client.post("/v1/incidents", json={"title": "race"})
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


def _evidence(client: httpx.Client) -> str:
    created = client.post("/v1/evidence", files=[("file", ("race.png", PNG, "image/png"))])
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


def _member_key(admin: httpx.Client, email: str) -> str:
    assert admin.post("/v1/members", json={"email": email, "role": "analyst"}).status_code == 201
    created = admin.post("/v1/keys", json={"email": email, "name": "race"})
    assert created.status_code == 201, created.text
    return str(created.json()["key"])


def test_one_member_is_added_and_the_others_are_told_it_exists(locker: Locker) -> None:
    body = {"email": "race@example.org", "role": "analyst"}
    answers = _race(locker, lambda c: c.post("/v1/members", json=body))
    with locker.client() as admin:
        members = [m for m in admin.get("/v1/members").json() if m["email"] == body["email"]]
        added = _entries(admin, "member.added")
    assert _statuses(answers) == {201: 1, 422: RACERS - 1}
    assert _details(answers, 422) == {"email: race@example.org is already a member"}
    assert len(members) == 1
    assert len(added) == 2  # the bootstrap admin and the one new member


def test_evidence_is_linked_once(locker: Locker) -> None:
    with locker.client() as admin:
        incident, evidence = _incident(admin), _evidence(admin)
    body = {"evidence_id": evidence, "reason": "r"}
    answers = _race(locker, lambda c: c.post(f"/v1/incidents/{incident}/evidence", json=body))
    with locker.client() as admin:
        links = admin.get(f"/v1/incidents/{incident}").json()["evidence"]
        logged = _entries(admin, "incident.evidence_linked")
    assert _statuses(answers) == {201: 1, 422: RACERS - 1}
    assert _details(answers, 422) == {
        f"evidence {evidence} is already linked to incident {incident}"
    }
    assert len(links) == 1 and len(logged) == 1


def test_a_link_is_ended_once(locker: Locker) -> None:
    with locker.client() as admin:
        incident, evidence = _incident(admin), _evidence(admin)
        linked = admin.post(
            f"/v1/incidents/{incident}/evidence", json={"evidence_id": evidence, "reason": "r"}
        )
        assert linked.status_code == 201, linked.text
    path = f"/v1/incidents/{incident}/evidence/{evidence}/unlink"
    answers = _race(locker, lambda c: c.post(path, json={"reason": "mistaken"}))
    with locker.client() as admin:
        logged = _entries(admin, "incident.evidence_unlinked")
    assert _statuses(answers) == {200: 1, 422: RACERS - 1}
    assert _details(answers, 422) == {
        f"the link of evidence {evidence} to incident {incident} already ended"
    }
    assert len(logged) == 1


_STALE = "is at version 2, not 1; read it again and reapply the change"


@pytest.mark.parametrize(
    ("kind", "change", "stale"),
    [
        ("incidents", {"status": "closed"}, "incident {id} " + _STALE),
        ("evidence", {"title": "t"}, "evidence {id} metadata " + _STALE),
    ],
)
def test_an_edit_on_the_same_version_wins_once(
    locker: Locker, kind: str, change: dict[str, object], stale: str
) -> None:
    with locker.client() as admin:
        item = _incident(admin) if kind == "incidents" else _evidence(admin)
    edit = f"/v1/{kind}/{item}" + ("/metadata" if kind == "evidence" else "")
    body = change | {"base_version": 1}
    answers = _race(locker, lambda c: c.patch(edit, json=body))
    with locker.client() as admin:
        history = admin.get(f"/v1/{kind}/{item}/history").json()
    assert _statuses(answers) == {200: 1, 409: RACERS - 1}
    assert _details(answers, 409) == {stale.format(id=item)}
    assert [v["version"] for v in history] == [1, 2]


def test_restricting_at_once_restricts_once(locker: Locker) -> None:
    with locker.client() as admin:
        evidence = _evidence(admin)
    answers = _race(locker, lambda c: c.post(f"/v1/evidence/{evidence}/restriction"))
    subject = f"evidence:{evidence}"
    with locker.client() as admin:
        restricted = _entries(admin, "access.restricted")
    with locker.runtime.database.session() as session:
        restrictions = session.exec(select(Restriction).where(Restriction.subject == subject))
        grants = session.exec(select(AccessGrant).where(AccessGrant.subject == subject))
        restriction_rows, grant_rows = list(restrictions), list(grants)
    # Restricting is idempotent: a repeated request is answered like the first.
    assert _statuses(answers) == {204: RACERS}
    assert len(restriction_rows) == 1 and len(restricted) == 1
    assert len(grant_rows) == 1  # the restricter's own access


def test_a_member_is_granted_access_once_and_one_revocation_ends_it(locker: Locker) -> None:
    with locker.client() as admin:
        analyst = _member_key(admin, "granted@example.org")
        evidence = _evidence(admin)
        assert admin.post(f"/v1/evidence/{evidence}/restriction").status_code == 204
    body = {"email": "granted@example.org"}
    answers = _race(locker, lambda c: c.post(f"/v1/evidence/{evidence}/grants", json=body))
    assert _statuses(answers) == {201: 1, 422: RACERS - 1}
    assert _details(answers, 422) == {"granted@example.org already has access"}
    [granted] = [a.json() for a in answers if a.status_code == 201]
    with locker.runtime.database.session() as session:
        active = session.exec(
            select(AccessGrant.id)
            .where(AccessGrant.subject == f"evidence:{evidence}")
            .where(AccessGrant.user_id == granted["user_id"])
            .where(col(AccessGrant.revoked_at).is_(None))
        ).all()
    assert active == [granted["id"]]
    with locker.client() as admin, locker.client(analyst) as reader:
        assert reader.get(f"/v1/evidence/{evidence}").status_code == 200
        assert admin.delete(f"/v1/grants/{granted['id']}").status_code == 200
        assert reader.get(f"/v1/evidence/{evidence}").status_code == 404


def test_the_same_bytes_uploaded_at_once_are_one_item_submitted_many_times(
    locker: Locker,
) -> None:
    file = ("same.png", PNG + b"at once", "image/png")
    answers = _race(locker, lambda c: c.post("/v1/evidence", files=[("file", file)]))
    with locker.client() as admin:
        ingested = _entries(admin, "evidence.ingested")
        resubmitted = _entries(admin, "evidence.resubmitted")
    assert _statuses(answers) == {201: RACERS}
    assert Counter(a.json()["duplicate"] for a in answers) == {False: 1, True: RACERS - 1}
    assert len({a.json()["id"] for a in answers}) == 1
    assert (len(ingested), len(resubmitted)) == (1, RACERS - 1)


def test_a_grant_revoked_at_once_is_revoked_once(locker: Locker) -> None:
    with locker.client() as admin:
        _member_key(admin, "revoked@example.org")
        evidence = _evidence(admin)
        assert admin.post(f"/v1/evidence/{evidence}/restriction").status_code == 204
        grant = admin.post(f"/v1/evidence/{evidence}/grants", json={"email": "revoked@example.org"})
        assert grant.status_code == 201, grant.text
    answers = _race(locker, lambda c: c.delete(f"/v1/grants/{grant.json()['id']}"))
    with locker.client() as admin:
        revoked = _entries(admin, "access.revoked")
    assert _statuses(answers) == {200: RACERS}
    assert len({a.json()["revoked_at"] for a in answers}) == 1
    assert len(revoked) == 1


def test_a_key_revoked_at_once_is_revoked_once(locker: Locker) -> None:
    with locker.client() as admin:
        prefix = admin.post("/v1/keys", json={"name": "spare"}).json()["prefix"]
    answers = _race(locker, lambda c: c.delete(f"/v1/keys/{prefix}"))
    with locker.client() as admin:
        revoked = _entries(admin, "key.revoked")
    assert _statuses(answers) == {200: RACERS}
    assert len(revoked) == 1
