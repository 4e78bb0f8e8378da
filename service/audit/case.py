"""The audit export as CASE/UCO JSON-LD (caseontology.org), streamed node by node.

Each custody entry becomes a `case-investigation:InvestigativeAction` (performer, start
time, the items it acted on or brought about); each evidence item a `uco-observable:File`
whose facets carry its size, type, names and SHA-256/SHA-512 (`uco-types:Hash`), with a
`case-investigation:ProvenanceRecord` naming it as an exhibit. What CASE has no term for
(an entry's exact leaf bytes, its RFC 9162 inclusion proof, the signed checkpoint's tree
size and root) uses this project's own `locker:` terms, which the CASE shapes allow.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterable, Iterator
from hashlib import sha256
from itertools import islice
from typing import TYPE_CHECKING
from urllib.parse import quote

from sqlmodel import Session, col, select

from service.accounts.access import hidden_subjects
from service.accounts.members import Principal
from service.accounts.permissions import Permission, allows
from service.db.models import CustodySubject, Evidence, Incident, SignedCheckpoint, Submission
from service.evidence.trails import ProvenEntry

if TYPE_CHECKING:
    from service.runtime import Runtime

Node = dict[str, object]

# This project's own terms. RFC 6761 reserves `.invalid`: the IRI names the terms
# without pretending to resolve to a document.
VOCABULARY = "https://evidence-locker.invalid/ns/custody/v1#"

_PREFIXES = {
    "case-investigation": "https://ontology.caseontology.org/case/investigation/",
    "uco-action": "https://ontology.unifiedcyberontology.org/uco/action/",
    "uco-core": "https://ontology.unifiedcyberontology.org/uco/core/",
    "uco-identity": "https://ontology.unifiedcyberontology.org/uco/identity/",
    "uco-observable": "https://ontology.unifiedcyberontology.org/uco/observable/",
    "uco-types": "https://ontology.unifiedcyberontology.org/uco/types/",
    "xsd": "http://www.w3.org/2001/XMLSchema#",
    "locker": VOCABULARY,
}

# Subject kind → the UCO class of its node (others are plain `uco-core:UcoObject`s).
_CLASSES = {
    "evidence": "uco-observable:File",
    "export": "uco-observable:File",
    "incident": "uco-core:Event",
    "organisation": "uco-identity:Organization",
    "user": "uco-identity:Identity",
    "operator": "uco-identity:Identity",  # the deployment's operator, at the command line
}
# Actions whose first subject is what they brought about (their result).
_CREATING = {
    "evidence.ingested",
    "export.created",
    "incident.created",
    "key.created",
    "member.added",
    "organisation.created",
}


def kb_namespace(log_origin: str) -> str:
    """The deployment's node namespace (`kb:`), from its log origin, unique per deployment."""
    return f"https://{quote(log_origin, safe='/:.-_~')}/kb/"


class _Iris:
    """Stable node IRIs `kb:<kind>-<UUID>`, as CASE asks: the same in every export.

    An item whose id is a UUID keeps it; anything else (an entry's index, a key's
    prefix, a facet of an item) gets a UUIDv5 derived from its name in this deployment.
    """

    def __init__(self, kb: str) -> None:
        self._namespace = uuid.uuid5(uuid.NAMESPACE_URL, kb)

    def of(self, subject: str) -> str:
        kind, _, key = subject.partition(":")
        return f"kb:{kind}-{key if _is_uuid(key) else uuid.uuid5(self._namespace, subject)}"

    def part(self, iri: str, part: str) -> str:
        return f"kb:{part}-{uuid.uuid5(self._namespace, f'{iri}/{part}')}"

    def ref(self, subject: str) -> dict[str, str]:
        return {"@id": self.of(subject)}


def _is_uuid(text: str) -> bool:
    """Whether `text` is a UUID in its canonical lower-case, hyphenated spelling."""
    try:
        return str(uuid.UUID(text)) == text
    except ValueError:
        return False


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _typed(value: str, datatype: str) -> dict[str, str]:
    return {"@type": f"xsd:{datatype}", "@value": value}


def _hash(iri: str, method: str, hex_value: str) -> Node:
    return {
        "@id": iri,
        "@type": "uco-types:Hash",
        "uco-types:hashMethod": method,
        "uco-types:hashValue": _typed(hex_value, "hexBinary"),
    }


