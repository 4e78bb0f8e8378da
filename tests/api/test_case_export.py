"""The audit export as CASE/UCO JSON-LD, checked with the CASE project's own validator.

Validation loads the whole CASE ontology and its SHACL shapes (seconds per run), so the
graphs stay small and the runs few.
"""

from __future__ import annotations

import base64
import json
import warnings
from pathlib import Path
from typing import Any

import httpx
import pytest
from case_utils.case_validate import validate
from sqlmodel import select

from service.accounts.members import Principal
from service.accounts.permissions import Role
from service.audit.case import case_jsonld
from service.db.models import User
from service.evidence.trails import EntryFilter, audit_trail
from tests.api.test_access import _member_key
from tests.harness import Locker, analysed
from tests.independent import verifier as independent

PNG = b"\x89PNG\r\n\x1a\n" + b"case" * 400
ACTION = "case-investigation:InvestigativeAction"
CASE_VERSION = "1.5.0"  # the version README.md names

Node = dict[str, Any]


def _case_validate(document: bytes, tmp_path: Path) -> tuple[bool, str]:
    """Conformance and the report, as `case_validate` gives them for the document."""
    path = tmp_path / "audit.jsonld"
    path.write_bytes(document)
    with warnings.catch_warnings():
        # rdflib and case-utils call APIs their own dependencies have deprecated; any
        # other warning (an unknown CASE term, say) still fails the test.
        warnings.simplefilter("ignore", DeprecationWarning)
        result = validate(str(path), case_version=CASE_VERSION)
    return bool(result.conforms), str(result.text)


def _populate(admin: httpx.Client) -> tuple[Node, str]:
    """An item linked to an incident and read back, a restricted incident; an auditor's key."""
    incident = admin.post("/v1/incidents", json={"title": "مقبرة جماعية"}).json()
    item: Node = admin.post(
        "/v1/evidence",
        files=[("file", ("موقع.png", PNG, "image/png"))],
        data={"metadata": json.dumps({"title": "Site photo", "incident_id": incident["id"]})},
    ).json()
    analysed(admin, item["id"])  # its analysis entry is in the log before we compare
    assert admin.get(f"/v1/evidence/{item['id']}/content").status_code == 200
    admin.post("/v1/incidents", json={"title": "hidden", "restricted": True}).raise_for_status()
    return item, _member_key(admin, "auditor@example.org", "auditor")


def _case(client: httpx.Client, **params: str) -> httpx.Response:
    response = client.get("/v1/custody/export", params={"format": "case", **params})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/ld+json")
    return response


def _of_type(graph: list[Node], kind: str) -> list[Node]:
    return [n for n in graph if n["@type"] == kind]


def _index(action: Node) -> int:
    return int(action["locker:logIndex"]["@value"])


def _jsonl_indexes(client: httpx.Client, **params: str) -> list[int]:
    response = client.get("/v1/custody/export", params={"format": "jsonl", **params})
    return [json.loads(line)["index"] for line in response.text.splitlines()[:-1]]


def test_case_export_conforms_and_holds_what_jsonl_holds(locker: Locker, tmp_path: Path) -> None:
    with locker.client() as admin:
        item, auditor_key = _populate(admin)
        key = admin.get("/v1/custody/verifier-key").text.strip()
        with locker.client(auditor_key) as auditor:
            everything = _case(auditor)
            one = _case(auditor, evidence=item["id"]).json()["@graph"]
            want_all, want_one = (
                _jsonl_indexes(auditor),
                _jsonl_indexes(auditor, evidence=item["id"]),
            )
    graph: list[Node] = everything.json()["@graph"]
    actions = _of_type(graph, ACTION)
    # The same entries as the JSONL export: the restricted incident's are left out of both.
    assert [_index(a) for a in actions] == want_all and len(want_all) >= 6
    assert "hidden" not in everything.text
    assert len({n["@id"] for n in graph}) == len(graph)  # each node written once
    assert [_index(a) for a in _of_type(one, ACTION)] == want_one
    assert [a["uco-core:name"] for a in _of_type(one, ACTION)] == [
        "evidence.ingested",
        "incident.evidence_linked",
        "evidence.analysed",
        "evidence.content_accessed",
    ]
    # Every leaf is proven in the closing checkpoint, checked by the independent verifier.
    note = graph[-1]["uco-core:hasFacet"][0]["uco-observable:dataPayload"]
    _, size, root = independent.open_checkpoint(note, key)
    assert size == _index(actions[-1]) + 1
    for action in actions:
        leaf = base64.b64decode(action["locker:leaf"]["@value"])
        proof = [base64.b64decode(h["@value"]) for h in action["locker:inclusionProof"]["@list"]]
        independent.verify_inclusion(leaf, _index(action), size, proof, root)
    # The item: its hashes, size and name from its record, and its provenance record.
    subject = f"kb:evidence-{item['id']}"
    nodes = {n["@id"]: n for n in graph}
    file = nodes[subject]
    assert file["@type"] == "uco-observable:File" and file["uco-core:name"] == "موقع.png"
    content = nodes[file["uco-core:hasFacet"][0]["@id"]]
    assert content["uco-observable:sizeInBytes"] == len(PNG) == item["size"]
    hashes = {
        nodes[h["@id"]]["uco-types:hashMethod"]: nodes[h["@id"]]["uco-types:hashValue"]["@value"]
        for h in content["uco-observable:hash"]
    }
    assert hashes == {"SHA256": item["sha256"], "SHA512": item["sha512"]}
    (record,) = _of_type(graph, "case-investigation:ProvenanceRecord")
    assert record["uco-core:object"] == [{"@id": subject}]

    conforms, report = _case_validate(everything.content, tmp_path)
    assert conforms, report


@pytest.mark.parametrize("backend", ["sqlite-fs"])
def test_validator_catches_a_hash_of_the_wrong_datatype(locker: Locker, tmp_path: Path) -> None:
    with locker.client() as admin:
        admin.post("/v1/evidence", files=[("file", ("a.png", PNG, "image/png"))])
        document = _case(admin).json()
    (sha256,) = [
        n
        for n in document["@graph"]
        if n["@type"] == "uco-types:Hash" and n["uco-types:hashMethod"] == "SHA256"
    ]
    sha256["uco-types:hashValue"]["@type"] = "xsd:string"  # UCO wants xsd:hexBinary

    conforms, report = _case_validate(json.dumps(document).encode(), tmp_path)
    assert not conforms
    assert "hashValue" in report and "hexBinary" in report


@pytest.mark.parametrize("backend", ["sqlite-fs"])
def test_small_batches_give_the_same_graph(locker: Locker) -> None:
    with locker.client() as admin:
        _populate(admin)
        whole = _case(admin).json()["@graph"]
    with locker.runtime.database.session() as session:
        lead = session.exec(select(User).where(User.email == "lead@example.org")).one()
    principal = Principal(user_id=lead.id, organisation_id=lead.organisation_id, role=Role.ADMIN)
    checkpoint, entries = audit_trail(locker.runtime, principal, EntryFilter())
    document = b"".join(case_jsonld(locker.runtime, principal, checkpoint, entries, batch=2))
    batched = json.loads(document)["@graph"]
    # Items named in several batches are still described once, and nothing is lost.
    assert len({n["@id"] for n in batched}) == len(batched) == len(whole)
    assert sorted(batched, key=lambda n: n["@id"]) == sorted(whole, key=lambda n: n["@id"])
