"""The custody log through the API, checked by a verifier written from the specs alone."""

from __future__ import annotations

import base64
import json
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from tests.harness import Locker, analysed
from tests.independent import verifier as independent

# Bootstrap records the organisation, its first member and that member's key.
BOOTSTRAP_ENTRIES = 3
PNG = b"\x89PNG\r\n\x1a\n" + b"custody" * 500


def _make_entries(client, count: int) -> None:
    for n in range(count):
        response = client.post("/v1/incidents", json={"title": f"حادثة رقم {n}"})
        assert response.status_code == 201, response.text


def _checkpoint(client) -> tuple[str, int, bytes]:
    key = client.get("/v1/custody/verifier-key").text.strip()
    note = client.get("/v1/custody/checkpoint").text
    origin, size, root = independent.open_checkpoint(note, key)
    return origin, size, root


def _b64list(hashes: list[str]) -> list[bytes]:
    return [base64.b64decode(h) for h in hashes]


def test_every_entry_is_proven_in_the_signed_checkpoint(locker: Locker) -> None:
    with locker.client() as client:
        _make_entries(client, 12)
        origin, size, root = _checkpoint(client)
        entries = client.get("/v1/custody/entries", params={"limit": 1000}).json()
        assert origin == locker.runtime.settings.log_origin
        assert size == BOOTSTRAP_ENTRIES + 12
        assert [e["index"] for e in entries] == list(range(size))
        for entry in entries:
            leaf = base64.b64decode(entry["leaf_b64"])
            assert json.loads(leaf) == entry["fields"]
            proof = client.get(
                "/v1/custody/proof/inclusion", params={"index": entry["index"], "tree_size": size}
            ).json()
            independent.verify_inclusion(
                leaf, entry["index"], size, _b64list(proof["hashes"]), root
            )


def test_altered_leaf_proof_or_checkpoint_is_rejected(locker: Locker) -> None:
    with locker.client() as client:
        _make_entries(client, 6)
        key = client.get("/v1/custody/verifier-key").text.strip()
        note = client.get("/v1/custody/checkpoint").text
        _, size, root = independent.open_checkpoint(note, key)
        entry = client.get("/v1/custody/entries", params={"start": 3, "limit": 1}).json()[0]
        proof = _b64list(
            client.get(
                "/v1/custody/proof/inclusion", params={"index": 3, "tree_size": size}
            ).json()["hashes"]
        )
    leaf = base64.b64decode(entry["leaf_b64"])
    with pytest.raises(ValueError):
        independent.verify_inclusion(leaf.replace(b"incident", b"incidenT"), 3, size, proof, root)
    with pytest.raises(ValueError):
        bad = [proof[0][:-1] + bytes([proof[0][-1] ^ 1]), *proof[1:]]
        independent.verify_inclusion(leaf, 3, size, bad, root)
    with pytest.raises(ValueError):
        independent.verify_inclusion(leaf, 4, size, proof, root)
    lines = note.split("\n")
    lines[1] = str(size + 1)
    with pytest.raises(ValueError):
        independent.open_checkpoint("\n".join(lines), key)


def test_consistency_between_checkpoints(locker: Locker) -> None:
    with locker.client() as client:
        _make_entries(client, 4)
        _, first, first_root = _checkpoint(client)
        _make_entries(client, 9)
        _, second, second_root = _checkpoint(client)
        proof = client.get(
            "/v1/custody/proof/consistency", params={"first": first, "second": second}
        ).json()
    assert (first, second) == (BOOTSTRAP_ENTRIES + 4, BOOTSTRAP_ENTRIES + 13)
    independent.verify_consistency(
        first, second, first_root, second_root, _b64list(proof["hashes"])
    )
    # The last bit flipped, so the wrong root differs from the right one whatever it ends in.
    wrong_root = second_root[:-1] + bytes([second_root[-1] ^ 1])
    with pytest.raises(ValueError):
        independent.verify_consistency(
            first, second, first_root, wrong_root, _b64list(proof["hashes"])
        )


def test_proof_requests_out_of_range_are_422(locker: Locker) -> None:
    with locker.client() as client:
        too_big = client.get("/v1/custody/proof/inclusion", params={"index": 0, "tree_size": 99})
        bad_index = client.get("/v1/custody/proof/inclusion", params={"index": 5, "tree_size": 1})
        bad_pair = client.get("/v1/custody/proof/consistency", params={"first": 2, "second": 1})
        not_int = client.get("/v1/custody/proof/inclusion", params={"index": "x", "tree_size": 1})
    for response in (too_big, bad_index, bad_pair, not_int):
        assert response.status_code == 422, response.text
        assert response.json()["detail"]


