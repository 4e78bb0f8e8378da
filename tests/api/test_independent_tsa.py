"""Timestamps from an authority nobody here wrote (OpenSSL's `ts -reply`, answering with
its chain in chain order), alone and beside a second authority, through the running
locker: stamped, bundled, verified by `locker verify` and by `openssl ts -verify`."""

from __future__ import annotations

import json
import subprocess
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from service.client.verifier import verify_path
from service.core import bundle
from service.core.timestamp import authority_name
from tests.api.test_exports import PHOTO, _wait_done
from tests.harness import Locker
from tests.openssl_tsa import (
    OpensslAuthority,
    OpensslTsaServer,
    openssl_available,
    run_openssl_tsa,
)
from tests.tsa import TsaServer, run_tsa
from tests.verifier.test_isolation import _block
from tests.verifier.test_timestamp import _run

pytestmark = pytest.mark.skipif(not openssl_available(), reason="needs the openssl command")
_INDEPENDENT = "CN=Independent TSA,O=Independent Test Authority"
_OURS = "CN=Locker Test TSA,O=Locker Test TSA"


@pytest.fixture(scope="module")
def independent_authority(tmp_path_factory: pytest.TempPathFactory) -> OpensslAuthority:
    return OpensslAuthority.create(tmp_path_factory.mktemp("openssl-tsa"))


@pytest.fixture
def independent(independent_authority: OpensslAuthority) -> Iterator[OpensslTsaServer]:
    with run_openssl_tsa(independent_authority) as server:
        yield server


@pytest.fixture
def ours() -> Iterator[TsaServer]:
    with run_tsa() as server:
        yield server


def _locker(
    make_locker: Callable[..., Locker], tmp_path: Path, *servers: TsaServer | OpensslTsaServer
) -> Locker:
    cas = []
    for server in servers:
        cas.append(tmp_path / f"ca-{authority_name(server.url)}.pem")
        cas[-1].write_bytes(server.authority.ca_pem())
    return make_locker(
        tsa_url=" ".join(s.url for s in servers),
        tsa_ca_file=" ".join(map(str, cas)),
        tsa_interval=0.2,
        tsa_timeout=2,
    )


def _wait_stamped_by(client: httpx.Client, *urls: str) -> int:
    """The size of a checkpoint that every authority in `urls` has stamped."""
    deadline = time.monotonic() + 30
    while True:
        size = int(client.get("/v1/custody/checkpoint").text.split("\n")[1])
        tokens = client.get("/v1/custody/checkpoint/timestamps", params={"tree_size": size})
        if {t["tsa_url"] for t in tokens.json()} >= set(urls):
            return size
        assert time.monotonic() < deadline, f"checkpoint {size} never stamped by all of {urls}"
        time.sleep(0.1)


def _export(locker: Locker, tmp_path: Path) -> tuple[Path, str]:
    """A bundle of one new item, and the locker's verifier key."""
    with locker.client() as client:
        item = client.post("/v1/evidence", files=[("file", ("a.jpg", PHOTO, "x/y"))]).json()
        export_id = client.post("/v1/exports", json={"evidence_ids": [item["id"]]}).json()["id"]
        assert _wait_done(client, export_id)["status"] == "done"
        path = tmp_path / "bundle.zip"
        path.write_bytes(client.get(f"/v1/exports/{export_id}/content").content)
        return path, client.get("/v1/custody/verifier-key").text


def _openssl_verifies_every_token(path: Path, tmp_path: Path, cas: dict[str, bytes]) -> int:
    """docs/verification.md's openssl steps, with the CAs given by file name; the count."""
    with zipfile.ZipFile(path) as archive:
        archive.extractall(tmp_path / "unzipped")
    [bag] = (tmp_path / "unzipped").iterdir()
    for name, pem in cas.items():
        (bag / name).write_bytes(pem)
    script = _block("openssl-ts-check")
    result = subprocess.run(["bash", "-e", "-c", script], cwd=bag, capture_output=True, text=True)
    assert result.returncode == 0, result
    return result.stdout.count("Verification: OK")


