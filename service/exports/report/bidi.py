"""Right-to-left and mixed-direction text in its true visual order (Unicode UAX #9).

fpdf2 resolves the embedding level of each character correctly, but then draws its
runs in logical order, one after another: "x1/الموقع-1.jpg" came out as
"x1/-الموقع1.jpg", the digit on the wrong side of the Arabic word. `visual_runs`
finishes the algorithm (rule L2: reverse every sequence at level k or higher, from the
highest level down to the lowest odd one) and returns the runs in the order they are
drawn, left to right, each still in logical order so HarfBuzz can shape it.

Each name is a paragraph of its own, its direction that of its first strong character
(rules P2 and P3): the same as an FSI…PDI isolate, or `dir="auto"` in HTML.
"""

from __future__ import annotations

from dataclasses import dataclass

from fpdf.bidi import BidiParagraph, auto_detect_base_direction
from fpdf.enums import TextDirection

# Explicit formatting characters: they set levels, then are not drawn (rule X9).
_CONTROLS = frozenset("\u2066\u2067\u2068\u2069\u202a\u202b\u202c\u202d\u202e")


@dataclass(frozen=True, slots=True)
class Run:
    """Characters of one embedding level, in logical order; odd levels read right to left."""

    text: str
    level: int

    @property
    def rtl(self) -> bool:
        return self.level % 2 == 1


def base_rtl(text: str) -> bool:
    """Whether the first strong character of `text` is right-to-left (rules P2, P3)."""
    return auto_detect_base_direction(text) == TextDirection.RTL


def visual_runs(text: str) -> list[Run]:
    """`text`'s runs of one level, in visual order (left to right), per UAX #9 L2."""
    if not text.strip("".join(_CONTROLS)):
        return []
    base = TextDirection.RTL if base_rtl(text) else TextDirection.LTR
    characters = BidiParagraph(text=text, base_direction=base).get_characters_with_embedding_level()
    runs: list[Run] = []
    for char in characters:
        if char.character in _CONTROLS:
            continue
        if runs and runs[-1].level == char.embedding_level:
            runs[-1] = Run(runs[-1].text + char.character, char.embedding_level)
        else:
            runs.append(Run(char.character, char.embedding_level))
    highest = max(run.level for run in runs)
    lowest_odd = min((run.level for run in runs if run.rtl), default=highest + 1)
    for level in range(highest, lowest_odd - 1, -1):
        runs = _reverse_from(runs, level)
    return runs


def _reverse_from(runs: list[Run], level: int) -> list[Run]:
    """Reverse each maximal sequence of runs at `level` or higher (rule L2)."""
    out: list[Run] = []
    sequence: list[Run] = []
    for run in [*runs, Run("", -1)]:
        if run.level >= level:
            sequence.append(run)
            continue
        out.extend(reversed(sequence))
        sequence = []
        if run.level >= 0:
            out.append(run)
    return out
