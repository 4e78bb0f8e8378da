"""/log: the tree as C2SP tlog-tiles, checked by the independent verifier from tiles alone."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable

import httpx
import pytest

from tests.harness import Locker
from tests.independent.tiles import TileReader, tile_path
from tests.independent.verifier import open_checkpoint, verify_consistency, verify_inclusion_hash

IMMUTABLE = "public, max-age=31536000, immutable"


def _append(locker: Locker, count: int) -> None:
    """Grow the log by `count` entries in one transaction (the tiles do not care how)."""
    runtime = locker.runtime
    with runtime.database.session() as session:
        for n in range(count):
            runtime.log.append(
                session,
                organisation_id=locker.organisation_id,
                actor="system:test",
                action="test.filler",
                subjects=[f"filler:{n}"],
            )


def _public(locker: Locker) -> httpx.Client:
    return locker.client(api_key="")  # no Authorization header at all


def _checkpoint(locker: Locker, public: httpx.Client) -> tuple[int, bytes]:
    key = public.get("/v1/custody/verifier-key").text
    response = public.get("/log/checkpoint")
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-cache"
    _, size, root = open_checkpoint(response.text, key)
    return size, root


def _fetcher(public: httpx.Client) -> Callable[[str], bytes]:
    def fetch(path: str) -> bytes:
        response = public.get(f"/log/{path}")
        assert response.status_code == 200, (path, response.text)
        assert response.headers["cache-control"] == IMMUTABLE
        assert response.headers["content-type"] == "application/octet-stream"
        return response.content

    return fetch


def _leaf_hashes(locker: Locker, start: int, count: int) -> list[bytes]:
    """Leaf hashes from the exact leaf bytes the (authenticated) entries API returns."""
    with locker.client() as client:
        entries = client.get("/v1/custody/entries", params={"start": start, "limit": count})
    assert entries.status_code == 200
    return [
        hashlib.sha256(b"\x00" + base64.b64decode(e["leaf_b64"])).digest() for e in entries.json()
    ]


def test_inclusion_and_consistency_from_tiles_alone(locker: Locker) -> None:
    _append(locker, 300)
    with _public(locker) as public:
        first_size, first_root = _checkpoint(locker, public)
        assert first_size > 256  # a full level-0 tile, a partial one and a level-1 tile
        before = TileReader(_fetcher(public), first_size)
        for index in (0, 1, 255, 256, first_size - 1):
            proof = before.inclusion_proof(index)
            verify_inclusion_hash(before.leaf_hash(index), index, first_size, proof, first_root)
        # The tiles' leaves are the hashes of the entries' exact bytes.
        assert [before.leaf_hash(i) for i in range(3)] == _leaf_hashes(locker, 0, 3)

        _append(locker, 270)
        second_size, second_root = _checkpoint(locker, public)
        after = TileReader(_fetcher(public), second_size)
        for index in (2, 300, 511, 512, second_size - 1):
            proof = after.inclusion_proof(index)
            verify_inclusion_hash(after.leaf_hash(index), index, second_size, proof, second_root)
        proof = after.consistency_proof(first_size)
        verify_consistency(first_size, second_size, first_root, second_root, proof)
        assert "tile/1/000.p/2" in after.fetched

        # The same proof the authenticated API serves.
        with locker.client() as client:
            served = client.get(
                "/v1/custody/proof/consistency",
                params={"first": first_size, "second": second_size},
            ).json()["hashes"]
        assert [base64.b64decode(h) for h in served] == proof


def test_a_partial_tile_is_a_prefix_of_the_tile_it_grows_into(locker: Locker) -> None:
    _append(locker, 10)
    with _public(locker) as public:
        size, _ = _checkpoint(locker, public)
        partial = public.get(f"/log/{tile_path(0, 0, size)}").content
        _append(locker, 256)
        full = public.get("/log/tile/0/000")
        assert full.status_code == 200
        assert len(full.content) == 256 * 32
        assert full.content.startswith(partial)
        # and the partial tile itself never changes
        assert public.get(f"/log/{tile_path(0, 0, size)}").content == partial


def test_a_wrong_tile_cannot_pass_the_independent_check(locker: Locker) -> None:
    _append(locker, 20)
    with _public(locker) as public:
        size, root = _checkpoint(locker, public)
        fetch = _fetcher(public)

        def forged(path: str) -> bytes:
            data = bytearray(fetch(path))
            data[40] ^= 1  # one bit of the second leaf hash
            return bytes(data)

        reader = TileReader(forged, size)
        with pytest.raises(ValueError, match="root"):
            verify_inclusion_hash(reader.leaf_hash(7), 7, size, reader.inclusion_proof(7), root)


@pytest.mark.parametrize(
    "path",
    [
        "tile/0/1",  # not a 3-digit group
        "tile/0/x000/001",  # leading zero group
        "tile/0/001/002",  # leading group without x
        "tile/0/000.p/0",
        "tile/0/000.p/256",
        "tile/0/000.p/07",
        "tile/9/000",  # beyond the log's 63-bit positions
        "tile/01/000",
        "tile/a/000",
        "tile/0",
        "tile/0/000/",
        "tile/0/x001",
    ],
)
def test_malformed_tile_paths_are_400(locker: Locker, path: str) -> None:
    with _public(locker) as public:
        response = public.get(f"/log/{path}")
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert "\n" not in response.json()["detail"]


def test_tiles_that_do_not_exist_yet_are_404(locker: Locker) -> None:
    with _public(locker) as public:
        size, _ = _checkpoint(locker, public)
        assert public.get(f"/log/{tile_path(0, 0, size)}").status_code == 200
        assert public.get(f"/log/{tile_path(0, 0, size + 1)}").status_code == 404
        assert public.get("/log/tile/0/000").status_code == 404  # not full yet
        assert public.get("/log/tile/1/000.p/1").status_code == 404
        assert public.get("/log/tile/0/x001/000").status_code == 404


def test_entry_bundles_are_not_public(locker: Locker) -> None:
    with _public(locker) as public:
        response = public.get("/log/tile/entries/000.p/1")
    assert response.status_code == 404
    assert "not public" in response.json()["detail"]
