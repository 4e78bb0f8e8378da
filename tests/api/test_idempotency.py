"""Idempotency-Key on every POST that creates something: a repeat gets the first answer
and creates nothing; another body is 422; two at once create one record."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute
from sqlmodel import col, func, select, update

from service.accounts.idempotency import KEEP, purge_expired
from service.api.idempotency import IdempotentRoute
from service.app import ROUTERS, create_app
from service.db.models import CustodyEntry, IdempotencyRecord
from service.runtime import Runtime
from tests.harness import Locker, serve

PNG = b"\x89PNG\r\n\x1a\n" + b"idempotent" * 400

# Each creating route: (action it logs, how to get (path, body, another body) ready).
Setup = Callable[[httpx.Client], tuple[str, dict[str, Any], dict[str, Any]]]


def _item(client: httpx.Client, content: bytes = PNG) -> str:
    response = client.post("/v1/evidence", files=[("file", ("a.png", content, "image/png"))])
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def _incident(client: httpx.Client) -> str:
    return str(client.post("/v1/incidents", json={"title": "Tarhuna"}).json()["id"])


def _restricted_item_and_member(client: httpx.Client) -> str:
    item = _item(client)
    assert client.post(f"/v1/evidence/{item}/restriction").status_code == 204
    for email in ("a@a.example", "b@a.example"):
        client.post("/v1/members", json={"email": email, "role": "analyst"})
    return item


CASES: dict[str, tuple[str, Setup]] = {
    "incident": (
        "incident.created",
        lambda c: ("/v1/incidents", {"title": "Tarhuna"}, {"title": "Sirte"}),
    ),
    "link": (
        "incident.evidence_linked",
        lambda c: (
            f"/v1/incidents/{_incident(c)}/evidence",
            {"evidence_id": (item := _item(c)), "reason": "shows the site"},
            {"evidence_id": item, "reason": "another reason"},
        ),
    ),
    "export": (
        "export.created",
        lambda c: ("/v1/exports", {"evidence_ids": [_item(c)]}, {"evidence_ids": []}),
    ),
    "note": (
        "note.added",
        lambda c: (f"/v1/evidence/{_item(c)}/notes", {"body": "first"}, {"body": "second"}),
    ),
    "member": (
        "member.added",
        lambda c: (
            "/v1/members",
            {"email": "m@a.example", "role": "analyst"},
            {"email": "n@a.example", "role": "analyst"},
        ),
    ),
    "key": ("key.created", lambda c: ("/v1/keys", {"name": "laptop"}, {"name": "phone"})),
    "grant": (
        "access.granted",
        lambda c: (
            f"/v1/evidence/{_restricted_item_and_member(c)}/grants",
            {"email": "a@a.example"},
            {"email": "b@a.example"},
        ),
    ),
}


def _count(locker: Locker, action: str) -> int:
    with locker.runtime.database.session() as session:
        return session.exec(
            select(func.count()).select_from(CustodyEntry).where(CustodyEntry.action == action)
        ).one()


@pytest.mark.parametrize("case", list(CASES))
def test_a_repeat_gets_the_first_answer_and_creates_nothing(locker: Locker, case: str) -> None:
    action, setup = CASES[case]
    key = str(uuid.uuid4())
    with locker.client() as client:
        path, body, other = setup(client)
        first = client.post(path, json=body, headers={"Idempotency-Key": key})
        created = _count(locker, action)
        again = client.post(path, json=body, headers={"Idempotency-Key": key})
        different = client.post(path, json=other, headers={"Idempotency-Key": key})
        after = _count(locker, action)
    assert first.status_code in (201, 202), first.text
    assert "idempotent-replayed" not in first.headers
    assert (again.status_code, again.content) == (first.status_code, first.content)
    assert again.headers["idempotent-replayed"] == "true"
    assert again.headers["content-type"] == first.headers["content-type"]
    assert different.status_code == 422, different.text
    assert "another request" in different.json()["detail"]
    assert after == created


def test_an_upload_repeated_with_a_fresh_boundary_gets_the_first_answer(locker: Locker) -> None:
    key = str(uuid.uuid4())
    metadata = json.dumps({"title": "Site"})
    with locker.client() as client:

        def upload(content: bytes) -> httpx.Response:
            # httpx picks a new random multipart boundary for every request.
            return client.post(
                "/v1/evidence",
                files=[("file", ("site.png", content, "image/png"))],
                data={"metadata": metadata},
                headers={"Idempotency-Key": key},
            )

        first = upload(PNG)
        again = upload(PNG)
        other = upload(PNG + b"more")
        listed = client.get("/v1/evidence").json()["items"]
    assert first.status_code == 201, first.text
    assert again.status_code == 201 and again.content == first.content
    assert again.headers["idempotent-replayed"] == "true"
    assert other.status_code == 422
    assert [i["id"] for i in listed] == [first.json()["id"]]
    assert _count(locker, "evidence.ingested") == 1
    assert _count(locker, "evidence.resubmitted") == 0


def test_a_failed_request_leaves_the_key_free(locker: Locker) -> None:
    key = str(uuid.uuid4())
    with locker.client() as client:
        refused = client.post("/v1/incidents", json={"title": ""}, headers={"Idempotency-Key": key})
        created = client.post(
            "/v1/incidents", json={"title": "Tarhuna"}, headers={"Idempotency-Key": key}
        )
    assert refused.status_code == 422
    assert created.status_code == 201 and "idempotent-replayed" not in created.headers


@pytest.mark.parametrize("key", ["", "x" * 256, "tab\there", "é"])
def test_a_malformed_key_is_400(locker: Locker, key: str) -> None:
    with locker.client() as client:
        response = client.post(
            "/v1/incidents",
            json={"title": "Tarhuna"},
            headers=[("Idempotency-Key", key.encode("latin-1"))],
        )
    assert response.status_code == 400, response.text
    assert response.json()["detail"] == ("Idempotency-Key must be 1–255 printable ASCII characters")
    assert _count(locker, "incident.created") == 0


def test_keys_of_different_callers_do_not_meet(locker: Locker) -> None:
    other_key = locker.new_organisation("elsewhere")
    with locker.client() as ours, locker.client(other_key) as theirs:
        first = ours.post("/v1/incidents", json={"title": "A"}, headers={"Idempotency-Key": "k"})
        second = theirs.post("/v1/incidents", json={"title": "A"}, headers={"Idempotency-Key": "k"})
    assert first.status_code == second.status_code == 201
    assert first.json()["id"] != second.json()["id"]
    assert "idempotent-replayed" not in second.headers


def test_simultaneous_requests_with_one_key_create_one_record(locker: Locker) -> None:
    key = str(uuid.uuid4())
    answers: list[httpx.Response] = []
    start = threading.Barrier(6)

    def send() -> None:
        with locker.client() as client:
            start.wait()
            answers.append(
                client.post(
                    "/v1/incidents", json={"title": "Tarhuna"}, headers={"Idempotency-Key": key}
                )
            )

    threads = [threading.Thread(target=send) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    created = [a for a in answers if a.status_code == 201]
    assert len(answers) == 6
    assert {a.status_code for a in answers} <= {201, 409}
    assert len({a.content for a in created}) == 1
    for busy in (a for a in answers if a.status_code == 409):
        assert "in progress" in busy.json()["detail"]
    assert _count(locker, "incident.created") == 1


def test_simultaneous_uploads_with_one_key_store_one_item(locker: Locker) -> None:
    key = str(uuid.uuid4())
    answers: list[httpx.Response] = []
    start = threading.Barrier(4)

    def send() -> None:
        with locker.client() as client:
            start.wait()
            answers.append(
                client.post(
                    "/v1/evidence",
                    files=[("file", ("a.png", PNG, "image/png"))],
                    headers={"Idempotency-Key": key},
                )
            )

    threads = [threading.Thread(target=send) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert {a.status_code for a in answers} <= {201, 409}
    assert len({a.json()["id"] for a in answers if a.status_code == 201}) == 1
    assert _count(locker, "evidence.ingested") == 1
    assert _count(locker, "evidence.resubmitted") == 0


def test_a_new_api_key_is_not_kept_readable(locker: Locker) -> None:
    with locker.client() as client:
        issued = client.post("/v1/keys", json={"name": "x"}, headers={"Idempotency-Key": "k-1"})
    secret = issued.json()["key"].encode()
    with locker.runtime.database.session() as session:
        [record] = session.exec(select(IdempotencyRecord)).all()
    assert record.answer is not None and record.status == 201
    assert secret not in record.answer and b"k-1" not in record.answer
    assert "k-1" not in record.id


def test_answers_are_kept_24_hours_then_purged(locker: Locker) -> None:
    with locker.client() as client:
        first = client.post("/v1/incidents", json={"title": "A"}, headers={"Idempotency-Key": "k"})
        assert purge_expired(locker.runtime) == 0
        with locker.runtime.database.session() as session:
            session.execute(
                update(IdempotencyRecord).values(
                    created_at=datetime.now(UTC) - KEEP + timedelta(minutes=5)
                )
            )
        kept = client.post("/v1/incidents", json={"title": "A"}, headers={"Idempotency-Key": "k"})
        with locker.runtime.database.session() as session:
            session.execute(
                update(IdempotencyRecord).values(
                    created_at=datetime.now(UTC) - KEEP - timedelta(minutes=5)
                )
            )
        expired = client.post(
            "/v1/incidents", json={"title": "A"}, headers={"Idempotency-Key": "k"}
        )
        with locker.runtime.database.session() as session:
            session.execute(
                update(IdempotencyRecord).values(created_at=datetime.now(UTC) - 2 * KEEP)
            )
        purged = purge_expired(locker.runtime)
    assert kept.content == first.content and kept.headers["idempotent-replayed"] == "true"
    # Past 24 hours the key is new again: a second incident.
    assert expired.status_code == 201 and expired.json()["id"] != first.json()["id"]
    assert purged == 1
    with locker.runtime.database.session() as session:
        assert session.exec(select(col(IdempotencyRecord.id))).all() == []


def test_every_creating_post_takes_an_idempotency_key() -> None:
    """The route table: a POST that answers 201 or 202 declares the header (OpenAPI too)."""
    schema = create_app().openapi()
    creating = [
        route
        for router in ROUTERS
        for route in router.routes
        if isinstance(route, APIRoute)
        and "POST" in route.methods
        and route.status_code in (201, 202)
    ]
    assert len(creating) == 9  # the tus creation too
    for route in creating:
        assert isinstance(route, IdempotentRoute), route.path
        parameters = schema["paths"][route.path]["post"].get("parameters", [])
        assert {"name": "Idempotency-Key", "in": "header"} in [
            {"name": p["name"], "in": p["in"]} for p in parameters
        ], route.path


def test_the_workers_housekeeping_deletes_expired_records(
    make_runtime: Callable[..., Runtime],
) -> None:
    runtime = make_runtime()
    with runtime.database.session() as session:
        session.add(
            IdempotencyRecord(
                id="0" * 64, owner_id="someone", status=201, created_at=datetime.now(UTC) - 2 * KEEP
            )
        )
        session.add(
            IdempotencyRecord(id="1" * 64, owner_id="someone", created_at=datetime.now(UTC))
        )
    with serve(runtime):
        for _ in range(600):
            with runtime.database.session() as session:
                left = session.exec(select(col(IdempotencyRecord.id))).all()
            if len(left) == 1:
                break
            time.sleep(0.05)
    assert left == ["1" * 64]