def _action(
    iris: _Iris,
    proven: ProvenEntry,
    fields: dict[str, object],
    subjects: list[str],
    checkpoint: str,
) -> Node:
    """The entry as an investigative action, with its exact leaf (or, when withheld, its
    leaf hash) and inclusion proof."""
    index, action, actor = proven.index, str(fields["action"]), str(fields["actor"])
    produced = subjects[:1] if action in _CREATING and subjects else []
    results = [iris.ref(s) for s in produced]
    if action == "evidence.ingested" and produced:
        results.append({"@id": iris.part(iris.of(subjects[0]), "provenance-record")})
    evidence: Node = (
        {"locker:leafHash": _typed(_b64(proven.leaf_hash), "base64Binary")}
        if proven.leaf is None
        else {"locker:leaf": _typed(_b64(proven.leaf), "base64Binary")}
    )
    return {
        "@id": iris.of(f"custody-entry:{index}"),
        "@type": "case-investigation:InvestigativeAction",
        "uco-core:name": action,
        "uco-core:description": f"custody log entry {index}: {action} by {actor}",
        "uco-action:startTime": _typed(str(fields["time"]), "dateTime"),
        "uco-action:performer": iris.ref(actor),
        "uco-action:object": [iris.ref(s) for s in subjects[len(produced) :]],
        "uco-action:result": results,
        "locker:logIndex": _typed(str(index), "nonNegativeInteger"),
        **evidence,
        # An RDF list keeps the proof's order (RFC 9162 §2.1.3.2 consumes it in order).
        "locker:inclusionProof": {"@list": [_typed(_b64(h), "base64Binary") for h in proven.proof]},
        "locker:provenBy": {"@id": checkpoint},
    }


def _named(iris: _Iris, subject: str, name: str | None = None) -> Node:
    """A node for an item or actor: its class by kind, and its name when known."""
    kind = subject.partition(":")[0]
    node: Node = {**iris.ref(subject), "@type": _CLASSES.get(kind, "uco-core:UcoObject")}
    if name:
        node["uco-core:name"] = name
    return node


def _evidence(
    iris: _Iris, evidence_id: str, record: Evidence | None, filenames: list[str]
) -> Iterator[Node]:
    """The item, its provenance record and (from its record) its facets and hashes."""
    subject = f"evidence:{evidence_id}"
    item = iris.of(subject)
    yield {
        "@id": iris.part(item, "provenance-record"),
        "@type": "case-investigation:ProvenanceRecord",
        "case-investigation:exhibitNumber": evidence_id,
        "uco-core:description": f"evidence item {evidence_id} as the locker received it",
        "uco-core:object": [{"@id": item}],
    }
    if record is None:
        yield _named(iris, subject)
        return
    content, file = iris.part(item, "content-data-facet"), iris.part(item, "file-facet")
    hashes = [iris.part(item, "sha256-hash"), iris.part(item, "sha512-hash")]
    yield {
        **_named(iris, subject, filenames[0] if filenames else None),
        "uco-core:hasFacet": [{"@id": content}, {"@id": file}],
    }
    yield {
        "@id": content,
        "@type": "uco-observable:ContentDataFacet",
        "uco-observable:sizeInBytes": record.size,
        "uco-observable:mimeType": record.media_type,
        "uco-observable:hash": [{"@id": h} for h in hashes],
    }
    yield {
        "@id": file,
        "@type": "uco-observable:FileFacet",
        "uco-observable:fileName": filenames,
        "uco-observable:sizeInBytes": record.size,
    }
    yield _hash(hashes[0], "SHA256", record.sha256)
    yield _hash(hashes[1], "SHA512", record.sha512)


def _checkpoint(iris: _Iris, checkpoint: SignedCheckpoint, iri: str) -> Node:
    """The signed note every inclusion proof leads to, as content with its hash."""
    note = checkpoint.note.encode()
    facet = iris.part(iri, "content-data-facet")
    return {
        "@id": iri,
        "@type": "uco-observable:ObservableObject",
        "uco-core:name": f"signed checkpoint at tree size {checkpoint.size}",
        "uco-core:hasFacet": [
            {
                "@id": facet,
                "@type": "uco-observable:ContentDataFacet",
                "uco-observable:dataPayload": checkpoint.note,
                "uco-observable:mimeType": "text/plain; charset=utf-8",
                "uco-observable:sizeInBytes": len(note),
                "uco-observable:hash": [
                    _hash(iris.part(facet, "sha256-hash"), "SHA256", sha256(note).hexdigest())
                ],
            }
        ],
        "locker:treeSize": _typed(str(checkpoint.size), "nonNegativeInteger"),
        "locker:rootHash": _typed(_b64(checkpoint.root_hash), "base64Binary"),
    }


