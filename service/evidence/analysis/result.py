"""What analysing one file yields, and its JSON form between the sandbox and the caller."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, TypeAlias

# What `extracted` may hold: JSON values only, so it can be stored and compared as-is.
JSONValue: TypeAlias = "str | int | float | bool | list[JSONValue] | dict[str, JSONValue] | None"

PDQ_HEX_DIGITS = 64


@dataclass(frozen=True, kw_only=True)
class PerceptualHash:
    """One PDQ hash (Meta's 256-bit hex form) with its quality 0–100.

    `frame_time_s` is the video time of the hashed keyframe; None for a still image.
    """

    pdq: str
    quality: int
    frame_time_s: float | None = None


@dataclass(frozen=True, kw_only=True)
class Analysis:
    """What the bytes of one file say about themselves.

    `extracted` is metadata read from the file (never trusted, never interpreted beyond
    decoding); `perceptual` the PDQ hashes for near-duplicate matching; `error` one line
    when extraction failed, in which case the other fields hold whatever was read first.
    """

    extracted: dict[str, JSONValue] = field(default_factory=dict)
    perceptual: tuple[PerceptualHash, ...] = ()
    error: str | None = None

    @classmethod
    def failed(cls, reason: str) -> Analysis:
        """An analysis that read nothing, for `reason`."""
        return cls(error=reason)

    def to_json(self) -> dict[str, JSONValue]:
        """The JSON form the sandboxed process prints."""
        return {
            "extracted": self.extracted,
            "perceptual": [
                {"pdq": h.pdq, "quality": h.quality, "frame_time_s": h.frame_time_s}
                for h in self.perceptual
            ],
            "error": self.error,
        }

    @classmethod
    def from_json(cls, data: Any) -> Analysis:
        """Parse the sandbox's output; raises ValueError on anything but the expected shape."""
        if not isinstance(data, dict) or set(data) != {"extracted", "perceptual", "error"}:
            raise ValueError("result is not an analysis object")
        extracted, hashes, error = data["extracted"], data["perceptual"], data["error"]
        if not isinstance(extracted, dict) or not isinstance(hashes, list):
            raise ValueError("result fields have the wrong types")
        if error is not None and not isinstance(error, str):
            raise ValueError("result error is not a string")
        return cls(
            extracted=extracted,
            perceptual=tuple(_perceptual_from_json(h) for h in hashes),
            error=error,
        )


def _perceptual_from_json(data: Any) -> PerceptualHash:
    if not isinstance(data, dict):
        raise ValueError("perceptual hash is not an object")
    pdq, quality, time = data.get("pdq"), data.get("quality"), data.get("frame_time_s")
    if not (isinstance(pdq, str) and len(pdq) == PDQ_HEX_DIGITS and _is_hex(pdq)):
        raise ValueError("perceptual hash is not 64 hexadecimal digits")
    if not (isinstance(quality, int) and 0 <= quality <= 100):
        raise ValueError("perceptual hash quality is not 0–100")
    if time is not None and not (isinstance(time, int | float) and math.isfinite(time)):
        raise ValueError("perceptual hash frame time is not a number")
    return PerceptualHash(pdq=pdq, quality=quality, frame_time_s=time)


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdef" for c in text)
