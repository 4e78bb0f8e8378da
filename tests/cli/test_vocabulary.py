"""A deployment's own vocabulary of violation categories (LOCKER_VOCABULARY_FILE)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from service.documentation.vocabulary import DEFAULT_CATEGORIES, load_vocabulary
from service.errors import ConfigurationError
from tests.cli.test_commands import _run
from tests.harness import Locker


def test_default_vocabulary() -> None:
    assert load_vocabulary(None) == frozenset(DEFAULT_CATEGORIES)
    assert {"mass_grave", "enforced_disappearance", "torture"} <= set(DEFAULT_CATEGORIES)


@pytest.mark.parametrize(
    "content",
    ["not json", "[]", '{"categories": "killing"}', "[1, 2]", json.dumps(["x" * 101])],
)
def test_a_bad_vocabulary_file_names_the_setting(tmp_path: Path, content: str) -> None:
    path = tmp_path / "vocabulary.json"
    path.write_text(content)
    with pytest.raises(ConfigurationError, match="LOCKER_VOCABULARY_FILE"):
        load_vocabulary(path)


def test_a_bad_vocabulary_file_stops_the_server_with_one_line(tmp_path: Path) -> None:
    path = tmp_path / "vocabulary.json"
    path.write_text("[]")
    done = _run(["serve"], {"LOCKER_DATA_DIR": str(tmp_path), "LOCKER_VOCABULARY_FILE": str(path)})
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "LOCKER_VOCABULARY_FILE" in lines[0], done.stderr


def test_a_custom_vocabulary_is_enforced(
    make_locker: Callable[..., Locker], tmp_path: Path
) -> None:
    path = tmp_path / "vocabulary.json"
    path.write_text(json.dumps({"categories": ["land_grab", "forced_eviction"]}))
    locker = make_locker(vocabulary_file=path)
    with locker.client() as client:
        listed = client.get("/v1/vocabulary").json()["categories"]
        ok = client.post("/v1/incidents", json={"title": "x", "categories": ["land_grab"]})
        default_term = client.post("/v1/incidents", json={"title": "x", "categories": ["torture"]})
    assert listed == ["forced_eviction", "land_grab"]
    assert ok.status_code == 201
    assert default_term.status_code == 422
    assert default_term.json()["detail"].startswith("categories")