def test_evidence_custody_trail_is_proven(locker: Locker) -> None:
    with locker.client() as client:
        created = client.post("/v1/evidence", files=[("file", ("a.png", PNG, "image/png"))]).json()
        analysed(client, created["id"])
        incident = client.post("/v1/incidents", json={"title": "Tarhuna"}).json()
        client.post(
            f"/v1/incidents/{incident['id']}/evidence",
            json={"evidence_id": created["id"], "reason": "photo of the site"},
        )
        client.get(f"/v1/evidence/{created['id']}/content")
        key = client.get("/v1/custody/verifier-key").text.strip()
        trail = client.get(f"/v1/evidence/{created['id']}/custody").json()
    _, size, root = independent.open_checkpoint(trail["checkpoint"], key)
    assert size == trail["tree_size"]
    actions = [e["fields"]["action"] for e in trail["entries"]]
    assert actions == [
        "evidence.ingested",
        "evidence.analysed",
        "incident.evidence_linked",
        "evidence.content_accessed",
    ]
    for entry in trail["entries"]:
        independent.verify_inclusion(
            base64.b64decode(entry["leaf_b64"]),
            entry["index"],
            size,
            _b64list(entry["inclusion_proof"]),
            root,
        )
    assert trail["entries"][0]["fields"]["sha256"] == created["sha256"]


def test_concurrent_appends_get_distinct_gap_free_indexes(locker: Locker) -> None:
    def create(n: int) -> int:
        with locker.client() as client:
            response = client.post("/v1/incidents", json={"title": f"concurrent {n}"})
            assert response.status_code == 201, response.text
            return int(response.json()["custody_index"])

    with ThreadPoolExecutor(max_workers=8) as pool:
        indexes = sorted(pool.map(create, range(40)))
    assert indexes == list(range(BOOTSTRAP_ENTRIES, BOOTSTRAP_ENTRIES + 40))
    with locker.client() as client:
        _, size, root = _checkpoint(client)
    assert size == BOOTSTRAP_ENTRIES + 40
    with locker.runtime.database.session() as session:
        assert locker.runtime.log.root(session, size) == root


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE custody_entry SET action = 'forged' WHERE \"index\" = 0",
        'DELETE FROM custody_entry WHERE "index" = 0',
        "UPDATE tree_node SET hash = hash",
        "DELETE FROM checkpoint",
        "UPDATE evidence SET sha256 = 'x'",
        "DELETE FROM evidence",
    ],
)
def test_database_refuses_to_change_the_record(locker: Locker, statement: str) -> None:
    with locker.client() as client:
        client.post("/v1/evidence", files=[("file", ("a.png", PNG, "image/png"))])
        client.get("/v1/custody/checkpoint")
    with pytest.raises(DBAPIError, match="append-only"), locker.runtime.database.session() as s:
        s.execute(text(statement))


def test_verifier_key_is_public_but_checkpoint_needs_a_key(locker: Locker) -> None:
    with locker.client(api_key="") as anonymous:
        assert anonymous.get("/v1/custody/verifier-key").status_code == 200
        assert anonymous.get("/v1/custody/checkpoint").status_code == 401


def test_audit_export_streams_proven_entries(locker: Locker) -> None:
    with locker.client() as client:
        item = client.post("/v1/evidence", files=[("file", ("a.png", PNG, "image/png"))]).json()
        analysed(client, item["id"])
        _make_entries(client, 3)
        client.get(f"/v1/evidence/{item['id']}/content")
        key = client.get("/v1/custody/verifier-key").text.strip()
        jsonl = client.get("/v1/custody/export", params={"format": "jsonl"})
        one = client.get("/v1/custody/export", params={"evidence": item["id"]})
        table = client.get("/v1/custody/export", params={"format": "csv"})
        future = client.get("/v1/custody/export", params={"from": "2999-01-01T00:00:00Z"})
    lines = [json.loads(line) for line in jsonl.text.splitlines()]
    _, size, root = independent.open_checkpoint(lines[-1]["checkpoint"], key)
    assert len(lines) - 1 == BOOTSTRAP_ENTRIES + 6
    for line in lines[:-1]:
        leaf = base64.b64decode(line["leaf_b64"])
        independent.verify_inclusion(
            leaf, line["index"], size, _b64list(line["inclusion_proof"]), root
        )
    assert [json.loads(x)["fields"]["action"] for x in one.text.splitlines()[:-1]] == [
        "evidence.ingested",
        "evidence.analysed",
        "evidence.content_accessed",
    ]
    rows = table.text.splitlines()
    assert rows[0].startswith("index,time,organisation") and rows[-1].startswith("checkpoint,")
    assert len(rows) == BOOTSTRAP_ENTRIES + 6 + 2
    assert len(future.text.splitlines()) == 1  # only the closing checkpoint
