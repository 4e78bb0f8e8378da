"""The README works as written: its walk-through runs, command by command, against a
real `locker serve`, and its settings table lists every setting."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from service.settings import Settings
from tests.harness import free_port
from tests.independent import verifier as independent

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
_BLOCK = re.compile(r"^```sh walkthrough\n(.*?)^```", re.DOTALL | re.MULTILINE)
_ADDRESS = "127.0.0.1:8000"


def walkthrough() -> str:
    """The README's walk-through blocks, in order, as one script."""
    blocks = _BLOCK.findall(README)
    assert len(blocks) >= 3, "the README's walk-through blocks are marked ```sh walkthrough"
    return "\n".join(blocks)


def test_the_walkthrough_uses_one_address() -> None:
    script = walkthrough()
    assert script.count(_ADDRESS) == 1, "the walk-through names the server's address once"
    assert re.findall(r"127\.0\.0\.1:\d+", script) == [_ADDRESS]


def test_the_settings_table_lists_every_setting() -> None:
    table = "\n".join(line for line in README.splitlines() if line.startswith("| `LOCKER_"))
    missing = [f"LOCKER_{name.upper()}" for name in Settings.model_fields]
    missing = [name for name in missing if f"`{name}`" not in table]
    assert not missing, f"README's settings table lacks {missing}"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    """`locker serve` on embedded defaults in `tmp_path`, as the Quick start runs it."""
    (tmp_path / ".venv").symlink_to(Path(sys.prefix))  # the README calls .venv/bin/…
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOCKER_")}
    with (tmp_path / "server.log").open("w") as log:  # the child keeps its own copy
        process = subprocess.Popen(
            [str(tmp_path / ".venv" / "bin" / "locker"), "serve", "--port", str(port)],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):  # waits for start-up; asserts nothing about its speed
            if process.poll() is not None:
                pytest.fail((tmp_path / "server.log").read_text())
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_the_walkthrough_runs_verbatim(server: str, tmp_path: Path) -> None:
    script = walkthrough().replace(f"http://{_ADDRESS}", server)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOCKER_")}
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    assert "receipt verified" in done.stdout and "\nVERIFIED" in done.stdout
    # The proof the walk-through fetched is for the upload's own entry, and holds.
    upload = json.loads((tmp_path / "upload.json").read_text())
    proof = json.loads((tmp_path / "proof.json").read_text())
    assert proof["index"] == upload["custody_index"] > 2  # bootstrap writes entries 0-2
    key = (tmp_path / "verifier-key.txt").read_text().strip()
    _, size, root = independent.open_checkpoint((tmp_path / "checkpoint.txt").read_text(), key)
    assert proof["tree_size"] == size
    trail = json.loads((tmp_path / "custody.json").read_text())
    entry = next(e for e in trail["entries"] if e["index"] == upload["custody_index"])
    assert entry["fields"]["action"] == "evidence.ingested"
    hashes = [base64.b64decode(h) for h in proof["hashes"]]
    leaf = base64.b64decode(entry["leaf_b64"])
    independent.verify_inclusion(leaf, proof["index"], size, hashes, root)
    # The audit CSV names the uploader; the bundle holds its report.
    audit = (tmp_path / "audit.csv").read_text(encoding="utf-8")
    assert "\u2068نور الهدى\u2069 <lead@example.org>" in audit
    assert list((tmp_path / "bundle").glob("export-*/report/report.pdf"))