class _Graph:
    """Nodes for successive batches of entries; each item and actor is described once."""

    def __init__(self, iris: _Iris, principal: Principal, checkpoint: str) -> None:
        self._iris, self._principal, self._checkpoint = iris, principal, checkpoint
        self._described: set[str] = set()

    def batch(self, session: Session, entries: list[ProvenEntry]) -> list[Node]:
        subjects = _subjects(session, [p.index for p in entries])
        named_anywhere = {s for v in subjects.values() for s in v}
        hidden = hidden_subjects(session, self._principal, named_anywhere)
        nodes: list[Node] = []
        named: dict[str, None] = {}
        for proven in entries:
            fields = proven.fields
            seen = set(subjects.get(proven.index, [])) - hidden
            own = str(fields["subject"])  # the leaf's subject: what a creating action made
            about = [own] if own in seen else []
            about += sorted(seen - {own})
            nodes.append(_action(self._iris, proven, fields, about, self._checkpoint))
            named |= dict.fromkeys([str(fields["actor"]), *about])
        new = [n for n in named if n not in self._described]
        self._described.update(new)
        return nodes + list(self._describe(session, new))

    def _describe(self, session: Session, names: list[str]) -> Iterator[Node]:
        """Nodes for what is named for the first time, from its records where readable."""
        ids = {
            kind: [n.partition(":")[2] for n in names if n.startswith(f"{kind}:")]
            for kind in ("evidence", "incident")
        }
        records, filenames = self._evidence(session, ids["evidence"])
        titles = self._titles(session, ids["incident"])
        for name in names:
            kind, _, item_id = name.partition(":")
            if kind == "evidence":
                yield from _evidence(self._iris, item_id, records.get(item_id), filenames[item_id])
            else:
                yield _named(self._iris, name, titles.get(item_id) if kind == "incident" else None)

    def _evidence(
        self, session: Session, ids: list[str]
    ) -> tuple[dict[str, Evidence], dict[str, list[str]]]:
        filenames: dict[str, list[str]] = {i: [] for i in ids}
        if not ids or not allows(self._principal.role, Permission.EVIDENCE_READ):
            return {}, filenames
        rows = session.exec(
            select(Evidence)
            .where(col(Evidence.id).in_(ids))
            .where(Evidence.organisation_id == self._principal.organisation_id)
        ).all()
        submitted = session.exec(
            select(Submission.evidence_id, Submission.filename)
            .where(col(Submission.evidence_id).in_(ids))
            .order_by(col(Submission.custody_index))
        ).all()
        for evidence_id, filename in submitted:
            if filename not in filenames[evidence_id]:
                filenames[evidence_id].append(filename)
        return {row.id: row for row in rows}, filenames

    def _titles(self, session: Session, ids: list[str]) -> dict[str, str]:
        if not ids or not allows(self._principal.role, Permission.INCIDENT_READ):
            return {}
        rows = session.exec(
            select(Incident.id, Incident.title)
            .where(col(Incident.id).in_(ids))
            .where(Incident.organisation_id == self._principal.organisation_id)
        ).all()
        return dict(rows)


def _subjects(session: Session, indexes: list[int]) -> dict[int, list[str]]:
    """Each entry's subjects (its leaf names only the first)."""
    rows = session.exec(
        select(CustodySubject).where(col(CustodySubject.entry_index).in_(indexes))
    ).all()
    found: dict[int, list[str]] = {}
    for row in rows:
        found.setdefault(row.entry_index, []).append(row.subject)
    return found


def case_jsonld(
    runtime: Runtime,
    principal: Principal,
    checkpoint: SignedCheckpoint,
    entries: Iterable[ProvenEntry],
    *,
    batch: int = 200,
) -> Iterator[bytes]:
    """One JSON-LD document whose @graph array is written batch by batch as entries arrive.

    Memory holds one batch and the set of items already described, never the log.
    """
    kb = kb_namespace(runtime.settings.log_origin)
    iris = _Iris(kb)
    checkpoint_iri = iris.of(f"checkpoint:{checkpoint.size}")
    graph = _Graph(iris, principal, checkpoint_iri)
    yield b'{"@context": ' + json.dumps({**_PREFIXES, "kb": kb}).encode() + b', "@graph": [\n'
    remaining = iter(entries)
    while chunk := list(islice(remaining, batch)):
        with runtime.database.session() as session:
            nodes = graph.batch(session, chunk)
        for node in nodes:
            yield json.dumps(node, ensure_ascii=False).encode() + b",\n"
    yield json.dumps(_checkpoint(iris, checkpoint, checkpoint_iri), ensure_ascii=False).encode()
    yield b"\n]}\n"
