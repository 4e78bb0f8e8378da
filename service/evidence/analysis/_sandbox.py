"""The trusted side: run one extraction in a confined child process and judge its answer."""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
from pathlib import Path

import service
from service.evidence.analysis._media_types import extractor_kind
from service.evidence.analysis.result import Analysis

# The directory that holds the `service` package, so the child runs this very code.
_CODE_ROOT = str(Path(service.__file__).resolve().parent.parent)
_BOOT = (
    "import sys; sys.path.insert(0, sys.argv[1]); "
    "from service.evidence.analysis._child import main; main(sys.argv[2:])"
)
# The child gets none of our environment (secrets, proxies, library paths) and one thread
# per numerical library: each thread's stack and malloc arena would count against its limit.
_CHILD_ENV = {
    "LC_ALL": "C.UTF-8",
    "OPENBLAS_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "MALLOC_ARENA_MAX": "2",
}


def analyse_file(
    path: Path, media_type: str, *, timeout_s: float = 20, memory_mb: int = 1024
) -> Analysis:
    """What the file at `path`, sniffed as `media_type`, says about itself.

    The file is read by a separate process limited to `memory_mb` of address space and
    stopped after `timeout_s` seconds of wall-clock time (its start included). Every
    failure — a corrupt or hostile file, a limit reached, a crashed decoder — comes back
    as `Analysis.error`, never as an exception. Blocks; safe to call from any thread.
    A media type no extractor reads gives an empty analysis without starting a process.
    """
    media_type = media_type.split(";", 1)[0].strip().lower()
    if extractor_kind(media_type) is None:
        return Analysis()
    command = [
        sys.executable, "-I", "-B", "-c", _BOOT, _CODE_ROOT,
        str(path), media_type, str(memory_mb), str(math.ceil(timeout_s) + 1),
    ]  # fmt: skip
    try:
        child = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=_CHILD_ENV,
            cwd="/",
            start_new_session=True,
        )
    except OSError as exc:
        return Analysis.failed(f"could not start the extraction process: {exc}")
    try:
        output, _ = child.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        child.kill()
        child.communicate()
        return Analysis.failed(f"extraction stopped at its time limit of {timeout_s:g} s")
    if child.returncode != 0:
        return Analysis.failed(_death(child.returncode, memory_mb))
    try:
        return Analysis.from_json(json.loads(output))
    except ValueError as exc:  # json.JSONDecodeError is a ValueError
        return Analysis.failed(f"the extraction process gave no valid result: {exc}")


def _death(returncode: int, memory_mb: int) -> str:
    """Why a child that printed no result ended."""
    if returncode >= 0:
        # The child reports every Python-level failure itself, so this is the interpreter
        # failing outside that: typically memory running out before or after the file.
        return (
            f"the extraction process exited with status {returncode} "
            f"(probably out of memory: limit {memory_mb} MB)"
        )
    number = -returncode
    if number == signal.SIGXCPU:
        return "extraction stopped at its CPU time limit"
    try:
        name = signal.Signals(number).name
    except ValueError:
        name = f"signal {number}"
    return f"the extraction process crashed ({name}) while reading the file"
