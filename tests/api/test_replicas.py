"""Replicas: two `locker serve` and one `locker worker` on one PostgreSQL and one S3.

The deployment's topology (deploy/k8s/base): API processes that run no jobs, a worker
that runs them, each with a data directory of its own and the signing key given as a
secret file (LOCKER_SIGNING_KEY_FILE). Clients alternate between the two servers; what
one server records, the other serves, and the log both sign is one log. A replica that
is misconfigured (no key, another key, no database) refuses to start with one line.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from tests.analysis.media import scene
from tests.databases import PostgresTemplate
from tests.harness import free_port
from tests.independent.verifier import open_checkpoint, verify_consistency, verify_inclusion
from tests.processes import (
    LOCKER,
    ROOT,
    bootstrap_key,
    locker_environment,
    locker_process,
    serving_process,
)
from tests.seaweed import SeaweedServer


def _photo() -> bytes:
    """A small photo: a type the worker analyses."""
    out = io.BytesIO()
    scene(7, (160, 120)).save(out, format="PNG")
    return out.getvalue()


def _env(
    tmp_path: Path, database_url: str, s3: SeaweedServer, bucket: str, name: str
) -> dict[str, str]:
    """One process's environment: its own data directory, the shared key, database, store."""
    return locker_environment(
        LOCKER_DATA_DIR=str(tmp_path / name),
        LOCKER_SIGNING_KEY_FILE=str(tmp_path / "secrets" / "log-signing-key"),
        LOCKER_DATABASE_URL=database_url,
        LOCKER_S3_ENDPOINT=s3.endpoint,
        LOCKER_S3_ACCESS_KEY=s3.access_key,
        LOCKER_S3_SECRET_KEY=s3.secret_key,
        LOCKER_S3_BUCKET=bucket,
        LOCKER_S3_SECURE="false",
        LOCKER_JOBS_IN_PROCESS="false",  # only the worker runs jobs
        LOCKER_JOB_RECONCILE_SECONDS="1",
    )


def _eventually(check: Callable[[], object], what: str, *, seconds: float = 60) -> object:
    deadline = time.monotonic() + seconds
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def _checkpoint(client: httpx.Client, verifier_key: str) -> tuple[int, bytes]:
    _, size, root = open_checkpoint(client.get("/log/checkpoint").text, verifier_key)
    return size, root


def _proof(client: httpx.Client, path: str, **params: int) -> list[bytes]:
    answer = client.get(f"/v1/custody/proof/{path}", params=params)
    assert answer.status_code == 200, answer.text
    return [base64.b64decode(h) for h in answer.json()["hashes"]]


@pytest.fixture
def deployment(
    postgres_template: PostgresTemplate, s3_server: SeaweedServer, tmp_path: Path
) -> Iterator[tuple[list[dict[str, str]], str]]:
    """The environments of servers A and B and of the worker, and an admin's API key,
    over one bootstrapped database and bucket."""
    with postgres_template.fresh() as database_url:
        bucket = f"replicas-{uuid.uuid4().hex[:10]}"
        (tmp_path / "secrets").mkdir(mode=0o700)
        envs = [_env(tmp_path, database_url, s3_server, bucket, n) for n in ("a", "b", "w")]
        yield envs, bootstrap_key(envs[0], "Replicas")  # makes the key: the log is empty


@pytest.fixture
def replicas(
    deployment: tuple[list[dict[str, str]], str], tmp_path: Path
) -> Iterator[tuple[httpx.Client, httpx.Client, dict[str, str]]]:
    """Clients of servers A and B (one worker behind them), and B's environment."""
    envs, key = deployment
    with ExitStack() as stack:
        log = tmp_path / "processes.log"
        url_a, _ = stack.enter_context(serving_process(envs[0], log))
        url_b, _ = stack.enter_context(serving_process(envs[1], log))
        stack.enter_context(locker_process(["worker"], envs[2], log))
        headers = {"Authorization": f"Bearer {key}"}
        a = stack.enter_context(httpx.Client(base_url=url_a, headers=headers, timeout=60))
        b = stack.enter_context(httpx.Client(base_url=url_b, headers=headers, timeout=60))
        yield a, b, envs[1]


