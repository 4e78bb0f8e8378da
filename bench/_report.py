"""Result tables for the benchmarks: what was measured, against which target, met or not."""

from __future__ import annotations

import math
import os
import platform
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True, slots=True, kw_only=True)
class Row:
    """One line of a result table; `met` is None for figures that have no target."""

    label: str
    value: str
    target: str = ""
    met: bool | None = None


def percentile(samples: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile (`fraction` in (0, 1]) of non-empty `samples`."""
    ordered = sorted(samples)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def _memory_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) / 1024**2
    return math.nan


def _revision() -> str:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, check=False
        ).stdout.strip()

    dirty = " (with uncommitted changes)" if git("status", "--porcelain", "service") else ""
    return f"{git('rev-parse', '--short', 'HEAD')}{dirty}"


def _cpu_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs since boot, from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def _busy_share(seconds: float = 1.0) -> float:
    """The share of all CPUs busy over the next `seconds`, before the benchmark starts."""
    busy, total = _cpu_jiffies()
    time.sleep(seconds)
    busy_after, total_after = _cpu_jiffies()
    return (busy_after - busy) / max(1, total_after - total)


def print_context() -> None:
    """Machine, date, code revision and other load, so a result can be placed."""
    print(f"machine: {os.cpu_count()} cores, {_cpu_model()}, {_memory_gib():.0f} GiB RAM")
    print(f"date:    {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; service at {_revision()}")
    busy = _busy_share()
    print(f"load:    {busy:.0%} of the CPUs busy before starting")
    if busy > 0.1:
        print("WARNING: other processes are using the CPUs; the results will be noisy")


def print_table(title: str, rows: Sequence[Row]) -> bool:
    """Print the table; True when every row with a target met it."""
    widths = [max(len(getattr(r, f)) for r in rows) for f in ("label", "value", "target")]
    print(f"\n{title}")
    for row in rows:
        verdict = {None: "", True: "met", False: "MISSED"}[row.met]
        cells = (row.label, row.value, row.target)
        print("  " + "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)), verdict)
    return all(row.met is not False for row in rows)
