"""Incidents and links through the HTTP API."""

from __future__ import annotations

import json

from tests.harness import Locker

PNG = b"\x89PNG\r\n\x1a\n" + b"incident" * 300
TARHUNA = {
    "title": "مقابر جماعية في ترهونة",
    "description": "Mass graves found after June 2020",
    "occurred_from": "2019-04-01T00:00:00Z",
    "occurred_to": "2020-06-05T00:00:00Z",
    "location": {"name": "ترهونة", "lat": 32.435, "lon": 13.634},
}


def test_create_read_list_and_link(locker: Locker) -> None:
    with locker.client() as client:
        created = client.post("/v1/incidents", json=TARHUNA)
        assert created.status_code == 201, created.text
        incident = created.json()
        evidence = client.post("/v1/evidence", files=[("file", ("a.png", PNG, "image/png"))]).json()
        link = client.post(
            f"/v1/incidents/{incident['id']}/evidence",
            json={"evidence_id": evidence["id"], "reason": "shows the site"},
        )
        again = client.post(
            f"/v1/incidents/{incident['id']}/evidence",
            json={"evidence_id": evidence["id"], "reason": "twice"},
        )
        read = client.get(f"/v1/incidents/{incident['id']}").json()
        listed = client.get("/v1/incidents").json()
    assert incident["title"] == TARHUNA["title"]
    assert incident["location"] == TARHUNA["location"]
    assert link.status_code == 201
    assert again.status_code == 422
    assert [e["evidence_id"] for e in read["evidence"]] == [evidence["id"]]
    assert read["evidence"][0]["reason"] == "shows the site"
    assert read["evidence"][0]["sha256"] == evidence["sha256"]
    assert [i["id"] for i in listed] == [incident["id"]]


def test_upload_with_incident_id_links_it(locker: Locker) -> None:
    with locker.client() as client:
        incident = client.post("/v1/incidents", json={"title": "Tarhuna"}).json()
        evidence = client.post(
            "/v1/evidence",
            files=[("file", ("a.png", PNG, "image/png"))],
            data={"metadata": json.dumps({"incident_id": incident["id"]})},
        ).json()
        read = client.get(f"/v1/incidents/{incident['id']}").json()
    assert [e["evidence_id"] for e in read["evidence"]] == [evidence["id"]]


def test_list_pages_with_a_cursor(locker: Locker) -> None:
    with locker.client() as client:
        ids = [client.post("/v1/incidents", json={"title": f"n{n}"}).json()["id"] for n in range(5)]
        first = client.get("/v1/incidents", params={"limit": 2}).json()
        rest = client.get("/v1/incidents", params={"after": first[-1]["id"], "limit": 10}).json()
    assert [i["id"] for i in first + rest] == ids


def test_other_organisations_incidents_are_404(locker: Locker) -> None:
    other = locker.new_organisation("Other NGO")
    with locker.client() as mine, locker.client(other) as theirs:
        incident = mine.post("/v1/incidents", json={"title": "private"}).json()
        evidence = theirs.post("/v1/evidence", files=[("file", ("a.png", PNG, "image/png"))]).json()
        assert theirs.get(f"/v1/incidents/{incident['id']}").status_code == 404
        assert theirs.get("/v1/incidents").json() == []
        cross = mine.post(
            f"/v1/incidents/{incident['id']}/evidence",
            json={"evidence_id": evidence["id"], "reason": "not mine"},
        )
    assert cross.status_code == 404


def test_bad_incidents_are_422_naming_the_field(locker: Locker) -> None:
    cases = [
        ({"title": ""}, "title"),
        ({"title": "x", "location": {"lat": 91, "lon": 0}}, "location.lat"),
        (
            {
                "title": "x",
                "occurred_from": "2020-02-01T00:00:00Z",
                "occurred_to": "2020-01-01T00:00:00Z",
            },
            "occurred_to",
        ),
        ({"title": "x", "occurred_from": "not a date"}, "occurred_from"),
    ]
    with locker.client() as client:
        for body, field in cases:
            response = client.post("/v1/incidents", json=body)
            assert response.status_code == 422, (body, response.text)
            assert response.json()["detail"].startswith(field), response.json()
        malformed = client.post(
            "/v1/incidents", content=b"{not json", headers={"content-type": "application/json"}
        )
    assert malformed.status_code == 422
