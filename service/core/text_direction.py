"""Which way text runs, and isolating a name so it keeps its own direction (UAX #9)."""

from __future__ import annotations

import unicodedata

FSI, PDI = "\u2068", "\u2069"  # first strong isolate and pop directional isolate (§2.7)
_RTL_CLASSES = frozenset({"R", "AL"})


def has_rtl(text: str) -> bool:
    """Whether `text` holds a right-to-left letter (Hebrew, Arabic, Syriac, Thaana…)."""
    return any(unicodedata.bidirectional(char) in _RTL_CLASSES for char in text)


def isolate(name: str) -> str:
    """`name` between FSI and PDI: laid out in the direction of its first strong letter,
    and without reordering the text around it (UAX #9 rules X5c, X6a)."""
    return f"{FSI}{name}{PDI}"