def test_an_independent_authority_stamps_checkpoints_and_its_token_verifies(
    make_locker: Callable[..., Locker],
    independent: OpensslTsaServer,
    tmp_path: Path,
) -> None:
    locker = _locker(make_locker, tmp_path, independent)
    with locker.client() as client:
        client.post("/v1/evidence", files=[("file", ("b.jpg", PHOTO, "x/y"))]).raise_for_status()
        _wait_stamped_by(client, independent.url)
    path, key = _export(locker, tmp_path)
    verdict = verify_path(path, key, [independent.authority.root])
    assert verdict.ok, verdict.findings
    assert verdict.timestamp is not None and verdict.timestamp.authority == _INDEPENDENT
    with zipfile.ZipFile(path) as archive:
        bundled = {n.split("/", 1)[1] for n in archive.namelist()}
    assert {bundle.TIMESTAMP_PATH, bundle.TSA_CA_PATH} <= bundled
    (tmp_path / "key").write_text(key + "\n")
    (tmp_path / "root.pem").write_bytes(independent.authority.ca_pem())
    code, out = _run(path, "--key", tmp_path / "key", "--tsa-ca", tmp_path / "root.pem")
    assert code == 0 and f"attested by {_INDEPENDENT}" in out, out
    cas = {"tsa-ca.pem": independent.authority.ca_pem()}
    assert _openssl_verifies_every_token(path, tmp_path, cas) == 1


def test_every_authority_stamps_and_bundles_carry_every_token(
    make_locker: Callable[..., Locker],
    ours: TsaServer,
    independent: OpensslTsaServer,
    tmp_path: Path,
) -> None:
    locker = _locker(make_locker, tmp_path, ours, independent)
    with locker.client() as client:
        client.post("/v1/evidence", files=[("file", ("b.jpg", PHOTO, "x/y"))]).raise_for_status()
        _wait_stamped_by(client, ours.url, independent.url)
    path, key = _export(locker, tmp_path)
    second = authority_name(independent.url)
    token_path, ca_path = bundle.timestamp_paths(second)
    roots = [ours.authority.ca, independent.authority.root]
    verdict = verify_path(path, key, roots)
    assert verdict.ok, verdict.findings
    assert {p: t.authority for p, t in verdict.timestamps.items()} == {
        bundle.TIMESTAMP_PATH: _OURS,
        token_path: _INDEPENDENT,
    }
    assert verdict.checked[bundle.TIMESTAMP] == 2
    assert verify_path(path, key).ok  # each against the CA bundled beside it
    assert not verify_path(path, key, [ours.authority.ca]).ok  # one CA cannot vouch for both
    key_file, ca_files = tmp_path / "key", [tmp_path / "ours.pem", tmp_path / "theirs.pem"]
    key_file.write_text(key + "\n")
    ca_files[0].write_bytes(ours.authority.ca_pem())
    ca_files[1].write_bytes(independent.authority.ca_pem())
    code, out = _run(path, "--key", key_file, "--tsa-ca", ca_files[0], "--tsa-ca", ca_files[1])
    assert code == 0 and f"attested by {_OURS}" in out and f"attested by {_INDEPENDENT}" in out
    code, out = _run(path, "--key", key_file, "--tsa-ca", ca_files[1], "--json")
    reported = json.loads(out)
    assert code == 1 and [t["file"] for t in reported["timestamps"]] == [token_path]
    cas = {
        "tsa-ca.pem": ours.authority.ca_pem(),
        ca_path.removeprefix("custody/"): independent.authority.ca_pem(),
    }
    assert _openssl_verifies_every_token(path, tmp_path, cas) == 2


def test_an_authority_that_is_down_delays_nothing_and_stamps_once_back(
    make_locker: Callable[..., Locker],
    ours: TsaServer,
    independent: OpensslTsaServer,
    tmp_path: Path,
) -> None:
    ours.down = True
    locker = _locker(make_locker, tmp_path, ours, independent)
    with locker.client() as client:
        client.post("/v1/evidence", files=[("file", ("b.jpg", PHOTO, "x/y"))]).raise_for_status()
        _wait_stamped_by(client, independent.url)
    path, key = _export(locker, tmp_path)
    verdict = verify_path(path, key, [independent.authority.root])
    assert verdict.ok, verdict.findings
    # the only token is the primary one for old verifiers, beside its own authority's CA
    assert list(verdict.timestamps) == [bundle.TIMESTAMP_PATH]
    assert verdict.timestamps[bundle.TIMESTAMP_PATH].authority == _INDEPENDENT
    assert ours.hits > 0 and ours.authority.requests == 0
    ours.down = False
    with locker.client() as client:
        _wait_stamped_by(client, ours.url, independent.url)
