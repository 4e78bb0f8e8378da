"""Search and filters over incidents and items, Arabic included, on both databases."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.harness import Locker, analysed

PNG = b"\x89PNG\r\n\x1a\n" + b"search" * 300
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"search" * 300
TARHUNA = {
    # With tashkeel, as a careful writer would type it.
    "title": {"ar": "المَقَابِر الجَمَاعِيَّة فِي تَرْهُونَة", "en": "Mass graves in Tarhuna"},
    "summary": {"ar": "إخفاء قسري لعائلات بأكملها", "en": "Whole families disappeared"},
    "original_language": "ar",
    "start": {"value": "2019-04", "precision": "month"},
    "end": {"value": "2020-06", "precision": "month"},
    "locations": [{"name": "ترهونة", "country": "LY", "lat": 32.435, "lon": 13.634}],
    "categories": ["mass_grave", "enforced_disappearance"],
    "status": "corroborated",
    "tags": ["exhumation"],
}
SIRTE = {
    "title": {"ar": "قصف مستشفى في سرت", "en": "Shelling of a hospital in Sirte"},
    "original_language": "ar",
    "start": {"value": "2016-08-01", "precision": "day"},
    "locations": [{"name": "سرت", "country": "LY", "lat": 31.205, "lon": 16.588}],
    "categories": ["attack_on_civilians"],
    "status": "open",
}


def _ids(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["items"]]


@pytest.fixture
def world(locker: Locker) -> dict[str, Any]:
    with locker.client() as client:
        tarhuna = client.post("/v1/incidents", json=TARHUNA).json()
        sirte = client.post("/v1/incidents", json=SIRTE).json()
        photo = client.post(
            "/v1/evidence",
            files=[("file", ("مقبرة.jpg", JPEG, "image/jpeg"))],
            data={
                "metadata": json.dumps(
                    {
                        "title": "صورة المقبرة الجماعية",
                        "description": "Exhumation at the landfill",
                        "captured_at": "2020-06-10T09:00:00Z",
                        "location": {"lat": 32.42, "lon": 13.61},
                        "tags": ["exhumation"],
                        "incident_id": tarhuna["id"],
                    }
                )
            },
        ).json()
        scan = client.post(
            "/v1/evidence",
            files=[("file", ("report.png", PNG, "image/png"))],
            data={"metadata": json.dumps({"title": "Hospital damage report"})},
        ).json()
    return {"tarhuna": tarhuna["id"], "sirte": sirte["id"], "photo": photo["id"], "scan": scan}


@pytest.mark.parametrize(
    "query",
    [
        "المقابر الجماعية",  # without diacritics
        "المَقَابِر",  # with them
        "مقابر",  # without the article
        "ترهونه",  # teh marbuta typed as heh
        "ترهـــونة",  # with tatweel
        "اخفاء قسري",  # bare alef for إ
        "mass GRAVES",
        "grave",  # singular for plural
        "disappearance",  # the summary says "disappeared"
        "tarhu",  # a prefix
    ],
)
def test_arabic_and_english_queries_find_the_incident(
    locker: Locker, world: dict[str, Any], query: str
) -> None:
    with locker.client() as client:
        found = _ids(client.get("/v1/incidents", params={"q": query}))
    assert found == [world["tarhuna"]]


def test_a_query_matching_nothing_finds_nothing(locker: Locker, world: dict[str, Any]) -> None:
    with locker.client() as client:
        assert _ids(client.get("/v1/incidents", params={"q": "بنغازي"})) == []
        assert _ids(client.get("/v1/incidents", params={"q": "مقابر سرت"})) == []  # all words
        empty = client.get("/v1/incidents", params={"q": "  ؟!  "})
    assert empty.status_code == 422 and empty.json()["detail"].startswith("q")


def test_incident_filters(locker: Locker, world: dict[str, Any]) -> None:
    tarhuna, sirte = world["tarhuna"], world["sirte"]
    with locker.client() as client:

        def find(**params: str) -> list[str]:
            return _ids(client.get("/v1/incidents", params=params))

        assert find(category="mass_grave") == [tarhuna]
        assert find(category="attack_on_civilians") == [sirte]
        assert find(status="open") == [sirte]
        assert find(tag="exhumation") == [tarhuna]
        # Tarhuna's period runs from April 2019 to the end of June 2020.
        assert find(**{"from": "2020-06-30T12:00:00Z"}) == [tarhuna]
        assert find(**{"from": "2020-07-01T00:00:00Z"}) == []
        assert find(**{"to": "2017-01-01T00:00:00Z"}) == [sirte]
        assert find(bbox="13.0,32.0,14.0,33.0") == [tarhuna]
        assert find(bbox="16.0,31.0,17.0,31.5", q="سرت") == [sirte]
        assert find(bbox="170,-10,-170,10") == []  # across the antimeridian, nothing there
        bad_box = client.get("/v1/incidents", params={"bbox": "1,2,3"})
        reversed_dates = client.get(
            "/v1/incidents", params={"from": "2021-01-01T00:00:00Z", "to": "2020-01-01T00:00:00Z"}
        )
    assert bad_box.status_code == 422 and bad_box.json()["detail"].startswith("bbox")
    assert reversed_dates.status_code == 422


def test_evidence_filters(locker: Locker, world: dict[str, Any]) -> None:
    photo, scan = world["photo"], world["scan"]["id"]
    with locker.client() as client:

        def find(**params: str) -> list[str]:
            return _ids(client.get("/v1/evidence", params=params))

        assert find() == [photo, scan]
        assert find(q="مقبرة") == [photo]
        assert find(q="hospital") == [scan]
        assert find(media_type="image/jpeg") == [photo]
        assert find(media_type="image/*") == [photo, scan]
        assert find(incident=world["tarhuna"]) == [photo]
        assert find(tag="exhumation") == [photo]
        assert find(bbox="13.5,32.3,13.7,32.5") == [photo]
        # Captured in June 2020 (asserted); the scan counts from when it was received.
        assert find(**{"to": "2021-01-01T00:00:00Z"}) == [photo]
        listed = client.get("/v1/evidence").json()["items"]
    assert listed[0]["title"] == "صورة المقبرة الجماعية"
    assert listed[1]["sha256"] == world["scan"]["sha256"]


def test_search_merges_both_kinds_in_log_order(locker: Locker, world: dict[str, Any]) -> None:
    with locker.client() as client:
        both = client.get("/v1/search", params={"q": "الجماعية"}).json()
        incidents = client.get("/v1/search", params={"q": "جماعيه", "type": "incident"}).json()
        pages = []
        cursor = None
        while True:
            params: dict[str, Any] = {"q": "ا", "limit": 1} | ({"cursor": cursor} if cursor else {})
            page = client.get("/v1/search", params=params).json()
            pages += [(hit["type"], hit["id"]) for hit in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        mixed = client.get("/v1/search", params={"q": "x", "media_type": "image/png"})
    assert [(h["type"], h["id"]) for h in both["items"]] == [
        ("incident", world["tarhuna"]),
        ("evidence", world["photo"]),
    ]
    assert [h["id"] for h in incidents["items"]] == [world["tarhuna"]]
    # Every incident and item with a word starting with alef, once each, in log order.
    assert pages == [("incident", world["tarhuna"]), ("evidence", world["photo"])]
    assert mixed.status_code == 422


def test_search_sees_only_what_the_caller_may_see(locker: Locker, world: dict[str, Any]) -> None:
    other = locker.new_organisation("Other NGO")
    with locker.client() as client:
        hidden = client.post(
            "/v1/incidents", json={"title": "مقابر سرية", "restricted": True}
        ).json()
        client.post("/v1/members", json={"email": "inv@a.example", "role": "investigator"})
        key = client.post("/v1/keys", json={"email": "inv@a.example", "name": "i"}).json()["key"]
    with locker.client(other) as theirs:
        theirs_found = _ids(theirs.get("/v1/incidents", params={"q": "مقابر"}))
        theirs_search = theirs.get("/v1/search", params={"q": "مقابر"}).json()
    with locker.client(key) as colleague:
        colleague_found = _ids(colleague.get("/v1/incidents", params={"q": "مقابر"}))
    with locker.client() as client:
        owner_found = _ids(client.get("/v1/incidents", params={"q": "مقابر"}))
    assert theirs_found == [] and theirs_search["items"] == []
    assert colleague_found == [world["tarhuna"]]
    assert owner_found == [world["tarhuna"], hidden["id"]]


def test_edits_are_searchable_at_once(locker: Locker, world: dict[str, Any]) -> None:
    with locker.client() as client:
        client.patch(
            f"/v1/incidents/{world['sirte']}",
            json={"summary": {"en": "Ibn Sina hospital struck twice"}, "categories": []},
        )
        client.patch(f"/v1/evidence/{world['scan']['id']}/metadata", json={"title": "Ibn Sina"})
        by_summary = _ids(client.get("/v1/incidents", params={"q": "ibn sina"}))
        by_category = _ids(client.get("/v1/incidents", params={"category": "attack_on_civilians"}))
        items = _ids(client.get("/v1/evidence", params={"q": "ibn sina"}))
        old_title = _ids(client.get("/v1/evidence", params={"q": "hospital damage"}))
    assert by_summary == [world["sirte"]]
    assert by_category == []
    assert items == [world["scan"]["id"]]
    assert old_title == []


def test_reindex_rebuilds_a_stale_index(locker: Locker, world: dict[str, Any]) -> None:
    """As after an upgrade that changes normalisation: the views are rebuilt from the
    current versions, which themselves are untouched."""
    from sqlalchemy import text

    from service.search.query import rebuild_search_index

    with locker.client() as client:
        analysed(client, world["photo"])
        analysed(client, world["scan"]["id"])
    with locker.runtime.database.session() as session:
        session.execute(text("UPDATE search_document SET body = 'stale'"))
        if session.get_bind().dialect.name == "sqlite":
            session.execute(text("UPDATE search_fts SET body = 'stale'"))
    with locker.client() as client:
        assert _ids(client.get("/v1/search", params={"q": "الجماعية"})) == []
        done = rebuild_search_index(locker.runtime, batch=1)
        assert (done.incidents, done.evidence) == (2, 2)
        found = _ids(client.get("/v1/search", params={"q": "الجماعية"}))
        assert found == [world["tarhuna"], world["photo"]]
        assert _ids(client.get("/v1/search", params={"q": "stale"})) == []
        assert _ids(client.get("/v1/incidents", params={"q": "hospital"})) == [world["sirte"]]
