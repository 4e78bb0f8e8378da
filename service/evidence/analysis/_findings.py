"""What an extractor has read so far, and how untrusted values become bounded JSON."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import datetime

from service.evidence.analysis.result import JSONValue, PerceptualHash

# A metadata field is a name, a date or a short phrase; anything longer is cut, so a
# hostile file cannot fill the record (or the database) through one field.
MAX_TEXT = 512
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


@dataclass
class Findings:
    """Filled in by an extractor as it reads, so a failure half-way keeps the first half."""

    extracted: dict[str, JSONValue] = field(default_factory=dict)
    perceptual: list[PerceptualHash] = field(default_factory=list)

    def put(self, key: str, value: JSONValue) -> None:
        """Record `value` under `key` unless it is None or empty."""
        if value is not None and value != "" and value != {} and value != []:
            self.extracted[key] = value


def text(value: object) -> str | None:
    """A metadata value as one bounded line of text, or None if it holds none."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    if not isinstance(value, str):
        return None
    cleaned = _CONTROL.sub("", value.replace("\n", " ").replace("\r", " ")).strip()
    return cleaned[:MAX_TEXT] or None


def number(value: object, *, digits: int = 3) -> float | None:
    """A finite number rounded to `digits` decimals, or None."""
    try:
        result = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    return round(result, digits) if math.isfinite(result) else None


def integer(value: object) -> int | None:
    """A whole number, or None."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def iso_datetime(raw: str | None, fmt: str, offset: str | None = None) -> str | None:
    """`raw` parsed with `fmt` as ISO 8601, with `offset` (±HH:MM) when given.

    A value that does not parse is kept as the file wrote it: it is still what the bytes say.
    """
    if raw is None:
        return None
    try:
        parsed = datetime.strptime(raw, fmt)
    except ValueError:
        return raw
    stamp = parsed.isoformat()
    if offset is not None and re.fullmatch(r"[+-]\d\d:\d\d", offset):
        return stamp + offset
    return stamp


def one_line(exc: BaseException) -> str:
    """An exception as one bounded line for `Analysis.error`."""
    message = text(str(exc)) or ""
    name = type(exc).__name__
    return f"{name}: {message}"[:MAX_TEXT] if message else name
