"""A real export, attacked as an insider would: items removed or inserted, read files
edited, manifests regenerated every time. And every party of an entry is signed.

Through the HTTP API on real PostgreSQL and a real object store; the verifier is the
offline one a court's expert runs.
"""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import httpx
import pytest
from sqlmodel import select

from service.client.verifier import verify_path
from service.core import bundle, seal
from service.core.canonical import canonical_json
from service.db.models import CustodySubject
from service.operations.demo import forwarded_copy, sample_photo
from service.operations.fsck import fsck
from tests.harness import Locker, analysed
from tests.independent import verifier as independent
from tests.verifier.bundles import read_members, reseal, write_members

CONTENTS = [(f"item-{n}.txt", f"statement {n}: what the witness saw\n".encode()) for n in range(3)]


def _wait_done(client: httpx.Client, export_id: str) -> None:
    deadline = time.monotonic() + 60
    while (status := client.get(f"/v1/exports/{export_id}").json())["status"] == "pending":
        assert time.monotonic() < deadline, "export never finished"
        time.sleep(0.1)
    assert status["status"] == "done", status


def _leaves(client: httpx.Client) -> list[dict[str, object]]:
    entries = client.get("/v1/custody/entries", params={"limit": 1000}).json()
    return [json.loads(base64.b64decode(e["leaf_b64"])) for e in entries]


def _upload(client: httpx.Client, name: str, content: bytes) -> str:
    response = client.post("/v1/evidence", files=[("file", (name, content, "text/plain"))])
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


@pytest.fixture
def exported(locker: Locker, tmp_path: Path) -> tuple[Path, str, str, list[str]]:
    """A three-item incident export: the bundle, the verifier key, its folder, the ids."""
    return _export(locker, tmp_path)


def _export(locker: Locker, tmp_path: Path) -> tuple[Path, str, str, list[str]]:
    with locker.client() as client:
        incident = client.post("/v1/incidents", json={"title": "three items"}).json()["id"]
        ids = [_upload(client, name, content) for name, content in CONTENTS]
        for evidence_id in ids:
            link = {"evidence_id": evidence_id, "reason": "seen there"}
            assert client.post(f"/v1/incidents/{incident}/evidence", json=link).status_code == 201
        export_id = client.post("/v1/exports", json={"incident_id": incident}).json()["id"]
        _wait_done(client, export_id)
        path = tmp_path / "bundle.zip"
        path.write_bytes(client.get(f"/v1/exports/{export_id}/content").content)
        key = client.get("/v1/custody/verifier-key").text
    assert verify_path(path, key).ok
    return path, key, f"export-{export_id}", ids


def _bag(path: Path, top: str) -> dict[str, bytes]:
    return {n.removeprefix(f"{top}/"): d for n, d in read_members(path).items()}


def _forged(tmp_path: Path, top: str, files: dict[str, bytes]) -> Path:
    """The edited bag with manifests, Payload-Oxum and tag manifest regenerated."""
    draft = write_members(tmp_path / "draft.zip", [(f"{top}/{r}", d) for r, d in files.items()])
    return reseal(draft, tmp_path / "forged.zip", top)


def _refused(path: Path, key: str) -> set[str]:
    verdict = verify_path(path, key)
    assert not verdict.ok
    return {f.check for f in verdict.findings}


def test_the_bundle_signs_its_items_and_its_files(
    locker: Locker, exported: tuple[Path, str, str, list[str]]
) -> None:
    path, key, top, ids = exported
    files = _bag(path, top)
    independent.check_bundle_claims(files, key.strip())  # the claims, checked from the docs
    leaves = [json.loads(d) for r, d in files.items() if r.startswith("custody/entries/")]
    [created] = [e for e in leaves if e["action"] == seal.CREATED]
    [sealed] = [e for e in leaves if e["action"] == seal.SEALED]
    assert [e["id"] for e in created["evidence"]] == ids
    assert created["organisation"] == sealed["organisation"] == locker.organisation_id
    document = json.loads(files[seal.SEAL_PATH])
    assert {"bag-info.txt", "report/report.html", "custody/items.json"} <= document["files"].keys()
    assert all(f"data/records/evidence/{i}.json" in document["files"] for i in ids)


def test_removing_a_whole_item_is_refused(
    exported: tuple[Path, str, str, list[str]], tmp_path: Path
) -> None:
    """Finding 4: file, record and items.json entry gone, every manifest regenerated."""
    path, key, top, ids = exported
    files = {r: d for r, d in _bag(path, top).items() if ids[1] not in r}
    items = json.loads(files[bundle.ITEMS_PATH])
    items["evidence"] = [e for e in items["evidence"] if e["id"] != ids[1]]
    files[bundle.ITEMS_PATH] = canonical_json(items)
    assert {seal.EXPORT, seal.SEAL} <= _refused(_forged(tmp_path, top, files), key)


