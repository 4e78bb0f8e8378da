"""The `locker` command as an operator runs it: a real process, real settings."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from sqlmodel import col, select

from service.core.entry import decode_entry
from service.db.models import CustodyEntry
from service.errors import ConfigurationError
from service.runtime import open_runtime
from service.settings import Settings, load_settings
from tests.databases import admin_url
from tests.harness import free_port

LOCKER = [sys.executable, "-m", "service"]


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LOCKER_")}
    return subprocess.run(
        [*LOCKER, *args], env=clean | env, capture_output=True, text=True, timeout=120
    )


def test_bootstrap_prints_the_key_alone_on_the_last_line(tmp_path: Path) -> None:
    env = {"LOCKER_DATA_DIR": str(tmp_path)}
    done = _run(["admin", "bootstrap", "--org", "منظمة", "--email", "a@example.org"], env)
    assert done.returncode == 0, done.stderr
    key = done.stdout.strip().splitlines()[-1]
    assert key.startswith("lk_") and " " not in key
    again = _run(["admin", "bootstrap", "--org", "منظمة", "--email", "b@example.org"], env)
    assert again.returncode == 2
    assert "already exists" in again.stderr
    assert "Traceback" not in again.stderr
    healthy = _run(["fsck"], env)
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    assert "all checks passed" in healthy.stdout


def test_fsck_exits_nonzero_and_lists_the_finding(tmp_path: Path) -> None:
    env = {"LOCKER_DATA_DIR": str(tmp_path)}
    assert (
        _run(["admin", "bootstrap", "--org", "o", "--email", "a@example.org"], env).returncode == 0
    )
    stray = tmp_path / "store" / "objects" / "org" / "x" / "sha256" / ("0" * 64)
    stray.parent.mkdir(parents=True)
    stray.write_bytes(b"unexplained")
    done = _run(["fsck"], env)
    assert done.returncode == 1
    assert "FINDING" in done.stdout and "no evidence record explains it" in done.stdout


@pytest.mark.parametrize(
    ("env", "setting"),
    [
        ({"LOCKER_RETENTION_DAYS": "0"}, "LOCKER_RETENTION_DAYS"),
        ({"LOCKER_S3_ENDPOINT": "127.0.0.1:1"}, "LOCKER_S3_ACCESS_KEY"),
        ({"LOCKER_DATABASE_URL": "mysql://x"}, "LOCKER_DATABASE_URL"),
        ({"LOCKER_PORT": "http"}, "LOCKER_PORT"),
    ],
)
def test_bad_configuration_fails_at_start_with_one_line(
    tmp_path: Path, env: dict[str, str], setting: str
) -> None:
    done = _run(["serve"], {"LOCKER_DATA_DIR": str(tmp_path), **env})
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and setting in lines[0], done.stderr


def test_settings_errors_name_the_setting() -> None:
    with pytest.raises(ConfigurationError, match="LOCKER_MAX_UPLOAD_BYTES"):
        load_settings(max_upload_bytes=0)


def test_postgres_without_synchronous_commit_is_refused(tmp_path: Path) -> None:
    url = admin_url() + "?options=-csynchronous_commit%3Doff"
    with pytest.raises(ConfigurationError, match="synchronous_commit=off"):
        open_runtime(Settings(data_dir=tmp_path, database_url=url))


def test_serve_runs_on_embedded_defaults(tmp_path: Path) -> None:
    port = free_port()
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LOCKER_")}
    # Leaving the with block closes the output pipe and waits for the process.
    with subprocess.Popen(
        [*LOCKER, "serve", "--port", str(port)],
        cwd=tmp_path,
        env=clean,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as process:
        try:
            for _ in range(200):
                try:
                    key = httpx.get(f"http://127.0.0.1:{port}/v1/custody/verifier-key", timeout=1)
                    break
                except httpx.TransportError:
                    assert process.poll() is None, process.stdout.read() if process.stdout else ""
                    import time

                    time.sleep(0.1)
            assert key.status_code == 200
            assert key.text.startswith("evidence-locker.local/custody+")
            assert (tmp_path / "locker-data" / "locker.sqlite3").exists()
            assert (tmp_path / "locker-data" / "log-signing-key").stat().st_mode & 0o077 == 0
        finally:
            process.terminate()
            process.wait(timeout=20)


def test_admin_manages_members_and_keys(tmp_path: Path) -> None:
    env = {"LOCKER_DATA_DIR": str(tmp_path)}
    assert (
        _run(["admin", "bootstrap", "--org", "o", "--email", "a@example.org"], env).returncode == 0
    )
    user = _run(
        [
            "admin",
            "create-user",
            "--org",
            "o",
            "--email",
            "i@example.org",
            "--role",
            "investigator",
        ],
        env,
    )
    assert user.returncode == 0, user.stderr
    above = _run(
        ["admin", "create-key", "--org", "o", "--email", "i@example.org", "--role", "admin"], env
    )
    assert above.returncode == 2 and "cannot exceed" in above.stderr
    made = _run(
        [
            "admin",
            "create-key",
            "--org",
            "o",
            "--email",
            "i@example.org",
            "--name",
            "field laptop",
            "--role",
            "analyst",
            "--expires",
            "30",
        ],
        env,
    )
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip().splitlines()[-1]
    prefix = key.split("_")[1]
    listed = _run(["admin", "list-keys", "--org", "o"], env)
    row = next(line for line in listed.stdout.splitlines() if prefix in line)
    assert "i@example.org" in row and "analyst" in row and "field laptop" in row
    assert key not in listed.stdout
    whole = _run(["admin", "revoke-key", "--org", "o", key], env)
    assert whole.returncode == 2 and "no key" in whole.stderr  # a prefix, as the API takes
    revoked = _run(["admin", "revoke-key", "--org", "o", prefix], env)
    assert revoked.returncode == 0 and f"key {prefix} revoked" in revoked.stdout
    bad_role = _run(
        ["admin", "create-user", "--org", "o", "--email", "x@example.org", "--role", "owner"], env
    )
    assert bad_role.returncode == 2 and "unknown role" in bad_role.stderr
    actions = _logged_actions(tmp_path)
    assert [a for a, _ in actions] == [
        "organisation.created",
        "member.added",
        "key.created",
        "member.added",
        "key.created",
        "key.revoked",
    ]
    assert {actor for _, actor in actions} == {"operator:cli"}


def test_admin_acts_within_the_organisation_named(tmp_path: Path) -> None:
    env = {"LOCKER_DATA_DIR": str(tmp_path)}
    for org in ("o", "p"):
        made = _run(["admin", "bootstrap", "--org", org, "--email", "a@example.org"], env)
        assert made.returncode == 0, made.stderr
    key = _run(["admin", "bootstrap", "--org", "q", "--email", "a@example.org"], env)
    prefix = key.stdout.strip().splitlines()[-1].split("_")[1]
    elsewhere = _run(["admin", "revoke-key", "--org", "o", prefix], env)
    assert elsewhere.returncode == 2 and f"no key {prefix}" in elsewhere.stderr
    stranger = _run(["admin", "create-key", "--org", "p", "--email", "i@example.org"], env)
    assert stranger.returncode == 2 and "no member i@example.org" in stranger.stderr
    unknown = _run(["admin", "list-keys", "--org", "nowhere"], env)
    assert unknown.returncode == 2 and "no organisation 'nowhere'" in unknown.stderr
    assert "key.revoked" not in [a for a, _ in _logged_actions(tmp_path)]


def test_admin_records_members_names(tmp_path: Path) -> None:
    env = {"LOCKER_DATA_DIR": str(tmp_path)}
    lead = ["admin", "bootstrap", "--org", "o", "--email", "a@example.org", "--name", " ليلى "]
    assert _run(lead, env).returncode == 0

    def add(email: str, *options: str) -> subprocess.CompletedProcess[str]:
        member = ["admin", "create-user", "--org", "o", "--email", email, "--role", "analyst"]
        return _run([*member, *options], env)

    made = add("i@example.org", "--name", "İbrahim Şahin", "--json")
    assert made.returncode == 0, made.stderr
    assert '"name": "İbrahim Şahin"' in made.stdout
    shown = add("j@example.org", "--name", "نور")
    assert shown.returncode == 0 and "\u2068نور\u2069 <j@example.org> role analyst" in shown.stdout
    unnamed = add("k@example.org")
    assert unnamed.returncode == 0 and " k@example.org role analyst" in unnamed.stdout
    bad = add("x@example.org", "--name", "a\x1bb")
    assert bad.returncode == 2, bad.stderr
    assert bad.stderr.strip() == "locker: name: must not hold control characters"
    added = [e for e in _logged_entries(tmp_path) if e["action"] == "member.added"]
    assert [(e["email"], e.get("name")) for e in added] == [
        ("a@example.org", "ليلى"),
        ("i@example.org", "İbrahim Şahin"),
        ("j@example.org", "نور"),
        ("k@example.org", None),
    ]


def _logged_entries(data_dir: Path) -> list[dict[str, object]]:
    """Every custody entry's fields, read from the leaves themselves."""
    runtime = open_runtime(Settings(data_dir=data_dir))
    try:
        with runtime.database.session() as session:
            leaves = session.exec(select(CustodyEntry.leaf).order_by(col(CustodyEntry.index)))
            return [decode_entry(leaf) for leaf in leaves]
    finally:
        runtime.close()


def _logged_actions(data_dir: Path) -> list[tuple[str, str]]:
    """(action, actor) of every custody entry, read from the leaves themselves."""
    return [(str(e["action"]), str(e["actor"])) for e in _logged_entries(data_dir)]
