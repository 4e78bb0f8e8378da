"""Values as a reader sees them in a report or a spreadsheet, and which way text runs.

A value holding right-to-left letters is isolated (FSI…PDI, UAX #9 §2.7) so that the
label and punctuation around it keep their places; nested fields follow their labels.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping

FSI, PDI = "\u2068", "\u2069"  # first strong isolate and pop directional isolate
_RTL_CLASSES = frozenset({"R", "AL"})


def has_rtl(text: str) -> bool:
    """Whether `text` holds a right-to-left letter (Hebrew, Arabic, Syriac, Thaana…)."""
    return any(unicodedata.bidirectional(char) in _RTL_CLASSES for char in text)


def isolate(name: str) -> str:
    """`name` between FSI and PDI: laid out in the direction of its first strong letter,
    and without reordering the text around it (UAX #9 rules X5c, X6a)."""
    return f"{FSI}{name}{PDI}"


def label(key: object) -> str:
    """A field name as a label: `captured_at` is "captured at"."""
    return str(key).replace("_", " ")


def plain(value: object) -> str:
    """A value as a reader writes it: nested fields after their labels, lists by commas,
    null as "—", right-to-left text isolated."""
    if isinstance(value, Mapping):
        return ", ".join(f"{label(k)} {plain(v)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return ", ".join(plain(v) for v in value)
    if value is None:
        return "—"
    text = str(value).lower() if isinstance(value, bool) else str(value)
    return isolate(text) if has_rtl(text) else text
