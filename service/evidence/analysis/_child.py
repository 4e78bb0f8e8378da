"""The sandboxed side: confine this process, read one file, print one JSON analysis.

Run only by `_sandbox` as `python -I -B -c …`; it reads nothing but its arguments and the
file, writes nothing but its result to standard output, and reports every failure of the
extraction inside that result.
"""

from __future__ import annotations

import json
import os
import resource
import signal
from collections.abc import Callable
from pathlib import Path

from service.evidence.analysis._findings import Findings, one_line
from service.evidence.analysis._media_types import extractor_kind
from service.evidence.analysis.result import Analysis

_Extractor = Callable[[Path, str, Findings], None]


def main(argv: list[str]) -> None:
    """Analyse `argv` = [path, media type, memory limit in MB, CPU limit in s]; print JSON."""
    path, media_type = argv[0], argv[1]
    memory_mb, cpu_s = int(argv[2]), int(argv[3])
    _confine(memory_mb=memory_mb, cpu_s=cpu_s)
    result = os.dup(1)
    os.dup2(2, 1)  # whatever a C library prints must not corrupt the result
    findings = Findings()
    error = _extract(Path(path), media_type, findings, memory_mb=memory_mb)
    analysis = Analysis(
        extracted=findings.extracted, perceptual=tuple(findings.perceptual), error=error
    )
    try:
        payload = json.dumps(analysis.to_json(), allow_nan=False, ensure_ascii=False)
    except ValueError as exc:  # a value JSON cannot carry (NaN) slipped through
        payload = json.dumps(Analysis.failed(one_line(exc)).to_json())
    with os.fdopen(result, "wb") as out:
        out.write(payload.encode())


def _extract(path: Path, media_type: str, findings: Findings, *, memory_mb: int) -> str | None:
    """Run the extractor for `media_type` over `path`; the one-line failure, if any."""
    try:
        extract = _extractor(media_type)
    except (ImportError, OSError) as exc:  # a decoder library could not even load
        return f"could not load the decoder within {memory_mb} MB: {one_line(exc)[:200]}"
    try:
        extract(path, media_type, findings)
    except MemoryError:
        return f"out of memory: reading the file needs more than {memory_mb} MB"
    except BaseException as exc:  # a hostile file may make a library raise anything
        # The record should not carry where a temporary copy happened to be.
        return one_line(exc).replace(str(path), "the file")
    return None


def _confine(*, memory_mb: int, cpu_s: int) -> None:
    """Limits the kernel enforces on this process, set before the file is opened."""
    memory = memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    # The parent's wall-clock limit is the one that counts; this one outlives the parent.
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 1))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a crash must not dump evidence to disk
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))  # nothing here writes files
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write then fails instead of killing us


def _extractor(media_type: str) -> _Extractor:
    # Imported here, after _confine, so a decoder library loads under the limits.
    kind = extractor_kind(media_type)
    if kind == "image":
        from service.evidence.analysis._image import analyse_image

        return analyse_image
    if kind == "pdf":
        from service.evidence.analysis._pdf import analyse_pdf

        return analyse_pdf
    if kind == "office":
        from service.evidence.analysis._office import analyse_office

        return analyse_office
    if kind == "audiovisual":
        from service.evidence.analysis._audiovisual import analyse_audiovisual

        return analyse_audiovisual
    raise ValueError(f"no extractor reads {media_type}")
