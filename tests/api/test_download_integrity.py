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
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from service.db.models import Evidence, Export
from service.operations.fsck import fsck
from service.runtime import Runtime
from service.storage import ObjectStore
from service.storage.base import ClosingChunks
from tests.harness import Locker, analysed, serve

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
        data[min(FLIPPED_AT, len(data) - 1)] ^= 0x01
        pieces = iter([bytes(data[i : i + 1024 * 1024]) for i in range(0, len(data), 1024 * 1024)])
        return ClosingChunks(
            read=lambda _size: next(pieces, b""), close=lambda: None, errors=(), what=key
        )


@pytest.fixture
def tampering(
    backend: str, make_runtime: Callable[..., Runtime]
) -> Iterator[tuple[Locker, Callable[[str], None]]]:
    """A locker, and a function that changes the stored object at a key."""
    runtime = make_runtime()
    if backend == "sqlite-fs":

        def flip_file(key: str) -> None:
            _flip(runtime.settings.data_dir / "store" / "objects" / key)

        with serve(runtime) as locker:
            yield locker, flip_file
        return
    flipping = _FlippingStore(runtime.store)
    served = dataclasses.replace(runtime, store=flipping)  # type: ignore[arg-type]

    def flip_reads(_key: str) -> None:
        flipping.tampered = True

    with serve(served) as locker:
        yield dataclasses.replace(locker, runtime=runtime), flip_reads


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[min(FLIPPED_AT, len(data) - 1)] ^= 0x01
    path.chmod(0o600)
    path.write_bytes(bytes(data))
    path.chmod(0o444)


def _download(client: httpx.Client, path: str) -> tuple[int, int, bool]:
    """Status, bytes received, and whether the transfer broke before its end."""
    received = 0
    with client.stream("GET", path) as response:
        try:
            for chunk in response.iter_raw():
                received += len(chunk)
        except httpx.TransportError:
            return response.status_code, received, True
    return response.status_code, received, False


def test_changed_bytes_abort_the_download_and_quarantine_the_item(
    tampering: tuple[Locker, Callable[[str], None]],
) -> None:
    locker, tamper = tampering
    with locker.client() as client:
        uploaded = client.post("/v1/evidence", files=[("file", ("a.png", CONTENT, "image/png"))])
        assert uploaded.status_code == 201, uploaded.text
        item_id = uploaded.json()["id"]
        analysed(client, item_id)  # its background analysis entry lands before the check
        intact = client.get(f"/v1/evidence/{item_id}/content")
        assert intact.status_code == 200 and intact.content == CONTENT
        assert client.get(f"/v1/evidence/{item_id}").json()["quarantine"] is None
        tamper(_object_key(locker, Evidence, item_id))
        status, received, broken = _download(client, f"/v1/evidence/{item_id}/content")
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


def test_a_changed_bundle_is_never_a_clean_download(
    tampering: tuple[Locker, Callable[[str], None]],
) -> None:
    locker, tamper = tampering
    with locker.client() as client:
        uploaded = client.post("/v1/evidence", files=[("file", ("a.png", CONTENT, "image/png"))])
        requested = client.post("/v1/exports", json={"evidence_ids": [uploaded.json()["id"]]})
        export_id = requested.json()["id"]
        for _ in range(600):
            if client.get(f"/v1/exports/{export_id}").json()["status"] != "pending":
                break
            time.sleep(0.1)
        path = f"/v1/exports/{export_id}/content"
        assert _download(client, path)[2] is False  # intact: a complete transfer
        tamper(_object_key(locker, Export, export_id))
        status, received, broken = _download(client, path)
    assert broken, f"status {status}: {received} bytes arrived as a complete response"


def _object_key(locker: Locker, table: type[Evidence] | type[Export], row_id: str) -> str:
    with locker.runtime.database.session() as session:
        row = session.get(table, row_id)
        assert row is not None and row.object_key is not None
        return row.object_key
