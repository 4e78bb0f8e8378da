"""The installed `locker` command, as a user types it: every mistake is one line on
stderr and a documented exit status, never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.verifier.bundles import Built, build

LOCKER = Path(sys.executable).with_name("locker")  # the console script pip installed


def _run(
    *args: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LOCKER_")}
    return subprocess.run(
        [str(LOCKER), *map(str, args)],
        env=clean | {"COLUMNS": "100"} | (env or {}),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _one_line_usage_error(done: subprocess.CompletedProcess[str], *words: str) -> None:
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr
    for word in words:
        assert word in lines[0], lines[0]


def test_the_entry_point_is_installed() -> None:
    assert LOCKER.is_file(), f"no console script beside {sys.executable}"


def test_version_prints_one_line() -> None:
    done = _run("--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "locker 0.1.0"


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["no-such-command"], ["No such command", "no-such-command", "locker --help"]),
        (["admin", "bootstrap", "--org", "x"], ["locker admin bootstrap", "--email"]),
        (["serve", "--port", "eighty"], ["--port", "integer"]),
        (["verify", "--no-such-flag"], ["--no-such-flag"]),
        (["verify", "absent.zip"], ["no such bundle file", "absent.zip"]),
        (["upload", "absent.jpg", "--server", "http://127.0.0.1:9", "--api-key", "lk_x"],
         ["no such file", "absent.jpg"]),
    ],
    ids=["unknown command", "missing option", "bad value", "unknown option", "no bundle",
         "no file"],
)  # fmt: skip
def test_usage_errors_are_one_line_and_exit_2(
    args: list[str], words: list[str], tmp_path: Path
) -> None:
    _one_line_usage_error(_run(*args, cwd=tmp_path), *words)


def test_a_bare_locker_shows_help_and_one_error_line() -> None:
    done = _run()
    assert done.returncode == 2
    assert "Commands" in done.stdout and "verify" in done.stdout
    assert done.stderr.strip() == "locker: a command is needed (see locker --help)"


def test_an_api_key_given_as_the_verifier_key_is_never_printed(tmp_path: Path) -> None:
    secret = "lk_ab12cd34_" + "s" * 40
    sample = tmp_path / "photo.jpg"
    sample.write_bytes(b"\xff\xd8\xff\xe0 not much of a photo")
    for args in (
        ["verify", "bundle.zip", "--verifier-key", secret],
        ["verify", "--receipt", "r.json", "--verifier-key", secret],
        ["upload", sample, "--server", "http://127.0.0.1:9", "--api-key", "x", "--key", secret],
        ["upload", secret, "--server", "http://127.0.0.1:9", "--api-key", "x"],
        ["verify", secret],
    ):
        (tmp_path / "bundle.zip").write_bytes(b"")
        done = _run(*args, cwd=tmp_path)
        _one_line_usage_error(done, "looks like an API key", "--api-key")
        assert secret not in done.stderr and "ab12cd34" not in done.stderr


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    return build(tmp_path_factory.mktemp("bundle"))


def test_verify_without_a_trusted_key_is_never_verified(built: Built, tmp_path: Path) -> None:
    done = _run("verify", built.path)
    assert done.returncode == 3, done.stdout + done.stderr
    assert "INTACT, ORIGIN UNPROVEN" in done.stdout
    assert "\nVERIFIED" not in done.stdout
    as_json = json.loads(_run("verify", built.path, "--json").stdout)
    assert as_json["result"] == "intact, origin unproven" and as_json["exit_status"] == 3
    key = tmp_path / "verifier-key.txt"
    key.write_text(built.key + "\n")
    trusted = _run("verify", built.path, "--verifier-key", key, "--json")
    assert trusted.returncode == 0, trusted.stdout + trusted.stderr
    assert json.loads(trusted.stdout)["result"] == "verified"


def test_a_file_that_is_no_verifier_key_is_named_but_not_shown(
    built: Built, tmp_path: Path
) -> None:
    key = tmp_path / "verifier-key.txt"
    key.write_text("lk_secret_written_into_the_wrong_file\n")
    done = _run("verify", built.path, "--verifier-key", key)
    _one_line_usage_error(done, str(key), "holds no verifier key")
    assert "secret_written" not in done.stderr


def test_commands_that_report_speak_json(tmp_path: Path) -> None:
    env = {"LOCKER_DATA_DIR": str(tmp_path)}
    made = _run(
        "admin", "bootstrap", "--org", "منظمة", "--email", "a@example.org", "--json", env=env
    )
    assert made.returncode == 0, made.stderr
    answer = json.loads(made.stdout)
    assert answer["api_key"].startswith("lk_") and answer["organisation"] and answer["user"]
    member = json.loads(
        _run("admin", "create-user", "--org", "منظمة", "--email", "b@example.org",
             "--role", "analyst", "--json", env=env).stdout
    )  # fmt: skip
    assert member["email"] == "b@example.org" and member["role"] == "analyst"
    keys = json.loads(_run("admin", "list-keys", "--org", "منظمة", "--json", env=env).stdout)
    assert [k["owner"] for k in keys] == ["a@example.org"] and "key" not in keys[0]
    assert keys[0]["prefix"] in answer["api_key"]
    checked = _run("fsck", "--json", env=env)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    report = json.loads(checked.stdout)
    assert report["healthy"] is True and report["findings"] == [] and report["checked"]
    assert json.loads(_run("reindex", "--json", env=env).stdout) == {"incidents": 0, "evidence": 0}
