"""Downloads verify while they stream: changed bytes never end as a clean 200.

How the stored object is changed, per backend, and why that is honest:
- filesystem: the file itself is rewritten with one byte flipped (chmod, write, chmod
  back), as an insider with access to the data directory would.
- S3: a new version of the key is not tampering (the locker reads the exact version id
  it recorded), and flipping a byte in SeaweedFS's volume file is caught by SeaweedFS's
  own needle CRC (the read fails: a storage error, not changed bytes). What must be
  tested is a server that hands back other bytes than were stored (compromised, or a
  silent disk fault under a store without checksums); the test puts exactly that
  between the locker and the real SeaweedFS: a store whose reads flip one byte.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from service.operations.fsck import fsck
from service.runtime import Runtime
from service.storage import ObjectStore
from service.storage.base import ClosingChunks
from tests.harness import Locker, serve

# More than two read chunks (1 MiB each): the client must get bytes, and not all of them.
CONTENT = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * (10 * 1024)
FLIPPED_AT = len(CONTENT) - 10


class _FlippingStore:
    """The real store, except that reads return one byte changed once `tampered` is set."""

    def __init__(self, store: ObjectStore) -> None:
        self._store = store
        self.tampered = False

    def __getattr__(self, name: str) -> object:
        return getattr(self._store, name)

    def open(self, key: str, version_id: str | None) -> ClosingChunks:
        chunks = self._store.open(key, version_id)
        if not self.tampered or not key.startswith("org/"):
            return chunks
        data = bytearray(b"".join(chunks))
        data[FLIPPED_AT] ^= 0x01
        pieces = iter([bytes(data[i : i + 1024 * 1024]) for i in range(0, len(data), 1024 * 1024)])
        return ClosingChunks(
            read=lambda _size: next(pieces, b""), close=lambda: None, errors=(), what=key
        )


@pytest.fixture
def tampering(
    backend: str, make_runtime: Callable[..., Runtime]
) -> Iterator[tuple[Locker, Callable[[dict[str, object]], None]]]:
    """A locker, and a function that changes one stored item's bytes."""
    runtime = make_runtime()
    if backend == "sqlite-fs":

        def flip_file(item: dict[str, object]) -> None:
            path = runtime.settings.data_dir / "store" / "objects" / str(item["object_key"])
            _flip(path)

        with serve(runtime) as locker:
            yield locker, flip_file
        return
    flipping = _FlippingStore(runtime.store)
    served = dataclasses.replace(runtime, store=flipping)  # type: ignore[arg-type]

    def flip_reads(_item: dict[str, object]) -> None:
        flipping.tampered = True

    with serve(served) as locker:
        yield dataclasses.replace(locker, runtime=runtime), flip_reads


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[FLIPPED_AT] ^= 0x01
    path.chmod(0o600)
    path.write_bytes(bytes(data))
    path.chmod(0o444)


def _download(client: httpx.Client, evidence_id: str) -> tuple[int, int, bool]:
    """Status, bytes received, and whether the transfer broke before its end."""
    received = 0
    with client.stream("GET", f"/v1/evidence/{evidence_id}/content") as response:
        try:
            for chunk in response.iter_raw():
                received += len(chunk)
        except httpx.TransportError:
            return response.status_code, received, True
    return response.status_code, received, False


def test_changed_bytes_abort_the_download_and_quarantine_the_item(
    tampering: tuple[Locker, Callable[[dict[str, object]], None]],
) -> None:
    locker, tamper = tampering
    with locker.client() as client:
        uploaded = client.post("/v1/evidence", files=[("file", ("a.png", CONTENT, "image/png"))])
        assert uploaded.status_code == 201, uploaded.text
        item_id = uploaded.json()["id"]
        intact = client.get(f"/v1/evidence/{item_id}/content")
        assert intact.status_code == 200 and intact.content == CONTENT
        assert client.get(f"/v1/evidence/{item_id}").json()["quarantine"] is None
        tamper(_stored(locker, item_id))
        status, received, broken = _download(client, item_id)
        detail = client.get(f"/v1/evidence/{item_id}").json()
        trail = client.get(f"/v1/evidence/{item_id}/custody").json()
    assert broken, f"status {status}: {received} bytes arrived as a complete response"
    assert received < len(CONTENT)
    assert detail["quarantine"] is not None
    assert "sha256" in detail["quarantine"]["reason"]
    actions = [e["fields"]["action"] for e in trail["entries"]]
    assert actions[-1] == "evidence.integrity_failure", actions
    failure = trail["entries"][-1]
    assert failure["index"] == detail["quarantine"]["custody_index"]
    findings = fsck(locker.runtime).findings
    assert any(f"evidence {item_id} is quarantined" in f for f in findings), findings


def _stored(locker: Locker, evidence_id: str) -> dict[str, object]:
    from service.db.models import Evidence

    with locker.runtime.database.session() as session:
        evidence = session.get(Evidence, evidence_id)
        assert evidence is not None
        return {"object_key": evidence.object_key}
