"""Incidents as investigators record them (HURIDOCS events), versions and links, via HTTP."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import httpx
import pytest
import rfc8785

from tests.harness import Locker

PNG = b"\x89PNG\r\n\x1a\n" + b"incident" * 300
TARHUNA: dict[str, Any] = {
    "title": {"ar": "مقابر جماعية في ترهونة", "en": "Mass graves in Tarhuna"},
    "summary": {
        "ar": "عُثر على مقابر جماعية بعد انسحاب القوات في يونيو ٢٠٢٠.",
        "en": "Mass graves were found after the withdrawal of forces in June 2020.",
    },
    "original_language": "ar",
    "start": {"value": "2019-04", "precision": "month", "approximate": True},
    "end": {"value": "2020-06-05", "precision": "day"},
    "locations": [
        {"name": "ترهونة", "admin_area": "Murqub", "country": "LY", "lat": 32.435, "lon": 13.634},
        {"name": "Tarhuna landfill site", "country": "ly", "lat": 32.42, "lon": 13.61},
    ],
    "categories": ["mass_grave", "enforced_disappearance", "killing"],
    "actors": [
        {"role": "victim", "kind": "group", "count": 27, "affiliation": "residents of Tarhuna"},
        {
            "role": "victim",
            "kind": "individual",
            "name": "Witness-protected person",
            "identity_restricted": True,
        },
        {"role": "perpetrator", "kind": "group", "affiliation": "al-Kaniyat militia"},
    ],
    "status": "under_review",
    "tags": ["Tarhuna", "exhumation"],
}


def _created(client: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/v1/incidents", json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


def _upload(client: httpx.Client, content: bytes, **metadata: object) -> dict[str, Any]:
    response = client.post(
        "/v1/evidence",
        files=[("file", ("a.png", content, "image/png"))],
        data={"metadata": json.dumps(metadata)},
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


def _digest(document: dict[str, Any]) -> str:
    return hashlib.sha256(rfc8785.dumps(document)).hexdigest()


def _entries(client: httpx.Client) -> list[dict[str, Any]]:
    return [e["fields"] for e in client.get("/v1/custody/entries", params={"limit": 1000}).json()]


def test_a_full_record_round_trips(locker: Locker) -> None:
    with locker.client() as client:
        incident = _created(client, TARHUNA)
        read = client.get(f"/v1/incidents/{incident['id']}").json()
    document = read["document"]
    assert read["title"] == "مقابر جماعية في ترهونة"
    assert read["version"] == 1 and read["status"] == "under_review"
    assert document["title"] == TARHUNA["title"]
    assert document["summary"]["ar"] == TARHUNA["summary"]["ar"]
    assert document["start"] == {"value": "2019-04", "precision": "month", "approximate": True}
    assert [p["country"] for p in document["locations"]] == ["LY", "LY"]
    assert document["categories"] == TARHUNA["categories"]
    assert document["actors"][0]["count"] == 27
    # The widest interval the dates allow: from the first of April 2019 to the end of the day.
    assert read["occurred_from"].startswith("2019-04-01T00:00:00")
    assert read["occurred_to"].startswith("2020-06-05T23:59:59")


def test_plain_string_title_is_in_the_given_language(locker: Locker) -> None:
    with locker.client() as client:
        incident = _created(client, {"title": "Tarhuna", "language": "en"})
        untagged = _created(client, {"title": "بلا لغة"})
    assert incident["document"]["title"] == {"en": "Tarhuna"}
    assert incident["document"]["original_language"] == "en"
    assert untagged["document"]["title"] == {"und": "بلا لغة"}


MASS_GRAVE = {"title": {"ar": "مقبرة جماعية", "en": "Mass grave"}, "original_language": "ar"}


def test_a_plain_string_edit_sets_one_language_and_keeps_the_others(locker: Locker) -> None:
    with locker.client() as client:
        incident = _created(client, MASS_GRAVE | {"summary": {"en": "Found in 2020"}})
        path = f"/v1/incidents/{incident['id']}"
        french = client.patch(path, json={"language": "fr", "title": "Fosse commune"})
        summary = client.patch(path, json={"language": "fr", "summary": "Trouvée en 2020"})
        original = client.patch(path, json={"title": "مقابر جماعية"})
        replaced = client.patch(path, json={"title": {"ar": "مقبرة", "en": "Grave"}})
    assert french.status_code == 200, french.text
    assert french.json()["document"]["title"] == MASS_GRAVE["title"] | {"fr": "Fosse commune"}
    assert french.json()["document"]["original_language"] == "ar"
    assert summary.json()["document"]["summary"] == {"en": "Found in 2020", "fr": "Trouvée en 2020"}
    # Without `language`, a plain string is the text in the original language.
    assert original.status_code == 200, original.text
    assert original.json()["title"] == "مقابر جماعية"
    assert original.json()["document"]["title"] == {
        "ar": "مقابر جماعية",
        "en": "Mass grave",
        "fr": "Fosse commune",
    }
    # A dict is the whole set of titles.
    assert replaced.json()["document"]["title"] == {"ar": "مقبرة", "en": "Grave"}


def test_a_plain_string_at_creation_is_in_language_even_beside_original_language(
    locker: Locker,
) -> None:
    with locker.client() as client:
        incident = _created(
            client,
            {
                "title": "Mass grave",
                "summary": "Found in 2020",
                "language": "EN",
                "original_language": "en",
            },
        )
        mixed = client.post(
            "/v1/incidents",
            json={
                "title": {"ar": "مقبرة"},
                "summary": "s",
                "language": "en",
                "original_language": "ar",
            },
        )
    assert incident["document"]["title"] == {"en": "Mass grave"}
    assert incident["document"]["summary"] == {"en": "Found in 2020"}
    assert mixed.status_code == 201, mixed.text
    assert mixed.json()["document"]["summary"] == {"en": "s"}


def test_language_tags_are_kept_in_their_canonical_case(locker: Locker) -> None:
    with locker.client() as client:
        incident = _created(
            client, {"title": {"AR-ly": "مقبرة", "En": "Grave"}, "original_language": "ar-LY"}
        )
        edited = client.patch(
            f"/v1/incidents/{incident['id']}", json={"language": "EN", "title": "Mass grave"}
        )
    assert incident["document"]["title"] == {"ar-LY": "مقبرة", "en": "Grave"}
    assert incident["document"]["original_language"] == "ar-LY"
    assert edited.status_code == 200, edited.text
    assert edited.json()["document"]["title"] == {"ar-LY": "مقبرة", "en": "Mass grave"}


def test_editing_twice_keeps_three_versions_whose_digests_are_in_the_log(locker: Locker) -> None:
    with locker.client() as client:
        incident = _created(client, TARHUNA)
        path = f"/v1/incidents/{incident['id']}"
        second = client.patch(path, json={"status": "corroborated", "reason": "second source"})
        third = client.patch(
            path, json={"tags": ["Tarhuna", "exhumation", "ICC"], "base_version": 2}
        )
        stale = client.patch(path, json={"status": "closed", "base_version": 2})
        same = client.patch(path, json={"status": "corroborated"})
        history = client.get(f"{path}/history").json()
        entries = _entries(client)
    assert second.status_code == 200, second.text
    assert third.status_code == 200 and third.json()["version"] == 3
    assert stale.status_code == 409 and "version 3" in stale.json()["detail"]
    assert same.status_code == 422
    assert same.json()["detail"] == "the change leaves the incident as it is"
    assert [v["version"] for v in history] == [1, 2, 3]
    assert history[0]["document"]["status"] == "under_review"
    assert history[1]["document"]["status"] == "corroborated"
    assert history[1]["reason"] == "second source"
    assert history[2]["document"]["tags"] == ["Tarhuna", "exhumation", "ICC"]
    logged = {
        e["document_sha256"]: e
        for e in entries
        if e["subject"] == f"incident:{incident['id']}" and "document_sha256" in e
    }
    for version in history:
        # Recomputed here from the document alone (RFC 8785), not taken from the server.
        assert _digest(version["document"]) == version["document_sha256"]
        entry = logged[version["document_sha256"]]
        assert entry["index"] == version["custody_index"]
        assert entry["version"] == version["version"]
    assert [logged[v["document_sha256"]]["action"] for v in history] == [
        "incident.created",
        "incident.updated",
        "incident.updated",
    ]


def test_unlinking_ends_the_link_and_keeps_it(locker: Locker) -> None:
    with locker.client() as client:
        incident = _created(client, {"title": "Tarhuna"})
        evidence = _upload(client, PNG, incident_id=incident["id"])
        path = f"/v1/incidents/{incident['id']}/evidence/{evidence['id']}/unlink"
        unlinked = client.post(path, json={"reason": "wrong site: this is Bani Walid"})
        twice = client.post(path, json={"reason": "again"})
        relink = client.post(
            f"/v1/incidents/{incident['id']}/evidence",
            json={"evidence_id": evidence["id"], "reason": "back"},
        )
        read = client.get(f"/v1/incidents/{incident['id']}").json()
        linked_now = client.get("/v1/evidence", params={"incident": incident["id"]}).json()
        entries = _entries(client)
    assert unlinked.status_code == 200, unlinked.text
    assert unlinked.json()["ended"]["reason"] == "wrong site: this is Bani Walid"
    assert twice.status_code == 422 and "already ended" in twice.json()["detail"]
    assert relink.status_code == 422 and "unlinked" in relink.json()["detail"]
    [link] = read["evidence"]
    assert link["reason"] == "linked at upload" and link["ended"] is not None
    assert linked_now["items"] == []
    actions = [e["action"] for e in entries if e["subject"] == f"incident:{incident['id']}"]
    assert actions[-1] == "incident.evidence_unlinked"


def test_restricted_identities_are_withheld_from_readers(locker: Locker) -> None:
    with locker.client() as admin:
        admin.post("/v1/members", json={"email": "an@a.example", "role": "analyst"})
        key = admin.post("/v1/keys", json={"email": "an@a.example", "name": "a"}).json()["key"]
        incident = _created(admin, TARHUNA)
        own = admin.get(f"/v1/incidents/{incident['id']}").json()
    with locker.client(key) as analyst:
        seen = analyst.get(f"/v1/incidents/{incident['id']}").json()
        history = analyst.get(f"/v1/incidents/{incident['id']}/history").json()
        found = analyst.get("/v1/search", params={"q": "Witness-protected"}).json()
    assert own["document"]["actors"][1]["name"] == "Witness-protected person"
    assert seen["document"]["actors"][1]["name"] == "[withheld]"
    assert history[0]["document"]["actors"][1]["name"] == "[withheld]"
    assert seen["document"]["actors"][0]["affiliation"] == "residents of Tarhuna"
    assert found["items"] == []  # restricted names are not indexed either


def test_related_incidents_must_exist_and_be_visible(locker: Locker) -> None:
    other = locker.new_organisation("Other NGO")
    with locker.client(other) as theirs:
        foreign = _created(theirs, {"title": "theirs"})
    with locker.client() as client:
        first = _created(client, {"title": "first"})
        related = client.post(
            "/v1/incidents", json={"title": "second", "related_incidents": [first["id"]]}
        )
        cross = client.post(
            "/v1/incidents", json={"title": "third", "related_incidents": [foreign["id"]]}
        )
        own = client.patch(
            f"/v1/incidents/{first['id']}", json={"related_incidents": [first["id"]]}
        )
    assert related.status_code == 201
    assert related.json()["document"]["related_incidents"] == [first["id"]]
    assert cross.status_code == 422 and cross.json()["detail"].startswith("related_incidents")
    assert own.status_code == 422
    assert own.json()["detail"] == "related_incidents: an incident cannot relate to itself"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"title": ""}, "title"),
        ({"title": "x" * 501}, "title"),
        ({"title": {"not a tag!": "x"}}, "title"),
        ({"title": "x", "language": "english language"}, "title"),
        ({"title": "x", "locations": [{"lat": 91, "lon": 0}]}, "locations.0.lat"),
        ({"title": "x", "locations": [{"lat": 10}]}, "locations.0"),
        ({"title": "x", "locations": [{"country": "XX"}]}, "locations.0.country"),
        ({"title": "x", "start": {"value": "2020-13-01"}}, "start"),
        ({"title": "x", "start": {"value": "2020-06", "precision": "day"}}, "start"),
        ({"title": "x", "start": {"value": "0999", "precision": "year"}}, "start"),
        ({"title": "x", "start": {"value": "2020", "precision": "century"}}, "start.precision"),
        (
            {"title": "x", "start": {"value": "2020-06-05"}, "end": {"value": "2020-06-04"}},
            "end",
        ),
        ({"title": "x", "categories": ["jaywalking"]}, "categories"),
        ({"title": "x", "status": "solved"}, "status"),
        ({"title": "x", "actors": [{"role": "bystander"}]}, "actors.0.role"),
        ({"title": "x", "actors": [{"role": "victim", "count": 0}]}, "actors.0.count"),
        ({"title": "x", "summary": {"en": "s" * 20_001}}, "summary.en"),
        ({"title": "x", "related_incidents": ["nope"]}, "related_incidents"),
        ({"title": "x", "colour": "red"}, "colour"),
        # The edges of the calendar, where converting to UTC would overflow.
        (
            {"title": "x", "start": {"value": "9999-12-31T23:59:59-14:00", "precision": "exact"}},
            "start",
        ),
        (
            {"title": "x", "end": {"value": "0001-01-01T00:00:00+14:00", "precision": "exact"}},
            "end",
        ),
        ({"title": "x", "start": {"value": "9999-12", "precision": "month"}}, "start"),
        # JSON types are not coerced: "yes" and 1 are not true, true is not 1.
        ({"title": "x", "restricted": "yes"}, "restricted"),
        ({"title": "x", "restricted": 1}, "restricted"),
        (
            {"title": "x", "start": {"value": "2020", "precision": "year", "approximate": "true"}},
            "start.approximate",
        ),
        ({"title": "x", "actors": [{"role": "victim", "count": "27"}]}, "actors.0.count"),
        ({"title": "x", "actors": [{"role": "victim", "count": 2.0}]}, "actors.0.count"),
        (
            {"title": "x", "actors": [{"role": "victim", "identity_restricted": 1}]},
            "actors.0.identity_restricted",
        ),
        ({"title": "x", "locations": [{"lat": "32.4", "lon": 13.6}]}, "locations.0.lat"),
        ({"title": "x", "locations": [{"precision_m": True}]}, "locations.0.precision_m"),
        # Language tags are case-insensitive (RFC 5646): "ar" and "AR" are one language.
        ({"title": {"ar": "x", "AR": "y"}}, "title"),
        ({"title": "x", "summary": {"en": "a", "EN": "b"}}, "summary"),
    ],
)
def test_bad_incidents_are_422_naming_the_field(
    locker: Locker, body: dict[str, Any], field: str
) -> None:
    with locker.client() as client:
        response = client.post("/v1/incidents", json=body)
    assert response.status_code == 422, (body, response.text)
    detail = response.json()["detail"]
    assert detail.startswith(field), detail
    assert "\n" not in detail


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"language": "not a language", "title": "x"}, "language"),
        ({"title": {"ar": "x", "AR": "y"}}, "title"),
        ({"start": {"value": "0001-01-01T00:00:00+14:00", "precision": "exact"}}, "start"),
        ({"actors": [{"role": "victim", "identity_restricted": "no"}]}, "actors.0"),
    ],
)
def test_bad_edits_are_422_naming_the_field(
    locker: Locker, change: dict[str, Any], field: str
) -> None:
    with locker.client() as client:
        incident = _created(client, MASS_GRAVE)
        response = client.patch(f"/v1/incidents/{incident['id']}", json=change)
        history = client.get(f"/v1/incidents/{incident['id']}/history").json()
    assert response.status_code == 422, (change, response.text)
    assert response.json()["detail"].startswith(field), response.json()
    assert len(history) == 1


def test_malformed_json_is_422(locker: Locker) -> None:
    with locker.client() as client:
        malformed = client.post(
            "/v1/incidents", content=b"{not json", headers={"content-type": "application/json"}
        )
    assert malformed.status_code == 422
    detail = malformed.json()["detail"]
    assert detail.startswith("body is not valid JSON: ") and "\n" not in detail


def test_vocabulary_is_listed(locker: Locker) -> None:
    with locker.client() as client:
        vocabulary = client.get("/v1/vocabulary").json()
    assert "mass_grave" in vocabulary["categories"]
    assert vocabulary["statuses"] == ["open", "under_review", "corroborated", "closed"]


def test_other_organisations_incidents_are_404(locker: Locker) -> None:
    other = locker.new_organisation("Other NGO")
    with locker.client() as mine, locker.client(other) as theirs:
        incident = _created(mine, {"title": "private"})
        evidence = _upload(theirs, PNG)
        assert theirs.get(f"/v1/incidents/{incident['id']}").status_code == 404
        assert theirs.get(f"/v1/incidents/{incident['id']}/history").status_code == 404
        assert theirs.patch(f"/v1/incidents/{incident['id']}", json={}).status_code == 404
        assert theirs.get("/v1/incidents").json()["items"] == []
        cross = mine.post(
            f"/v1/incidents/{incident['id']}/evidence",
            json={"evidence_id": evidence["id"], "reason": "not mine"},
        )
    assert cross.status_code == 404


def test_list_pages_with_a_cursor_in_either_order(locker: Locker) -> None:
    with locker.client() as client:
        ids = [_created(client, {"title": f"n{n}"})["id"] for n in range(5)]
        pages: list[list[str]] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": 2} | ({"cursor": cursor} if cursor else {})
            page = client.get("/v1/incidents", params=params).json()
            pages.append([i["id"] for i in page["items"]])
            cursor = page["next_cursor"]
            if cursor is None:
                break
        newest = client.get("/v1/incidents", params={"order": "newest", "limit": 3}).json()
        bad = client.get("/v1/incidents", params={"cursor": "not-ours"})
    assert pages == [ids[0:2], ids[2:4], ids[4:5]]
    assert [i["id"] for i in newest["items"]] == ids[:-4:-1]
    assert bad.status_code == 422 and bad.json()["detail"].startswith("cursor")