def test_two_servers_and_a_worker_serve_one_locker(
    replicas: tuple[httpx.Client, httpx.Client, dict[str, str]],
) -> None:
    a, b, env = replicas
    verifier_key = a.get("/v1/custody/verifier-key").text
    assert b.get("/v1/custody/verifier-key").text == verifier_key
    first = _checkpoint(a, verifier_key)

    # Uploaded through A; read, downloaded, analysed (by the worker) and found through B.
    metadata = json.dumps({"title": "Checkpoint shelling aftermath"})
    photo = _photo()
    uploaded = a.post(
        "/v1/evidence",
        files=[("file", ("aftermath.png", photo, "image/png"))],
        data={"metadata": metadata},
    )
    assert uploaded.status_code == 201, uploaded.text
    item = uploaded.json()
    assert b.get(f"/v1/evidence/{item['id']}").json()["sha256"] == item["sha256"]
    assert b.get(f"/v1/evidence/{item['id']}/content").content == photo
    _eventually(lambda: b.get(f"/v1/evidence/{item['id']}").json()["analysis"], "never analysed")
    for client in (a, b):
        hits = client.get("/v1/search", params={"q": "shelling"}).json()["items"]
        assert [h["id"] for h in hits] == [item["id"]]

    # Requested on B, built by the worker, fetched from A.
    export = b.post("/v1/exports", json={"evidence_ids": [item["id"]]})
    assert export.status_code == 202, export.text
    done = _eventually(
        lambda: (
            (s := a.get(f"/v1/exports/{export.json()['id']}").json())["status"]
            in {"done", "failed"}
            and s
        ),
        "the export was never built",
    )
    assert isinstance(done, dict) and done["status"] == "done", done
    bundle = a.get(f"/v1/exports/{export.json()['id']}/content")
    assert hashlib.sha256(bundle.content).hexdigest() == done["sha256"]

    # Each server's proofs check against the other's signed checkpoints.
    second = _checkpoint(b, verifier_key)
    assert second[0] > first[0]
    verify_consistency(
        first[0],
        second[0],
        first[1],
        second[1],
        _proof(a, "consistency", first=first[0], second=second[0]),
    )
    index = item["custody_index"]
    (entry,) = a.get("/v1/custody/entries", params={"start": index, "limit": 1}).json()
    leaf = base64.b64decode(entry["leaf_b64"])
    verify_inclusion(
        leaf, index, second[0], _proof(a, "inclusion", index=index, tree_size=second[0]), second[1]
    )
    third = _checkpoint(a, verifier_key)
    verify_inclusion(
        leaf, index, third[0], _proof(b, "inclusion", index=index, tree_size=third[0]), third[1]
    )

    # Nothing is left half-done anywhere: fsck from a third process finds nothing.
    audit = subprocess.run([*LOCKER, "fsck"], env=env, cwd=ROOT, capture_output=True, text=True)
    assert audit.returncode == 0, audit.stdout + audit.stderr


def _another_key(path: Path) -> None:
    raw = Ed25519PrivateKey.generate().private_bytes(
        Encoding.Raw, PrivateFormat.Raw, NoEncryption()
    )
    path.write_text(base64.b64encode(raw).decode() + "\n")
    path.chmod(0o600)


def _misconfigured(tmp_path: Path) -> dict[str, dict[str, str]]:
    """Each fault, as the settings that make it."""
    other = tmp_path / "secrets" / "other-key"
    _another_key(other)
    unreachable = f"postgresql://postgres@127.0.0.1:{free_port()}/locker"
    return {
        "no signing key": {"LOCKER_SIGNING_KEY_FILE": str(tmp_path / "secrets" / "not-mounted")},
        "another key": {"LOCKER_SIGNING_KEY_FILE": str(other)},
        "no database": {"LOCKER_DATABASE_URL": unreachable},
    }


# What the one line must say, for each fault.
_SAID = {"no signing key": "restore", "another key": "restore", "no database": "database"}


def test_a_misconfigured_replica_refuses_to_start_with_one_line(
    deployment: tuple[list[dict[str, str]], str], tmp_path: Path
) -> None:
    envs, _ = deployment
    started: dict[tuple[str, str], subprocess.Popen[str]] = {}
    for fault, settings in _misconfigured(tmp_path).items():
        for command in (["serve", "--port", str(free_port())], ["worker"]):
            started[command[0], fault] = subprocess.Popen(  # all at once: each takes seconds
                [*LOCKER, *command],
                env=envs[1] | settings,
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
    try:
        for (command, fault), process in started.items():
            try:
                out, err = process.communicate(timeout=120)
            except subprocess.TimeoutExpired:
                pytest.fail(f"{command} started despite {fault}")
            assert process.returncode == 2, (command, fault, out + err)
            lines = err.strip().splitlines()
            assert len(lines) == 1 and _SAID[fault] in lines[0], (command, fault, err)
    finally:
        for process in started.values():
            if process.poll() is None:
                process.kill()
                process.communicate()
    assert not (tmp_path / "secrets" / "not-mounted").exists()  # never replaced
