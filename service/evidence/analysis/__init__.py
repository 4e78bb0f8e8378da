"""What the bytes of an evidence file say about themselves: metadata and perceptual hashes.

Trust model: the file is hostile until proven otherwise. It is parsed only in a separate
process with no environment, an address-space, CPU and wall-clock limit, no file writes,
and only the decoder for its sniffed type; whatever goes wrong there comes back as
`Analysis.error`, never as an exception or a crash of the locker. What comes back is
bounded JSON, recorded as the file's claim about itself, never as established fact.
"""

from service.evidence.analysis._media_types import analysable
from service.evidence.analysis._sandbox import analyse_file
from service.evidence.analysis.pdq import (
    MIN_USEFUL_QUALITY,
    best_match_distance,
    pdq_distance,
)
from service.evidence.analysis.result import Analysis, JSONValue, PerceptualHash

__all__ = [
    "MIN_USEFUL_QUALITY",
    "Analysis",
    "JSONValue",
    "PerceptualHash",
    "analysable",
    "analyse_file",
    "best_match_distance",
    "pdq_distance",
]
