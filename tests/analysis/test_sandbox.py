"""The confinement itself: time limit, crashes, bad output, environment, threads."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from service.evidence.analysis import Analysis, PerceptualHash, analyse_file
from service.evidence.analysis import _sandbox as sandbox
from tests.analysis.media import scene


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    path = tmp_path / "photo.jpg"
    scene(1).save(path, "JPEG")
    return path


def _child_runs(monkeypatch: pytest.MonkeyPatch, program: str) -> None:
    """Make the sandboxed process run `program` instead of the extractor."""
    monkeypatch.setattr(sandbox, "_BOOT", program)


def test_time_limit_stops_the_child(photo: Path) -> None:
    analysis = analyse_file(photo, "image/jpeg", timeout_s=0.01)
    assert analysis == Analysis.failed("extraction stopped at its time limit of 0.01 s")


def test_a_child_stuck_forever_is_stopped(monkeypatch: pytest.MonkeyPatch, photo: Path) -> None:
    _child_runs(monkeypatch, "while True: pass")
    analysis = analyse_file(photo, "image/jpeg", timeout_s=0.5)
    assert analysis.error is not None and "time limit" in analysis.error


def test_a_crashed_decoder_is_an_error(monkeypatch: pytest.MonkeyPatch, photo: Path) -> None:
    _child_runs(monkeypatch, "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)")
    analysis = analyse_file(photo, "image/jpeg")
    assert analysis.error == "the extraction process crashed (SIGSEGV) while reading the file"


def test_a_child_that_dies_without_a_result(monkeypatch: pytest.MonkeyPatch, photo: Path) -> None:
    _child_runs(monkeypatch, "raise SystemExit(1)")
    analysis = analyse_file(photo, "image/jpeg")
    assert analysis.error is not None and "status 1" in analysis.error


@pytest.mark.parametrize(
    "output",
    [
        "not json",
        json.dumps({"extracted": {}, "perceptual": [{"pdq": "zz", "quality": 1}], "error": None}),
        json.dumps({"extracted": [], "perceptual": [], "error": None}),
        json.dumps({"extracted": {}, "perceptual": [], "error": None, "extra": 1}),
    ],
)
def test_output_of_the_wrong_shape_is_an_error(
    monkeypatch: pytest.MonkeyPatch, photo: Path, output: str
) -> None:
    _child_runs(monkeypatch, f"print({output!r})")
    analysis = analyse_file(photo, "image/jpeg")
    assert analysis.error is not None and "no valid result" in analysis.error


def test_child_sees_none_of_our_environment(monkeypatch: pytest.MonkeyPatch, photo: Path) -> None:
    monkeypatch.setenv("LOCKER_S3_SECRET_KEY", "do-not-leak")
    _child_runs(
        monkeypatch,
        "import json, os; print(json.dumps("
        "{'extracted': dict(os.environ), 'perceptual': [], 'error': None}))",
    )
    environment = analyse_file(photo, "image/jpeg").extracted
    assert "LOCKER_S3_SECRET_KEY" not in environment
    assert environment.get("OPENBLAS_NUM_THREADS") == "1"


def test_missing_file_is_an_error(tmp_path: Path) -> None:
    analysis = analyse_file(tmp_path / "gone.jpg", "image/jpeg")
    assert analysis.error is not None and "No such file" in analysis.error


def test_unknown_types_are_not_read(tmp_path: Path) -> None:
    path = tmp_path / "statement.txt"
    path.write_text("I saw them at the farm.")
    assert analyse_file(path, "text/plain; charset=utf-8") == Analysis()


def test_media_type_parameters_and_case_are_ignored(photo: Path) -> None:
    assert analyse_file(photo, "Image/JPEG; q=1").extracted["format"] == "JPEG"


def test_safe_from_worker_threads(photo: Path) -> None:
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(lambda _: analyse_file(photo, "image/jpeg"), range(3)))
    assert all(r.error is None for r in results)
    assert len({r.perceptual for r in results}) == 1


def test_analysis_json_round_trip() -> None:
    analysis = Analysis(
        extracted={"kind": "video", "streams": [{"codec": "h264"}]},
        perceptual=(PerceptualHash(pdq="ab" * 32, quality=70, frame_time_s=1.5),),
        error="partial",
    )
    assert Analysis.from_json(json.loads(json.dumps(analysis.to_json()))) == analysis
