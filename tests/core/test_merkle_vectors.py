"""Known-answer vectors from transparency-dev/merkle (Apache-2.0), kept in testdata/merkle.

Each good proof comes with corrupted variants that must be rejected. The vectors ship
with the tests (testdata/merkle/README.md says where they came from); a missing folder
fails the test rather than skipping it.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from service.core import merkle
from service.errors import VerificationError

VECTORS = Path(__file__).resolve().parent / "testdata" / "merkle"


def _vector_files(kind: str) -> list[Any]:
    if not VECTORS.is_dir():
        return [pytest.param(None, id="missing")]
    files = sorted((VECTORS / kind).rglob("*.json"))
    return [pytest.param(f, id=str(f.relative_to(VECTORS / kind))) for f in files]


def _load(path: Path | None) -> dict[str, Any]:
    if path is None:
        pytest.fail(f"Merkle test vectors not found at {VECTORS}")
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def _b64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


def _proof(data: dict[str, Any]) -> list[bytes]:
    return [_b64(element) for element in data["proof"] or []]


def _expect(want_error: bool, check: Callable[[], None]) -> None:
    if want_error:
        with pytest.raises(VerificationError):
            check()
    else:
        check()


@pytest.mark.parametrize("path", _vector_files("inclusion"))
def test_inclusion_vector(path: Path | None) -> None:
    data = _load(path)

    def check() -> None:
        merkle.verify_inclusion(
            index=data["leafIdx"],
            size=data["treeSize"],
            leaf_hash=_b64(data["leafHash"]),
            proof=_proof(data),
            root=_b64(data["root"]),
        )

    _expect(data["wantErr"], check)


@pytest.mark.parametrize("path", _vector_files("consistency"))
def test_consistency_vector(path: Path | None) -> None:
    data = _load(path)

    def check() -> None:
        merkle.verify_consistency(
            first=data["size1"],
            second=data["size2"],
            first_root=_b64(data["root1"]),
            second_root=_b64(data["root2"]),
            proof=_proof(data),
        )

    _expect(data["wantErr"], check)


def test_vectors_cover_both_outcomes() -> None:
    """Guard against a vacuous pass: the folder holds good and bad proofs of both kinds."""
    files = list(VECTORS.rglob("*.json"))
    if not files:
        pytest.fail(f"Merkle test vectors not found at {VECTORS}")
    outcomes = {
        (f.relative_to(VECTORS).parts[0], json.loads(f.read_text())["wantErr"]) for f in files
    }
    assert {("inclusion", False), ("inclusion", True)} <= outcomes
    assert {("consistency", False), ("consistency", True)} <= outcomes