def test_inserting_another_organisations_item_is_refused(locker: Locker, tmp_path: Path) -> None:
    """Finding 4: its file, record, ingest entry and an inclusion proof fetched for the
    bundle's own tree size, all genuine."""
    content = b"another organisation's photograph"
    with locker.client(locker.new_organisation("other")) as other:
        outsider = _upload(other, "planted.jpg", content)
        path, key, top, _ = _export(locker, tmp_path)
        trail = other.get(f"/v1/evidence/{outsider}/custody").json()
        [ingest] = [e for e in trail["entries"] if e["fields"]["action"] == "evidence.ingested"]
        files = _bag(path, top)
        proofs = json.loads(files[bundle.PROOFS_PATH])
        proof = other.get(
            "/v1/custody/proof/inclusion",
            params={"index": ingest["index"], "tree_size": proofs["tree_size"]},
        )
    assert proof.status_code == 200, proof.text
    rel = f"data/evidence/{outsider}/planted.jpg"
    files[rel] = content
    files[bundle.entry_path(ingest["index"])] = base64.b64decode(ingest["leaf_b64"])
    proofs["proofs"][str(ingest["index"])] = proof.json()["hashes"]
    files[bundle.PROOFS_PATH] = canonical_json(proofs)
    items = json.loads(files[bundle.ITEMS_PATH])
    fields = ingest["fields"]
    items["evidence"].append(
        {
            "id": outsider,
            "sha256": fields["sha256"],
            "sha512": fields["sha512"],
            "size": fields["size"],
            "ingest_index": ingest["index"],
            "path": rel,
        }
    )
    files[bundle.ITEMS_PATH] = canonical_json(items)
    files[f"data/records/evidence/{outsider}.json"] = b"{}"
    found = _refused(_forged(tmp_path, top, files), key)
    assert {seal.ORGANISATION, seal.EXPORT, seal.SEAL} <= found


@pytest.mark.parametrize("rel", ["report/report.html", "bag-info.txt", "record"])
@pytest.mark.parametrize("seal_too", [False, True])
def test_editing_what_a_reader_reads_first_is_refused(
    exported: tuple[Path, str, str, list[str]], tmp_path: Path, rel: str, seal_too: bool
) -> None:
    """Finding 4: edited records, report and bag-info, manifests (and seal) regenerated."""
    path, key, top, ids = exported
    files = _bag(path, top)
    rel = f"data/records/evidence/{ids[0]}.json" if rel == "record" else rel
    if rel == "bag-info.txt":  # the bundle's date, as a forger backdating it would
        files[rel] = files[rel].replace(b"Bagging-Date: 2", b"Bagging-Date: 1")
    else:  # a digit of a time, a size or an index
        files[rel] = files[rel].replace(b"2", b"3")
    assert files[rel] != _bag(path, top)[rel]
    draft = write_members(tmp_path / "draft.zip", [(f"{top}/{r}", d) for r, d in files.items()])
    forged = reseal(draft, tmp_path / "forged.zip", top, seal_too=seal_too)
    verdict = verify_path(forged, key)
    assert not verdict.ok
    subject = seal.SEAL_PATH if seal_too else rel
    assert any(f.check == seal.SEAL and f.subject == subject for f in verdict.findings)


def test_every_party_of_an_entry_is_signed(locker: Locker) -> None:
    """Finding 5: the grantee of a grant and the owner of a key are in the signed leaf."""
    with locker.client() as admin:
        item = _upload(admin, "witness.txt", b"a protected statement")
        assert admin.post("/v1/members", json={"email": "w@x.org", "role": "auditor"}).status_code
        key = admin.post("/v1/keys", json={"email": "w@x.org", "name": "w"}).json()
        assert admin.post(f"/v1/evidence/{item}/restriction").status_code == 204
        grant = admin.post(f"/v1/evidence/{item}/grants", json={"email": "w@x.org"}).json()
        assert admin.delete(f"/v1/grants/{grant['id']}").status_code == 200
        leaves = _leaves(admin)
    grantee = f"user:{grant['user_id']}"
    for action in ("access.granted", "access.revoked"):
        [entry] = [e for e in leaves if e["action"] == action and grantee in e["subjects"]]
        assert entry["format"] == "locker.custody.v2"
        assert entry["subjects"] == [f"evidence:{item}", grantee]
    [created] = [
        e for e in leaves if e["action"] == "key.created" and e["subject"].endswith(key["prefix"])
    ]
    assert created["subjects"] == [f"key:{key['prefix']}", grantee]


def test_a_near_duplicate_signs_both_items(locker: Locker) -> None:
    """Finding 5: evidence.near_duplicate names (and signs) the new item and its match."""
    photo = sample_photo(seed=11)
    with locker.client() as client:
        original = _upload(client, "original.jpg", photo)
        analysed(client, original)
        copy = _upload(client, "forwarded.jpg", forwarded_copy(photo))
        analysed(client, copy)
        leaves = _leaves(client)
    [flag] = [e for e in leaves if e["action"] == "evidence.near_duplicate"]
    assert flag["subjects"] == [f"evidence:{copy}", f"evidence:{original}"]


def test_fsck_finds_a_subject_index_that_differs_from_the_leaf(locker: Locker) -> None:
    with locker.client() as admin:
        admin.post("/v1/members", json={"email": "m@x.org", "role": "auditor"})
        key = admin.post("/v1/keys", json={"email": "m@x.org", "name": "m"}).json()
    assert fsck(locker.runtime).findings == []
    # The table is append-only; a row added beside the leaf is what an insider can do.
    with locker.runtime.database.session() as session:
        index = session.exec(
            select(CustodySubject.entry_index).where(
                CustodySubject.subject == f"key:{key['prefix']}"
            )
        ).one()
        session.add(CustodySubject(entry_index=index, subject="evidence:planted"))
    findings = fsck(locker.runtime).findings
    assert any("subject index" in f and f"key:{key['prefix']}" in f for f in findings), findings
