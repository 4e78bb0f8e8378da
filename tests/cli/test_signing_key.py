"""One key for one log: a lost or swapped signing key stops every command.

A new key would sign checkpoints no published verifier key accepts, silently forking
the log's identity; the operator must restore the key from backup instead.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from service.runtime import open_runtime
from service.settings import Settings

LOCKER = [sys.executable, "-m", "service"]
COMMANDS = [["serve", "--port", "1"], ["fsck"], ["admin", "list-keys", "--org", "o"], ["migrate"]]


def _run(args: list[str], data_dir: Path) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LOCKER_")}
    env = clean | {"LOCKER_DATA_DIR": str(data_dir)}
    return subprocess.run([*LOCKER, *args], env=env, capture_output=True, text=True, timeout=60)


@pytest.fixture
def used_log(tmp_path: Path) -> Path:
    """A data directory whose log has entries and a signed checkpoint."""
    made = _run(["admin", "bootstrap", "--org", "o", "--email", "a@example.org"], tmp_path)
    assert made.returncode == 0, made.stderr
    runtime = open_runtime(Settings(data_dir=tmp_path))
    try:
        assert runtime.log.latest_checkpoint(runtime.database).size > 0
    finally:
        runtime.close()
    return tmp_path


def _assert_refused(done: subprocess.CompletedProcess[str]) -> None:
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "restore" in lines[0] and "backup" in lines[0], lines[0]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0] if c[0] != "admin" else c[1])
def test_a_missing_key_is_never_replaced(used_log: Path, command: list[str]) -> None:
    key = used_log / "log-signing-key"
    key.unlink()
    _assert_refused(_run(command, used_log))
    assert not key.exists()


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0] if c[0] != "admin" else c[1])
def test_a_key_that_did_not_sign_the_log_is_refused(used_log: Path, command: list[str]) -> None:
    key = used_log / "log-signing-key"
    other = Ed25519PrivateKey.generate().private_bytes(
        Encoding.Raw, PrivateFormat.Raw, NoEncryption()
    )
    key.chmod(0o600)
    key.write_text(base64.b64encode(other).decode() + "\n")
    _assert_refused(_run(command, used_log))


def test_the_restored_key_works_again(used_log: Path) -> None:
    key = used_log / "log-signing-key"
    backup = key.read_bytes()
    key.unlink()
    _assert_refused(_run(["fsck"], used_log))
    key.write_bytes(backup)
    done = _run(["fsck"], used_log)
    assert done.returncode == 0, done.stdout + done.stderr
