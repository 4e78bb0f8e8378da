"""PDQ perceptual hashes: computing one from pixels, and comparing two.

PDQ is Meta's 256-bit perceptual hash for photos (ThreatExchange `pdq/`, explained in
`hashing/hashing.pdf`); `_pdq_hashing` computes it exactly as Meta's C++ reference code
does. Hashes are written as Meta writes them: 64 hex digits, bit 255 first.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from service.errors import InvalidInput
from service.evidence.analysis.result import PDQ_HEX_DIGITS, PerceptualHash

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

# Below this quality a hash describes a nearly featureless picture (a black frame, a flat
# wall) and matches too much; ThreatExchange's vPDQ ignores such frames the same way.
MIN_USEFUL_QUALITY = 50

# Meta's reference file hasher (pdq/cpp/io/pdqio.cpp) first resizes anything larger to
# 512×512; doing the same keeps our hashes comparable with theirs and bounds the work.
HASHING_SIZE = 512


def pdq_distance(a: str, b: str) -> int:
    """The Hamming distance (0–256) between two PDQ hashes in hex."""
    return (_bits(a) ^ _bits(b)).bit_count()


def best_match_distance(
    a: Iterable[PerceptualHash],
    b: Iterable[PerceptualHash],
    *,
    min_quality: int = MIN_USEFUL_QUALITY,
) -> int | None:
    """The smallest distance between any hash of `a` and any of `b`, ignoring hashes below
    `min_quality`; None when either side has no usable hash.

    For two images this is simply their distance; for videos, their closest keyframes.
    """
    usable_b = [h.pdq for h in b if h.quality >= min_quality]
    distances = [pdq_distance(x.pdq, y) for x in a if x.quality >= min_quality for y in usable_b]
    return min(distances, default=None)


def hash_rgb(pixels: npt.NDArray[np.uint8], *, frame_time_s: float | None = None) -> PerceptualHash:
    """The PDQ hash of an RGB image given as a height × width × 3 array of bytes."""
    # Imported here: numpy is needed only in the child process that reads the pixels.
    from service.evidence.analysis._pdq_hashing import pdq_of_rgb

    pdq, quality = pdq_of_rgb(pixels)
    return PerceptualHash(pdq=pdq, quality=quality, frame_time_s=frame_time_s)


def _bits(pdq: str) -> int:
    if len(pdq) != PDQ_HEX_DIGITS:
        raise InvalidInput(f"a PDQ hash has {PDQ_HEX_DIGITS} hex digits, got {len(pdq)}")
    if not all(c in _HEX for c in pdq):
        raise InvalidInput(f"a PDQ hash is hexadecimal, got {pdq!r}")
    return int(pdq, 16)


_HEX = frozenset("0123456789abcdefABCDEF")
