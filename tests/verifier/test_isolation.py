"""The verifier stands alone: it imports nothing of the server, and the independent
checks printed in docs/verification.md work, as printed, on real bundles."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from service.core import bundle
from service.core.canonical import canonical_json
from tests.verifier.bundles import PAYLOAD_PATHS, Built, build

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "verification.md"
FORBIDDEN = (
    "fastapi",
    "starlette",
    "sqlalchemy",
    "sqlmodel",
    "minio",
    "httpx",
    "service.db",
    "service.storage",
    "service.api",
    "service.custody",
    "service.runtime",
    "service.settings",
)


def test_verifier_imports_nothing_of_the_server() -> None:
    code = (
        "import sys\n"
        "import service.client.verifier, service.client.verify_command\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r}"
        f" or m.startswith({FORBIDDEN!r})))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]", result.stdout


def _block(marker: str) -> str:
    """The fenced code block between <!-- marker:begin --> and <!-- marker:end -->."""
    text = DOC.read_text(encoding="utf-8")
    match = re.search(
        rf"<!-- {marker}:begin -->\n```\w*\n(.*?)```\n<!-- {marker}:end -->", text, re.S
    )
    assert match, f"no {marker} block in {DOC}"
    return match[1]


@pytest.fixture
def bag(tmp_path: Path) -> tuple[Built, Path]:
    """A valid bundle unzipped, with the verifier key saved beside it as locker.key."""
    built = build(tmp_path)
    with zipfile.ZipFile(built.path) as archive:
        archive.extractall(tmp_path / "x")
    folder = tmp_path / "x" / built.top
    (folder / "locker.key").write_text(built.key + "\n")
    return built, folder


def _run_script(tmp_path: Path, folder: Path) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "check_bundle.py"
    script.write_text(_block("check-script"), encoding="utf-8")
    lines = len(script.read_text().splitlines())
    assert lines <= 75, f"the documented script should stay short, has {lines} lines"
    command = [sys.executable, str(script), str(folder), str(folder / "locker.key")]
    return subprocess.run(command, capture_output=True, text=True, check=False)


def test_documented_script_refuses_a_removed_item(tmp_path: Path, bag: tuple[Built, Path]) -> None:
    """Finding 4 by hand: file, record and items.json entry gone, as a forger would."""
    built, folder = bag
    (folder / PAYLOAD_PATHS[1]).unlink()
    (folder / f"data/records/evidence/{built.evidence_ids[1]}.json").unlink()
    items = json.loads((folder / bundle.ITEMS_PATH).read_bytes())
    items["evidence"] = items["evidence"][:1]
    (folder / bundle.ITEMS_PATH).write_bytes(canonical_json(items))
    result = _run_script(tmp_path, folder)
    assert result.returncode != 0 and "FAILED" in result.stderr, result.stdout


def test_documented_script_accepts_a_valid_bundle(tmp_path: Path, bag: tuple[Built, Path]) -> None:
    result = _run_script(tmp_path, bag[1])
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("OK: ")


@pytest.mark.parametrize(
    "tamper", ["evidence", "entry", "proof", "checkpoint", "record", "report", "bag-info"]
)
def test_documented_script_rejects_tampering(
    tmp_path: Path, bag: tuple[Built, Path], tamper: str
) -> None:
    built, folder = bag
    target = {
        "evidence": PAYLOAD_PATHS[0],
        "entry": bundle.entry_path(built.entry_indexes[2]),
        "proof": bundle.PROOFS_PATH,
        "checkpoint": bundle.CHECKPOINT_PATH,
        "record": PAYLOAD_PATHS[2],
        "report": "report/report.html",
        "bag-info": "bag-info.txt",
    }[tamper]
    path = folder / target
    data = path.read_bytes()
    old = {"evidence": data[:1], "entry": b"user:7", "proof": b'"', "checkpoint": b"\n1"}
    old |= {"record": b"0", "report": b"<body>", "bag-info": b"2025-03-02"}
    new = {"evidence": b"#", "entry": b"user:8", "proof": b'"AAAA', "checkpoint": b"\n2"}
    new |= {"record": b"1", "report": b"<body>forged", "bag-info": b"2024-03-02"}
    path.write_bytes(data.replace(old[tamper], new[tamper], 1))
    assert path.read_bytes() != data
    result = _run_script(tmp_path, folder)
    assert result.returncode != 0, result.stdout


def _openssl_3() -> bool:
    openssl = shutil.which("openssl")
    if openssl is None:
        return False
    version = subprocess.run([openssl, "version"], capture_output=True, text=True).stdout
    return version.startswith("OpenSSL 3")


@pytest.mark.skipif(not _openssl_3() or shutil.which("bash") is None, reason="needs OpenSSL 3")
@pytest.mark.parametrize("tampered", [False, True])
def test_documented_openssl_steps(bag: tuple[Built, Path], tampered: bool) -> None:
    _, folder = bag
    if tampered:
        note = folder / bundle.CHECKPOINT_PATH
        note.write_bytes(note.read_bytes().replace(b"\n1", b"\n2", 1))
    result = subprocess.run(
        ["bash", "-e", "-c", _block("openssl-check")],
        cwd=folder,
        capture_output=True,
        text=True,
        check=False,
    )
    assert (result.returncode != 0) == tampered, result.stdout + result.stderr
