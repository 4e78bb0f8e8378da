"""`locker timestamp` as an operator runs it, against OpenSSL's authority and ours."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from service.core.timestamp import authority_name
from tests.cli.test_commands import _run
from tests.openssl_tsa import OpensslAuthority, openssl_available, run_openssl_tsa
from tests.tsa import run_tsa


@pytest.mark.skipif(not openssl_available(), reason="needs the openssl command")
def test_each_reachable_authority_stamps_and_each_failure_is_named(tmp_path: Path) -> None:
    authority = OpensslAuthority.create(tmp_path / "openssl-tsa")
    with run_openssl_tsa(authority) as independent, run_tsa() as ours:
        (tmp_path / "root.pem").write_bytes(authority.ca_pem())
        (tmp_path / "ours.pem").write_bytes(ours.authority.ca_pem())
        env = {
            "LOCKER_DATA_DIR": str(tmp_path / "data"),
            "LOCKER_TSA_URL": f"{ours.url},{independent.url}",
            "LOCKER_TSA_CA_FILE": f"{tmp_path / 'ours.pem'},{tmp_path / 'root.pem'}",
        }
        ours.down = True
        done = _run(["timestamp"], env)
        assert done.returncode == 0, done.stdout + done.stderr
        out = " ".join(done.stdout.split())  # rich wraps long lines
        assert out.count(" timestamped at ") == 1, out
        assert f"by CN=Independent TSA,O=Independent Test Authority ({independent.url})" in out
        # Log lines go to stderr, as JSON: stdout is the command's answer.
        [failure] = [
            json.loads(line) for line in done.stderr.splitlines() if "not timestamped" in line
        ]
        assert failure["tsa"] == authority_name(ours.url)
        assert failure["error"].startswith("HTTP 503 ")
        independent.down = True
        done = _run(["admin", "bootstrap", "--org", "o", "--email", "a@example.org"], env)
        assert done.returncode == 0, done.stderr  # the log grew: a new checkpoint to stamp
        done = _run(["timestamp"], env)
        assert done.returncode == 2 and "every TSA failed" in done.stdout  # an outage
