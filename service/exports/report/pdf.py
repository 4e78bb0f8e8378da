"""The chain-of-custody report as PDF, with right-to-left text shaped and ordered.

A PDF viewer draws glyphs where the file says, so shaping (Arabic joined letter forms)
and the Unicode bidirectional algorithm (UAX #9) are applied here, when the PDF is
written: `bidi.visual_runs` puts each line's runs in visual order (fpdf2 alone draws
them in logical order), and fpdf2's text shaping runs HarfBuzz on each run.
The fonts ship with the locker, so a server with no system fonts renders the same
report: IBM Plex Sans Arabic (SIL Open Font License 1.1, `fonts/OFL.txt`) covers
Arabic, Persian and Urdu letters and basic Latin; a character it lacks is drawn from
the first fallback that has it, Noto Sans Hebrew, then Noto Sans for Latin Extended
(İ, Ş, ğ), Greek and Cyrillic (both OFL 1.1, `fonts/NotoSans-OFL.txt`). Without them,
fpdf2 would leave those characters out of the report, or draw empty boxes.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import BinaryIO

from fpdf import FPDF
from fpdf.enums import Align, MethodReturnValue, XPos, YPos

from service.exports.report.bidi import base_rtl, visual_runs
from service.exports.report.content import (
    ACQUISITION_COLUMNS,
    PEOPLE_COLUMNS,
    PEOPLE_HEADING,
    TIMELINE_COLUMNS,
    TITLE,
    VERIFY_HEADING,
    VERIFY_STEPS,
    ItemSection,
    item_section,
    people_rows,
    spans,
)

FONTS = Path(__file__).parent / "fonts"
_FAMILY = "plex"
# Family, regular and bold file of each fallback, in the order they are tried.
_FALLBACKS = (
    ("noto-hebrew", "NotoSansHebrew-Regular.ttf", "NotoSansHebrew-Bold.ttf"),
    ("noto", "NotoSans-Regular.ttf", "NotoSans-Bold.ttf"),
)
_BODY = 8.5
_LINE = 4.5
_LITERAL = (20, 60, 140)  # RGB of commands and paths in the verification steps
_PAGES = "{pages}"  # stands for the page count; wider than "99999", so it fits
_FIRST_SHAPED = 0x0300
_PAD = 1.0  # mm between a cell's rule and its text
_KEEP_WITH_NEXT = 25  # mm: a heading is not left alone at the foot of a page
_LRI, _RLI, _PDI = "\u2066", "\u2067", "\u2069"  # isolates, for runs in visual order


class _Document(FPDF):
    def __init__(self, export_id: str) -> None:
        super().__init__(format="A4")
        self._export_id = export_id
        self.add_font(_FAMILY, "", FONTS / "IBMPlexSansArabic-Regular.ttf")
        self.add_font(_FAMILY, "B", FONTS / "IBMPlexSansArabic-Bold.ttf")
        for family, regular, bold in _FALLBACKS:
            self.add_font(family, "", FONTS / regular)
            self.add_font(family, "B", FONTS / bold)
        self.set_fallback_fonts([family for family, _, _ in _FALLBACKS])
        self.set_title(f"{TITLE} — export {export_id}")
        self.set_creator("evidence-locker")
        self.set_lang("en")
        self.alias_nb_pages(_PAGES)
        self.set_margins(15, 15)
        self.set_auto_page_break(True, margin=15)
        self.set_font(_FAMILY, size=_BODY)

    def footer(self) -> None:
        self.set_y(-12)
        self.set_font(_FAMILY, size=7)
        label = f"{TITLE} · export {self._export_id} · page {self.page_no()} of {_PAGES}"
        self.cell(0, 5, _shape(self, label), align=Align.C)
        self.set_font(_FAMILY, size=_BODY)


def write_pdf_report(
    out: BinaryIO,
    *,
    export_id: str,
    records: Sequence[Mapping[str, object]],
    timelines: Mapping[str, Sequence[Mapping[str, object]]],
    checkpoint: str,
    people: Mapping[str, str] | None = None,
) -> None:
    """Write the report (same content as the HTML one) to `out`."""
    names = people or {}
    pdf = _Document(export_id)
    pdf.add_page()
    _heading(pdf, TITLE, size=16)
    _paragraph(pdf, f"Export {export_id}")
    named = people_rows(records, timelines, names)
    if named:
        _heading(pdf, PEOPLE_HEADING, size=13)
        _table(pdf, (90, 90), named, header=PEOPLE_COLUMNS)
    for record in records:
        _item(pdf, item_section(record, timelines.get(str(record["id"]), ()), names))
    _heading(pdf, "Checkpoint", size=13)
    _paragraph(pdf, checkpoint.rstrip("\n"))
    _how_to_verify(pdf)
    pdf.output(out)


def _direction(text: str) -> Align:
    """Right-aligned when the first strong character is right-to-left (UAX #9 P2)."""
    return Align.R if base_rtl(text) else Align.L


def _shape(pdf: FPDF, text: str, width: float | None = None) -> str:
    """The text to draw, with HarfBuzz shaping on only when it needs it (it is costly).

    Below U+0300 (Latin, IPA, spacing modifiers) each character is one glyph, left to
    right; combining marks, right-to-left and complex scripts all lie above. Text with
    right-to-left letters is first broken into lines `width` wide (UAX #9 reorders each
    line after breaking), then each line comes back in visual order, each run isolated
    in its direction (LRI or RLI … PDI), so that fpdf2, told the line is left to right,
    draws the runs in the order given and shapes each one its own way.
    """
    shaped = any(ord(char) >= _FIRST_SHAPED for char in text)
    if not shaped or not any(unicodedata.bidirectional(c) in ("R", "AL") for c in text):
        pdf.set_text_shaping(shaped)
        return text
    pdf.set_text_shaping(True, direction="ltr")
    lines = text.split("\n")
    if width is not None:
        lines = [part for line in lines for part in _wrap(pdf, line, width - 2 * pdf.c_margin)]
    return "\n".join(_visual(line) for line in lines)


def _wrap(pdf: FPDF, line: str, width: float) -> list[str]:
    """`line` broken at spaces into pieces no wider than `width`, in logical order."""
    pieces: list[str] = []
    current = ""
    for word in line.split(" "):
        candidate = f"{current} {word}" if current else word
        if current and pdf.get_string_width(_visual(candidate)) > width:
            pieces.append(current)
            candidate = word
        current = candidate
    return [*pieces, current]


def _visual(line: str) -> str:
    return "".join(f"{_RLI if run.rtl else _LRI}{run.text}{_PDI}" for run in visual_runs(line))


def _heading(pdf: FPDF, text: str, *, size: float) -> None:
    if pdf.will_page_break(_KEEP_WITH_NEXT):
        pdf.add_page()
    pdf.ln(2)
    pdf.set_font(_FAMILY, "B", size)
    drawn = _shape(pdf, text, pdf.epw)
    pdf.multi_cell(
        0, size * 0.55, drawn, align=_direction(text), new_x=XPos.LMARGIN, new_y=YPos.NEXT
    )
    pdf.set_font(_FAMILY, "", _BODY)
    pdf.ln(1)


def _paragraph(pdf: FPDF, text: str) -> None:
    pdf.multi_cell(0, _LINE, _shape(pdf, text, pdf.epw), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(2)


def _item(pdf: FPDF, section: ItemSection) -> None:
    _heading(pdf, section.heading, size=13)
    _heading(pdf, "Identity", size=10)
    _table(pdf, (34, 146), section.identity, bold_first_column=True)
    _heading(pdf, "Acquisition", size=10)
    _table(pdf, (36, 40, 40, 64), section.acquisition, header=ACQUISITION_COLUMNS)
    _heading(pdf, "Timeline", size=10)
    _table(pdf, (12, 50, 60, 58), section.timeline, header=TIMELINE_COLUMNS)


def _table(
    pdf: FPDF,
    widths: tuple[int, ...],
    rows: Iterable[Sequence[str]],
    *,
    header: Sequence[str] = (),
    bold_first_column: bool = False,
) -> None:
    """A ruled table whose header is repeated on each page it runs onto."""
    if header:
        _row(pdf, widths, header, bold=len(header))
    for values in rows:
        _row(pdf, widths, values, bold=int(bold_first_column), header=header)
    pdf.ln(3)


def _row(
    pdf: FPDF,
    widths: Sequence[int],
    values: Sequence[str],
    *,
    bold: int,
    header: Sequence[str] = (),
) -> None:
    """One row, its first `bold` cells in bold; on a new page, after the header."""
    cells = list(zip(widths, values, strict=True))
    lines = [_lines(pdf, width, value, bold=n < bold) for n, (width, value) in enumerate(cells)]
    height = max(lines) * _LINE + 2 * _PAD
    if pdf.will_page_break(height):
        pdf.add_page()
        if header:
            _row(pdf, widths, header, bold=len(header))
    x, y = pdf.l_margin, pdf.get_y()
    for n, (width, value) in enumerate(cells):
        pdf.rect(x, y, width, height)
        pdf.set_font(_FAMILY, "B" if n < bold else "", _BODY)
        pdf.set_xy(x + _PAD, y + _PAD)
        # One line is drawn with one shaping call; fpdf2's line breaker, which
        # multi_cell uses, shapes the text again for every character it adds.
        drawn = _shape(pdf, value, width - 2 * _PAD)
        draw = pdf.cell if lines[n] == 1 else pdf.multi_cell
        draw(width - 2 * _PAD, _LINE, drawn, align=_direction(value))
        # fpdf2 draws the isolates around right-to-left runs from a fallback font and
        # then takes the page's font for its own again without saying so: the next
        # cell's text came out in the fallback font, unreadable. Set the font anew.
        pdf.current_font_is_set_on_page = False
        x += width
    pdf.set_font(_FAMILY, "", _BODY)
    pdf.set_xy(pdf.l_margin, y + height)


def _lines(pdf: FPDF, width: float, text: str, *, bold: bool) -> int:
    """How many lines `text` takes in a cell `width` wide."""
    pdf.set_font(_FAMILY, "B" if bold else "", _BODY)
    inner = width - 2 * _PAD
    drawn = _shape(pdf, text, inner)
    if "\n" not in drawn and pdf.get_string_width(drawn) <= inner:
        return 1
    broken = pdf.multi_cell(inner, _LINE, drawn, dry_run=True, output=MethodReturnValue.LINES)
    assert isinstance(broken, list)
    return len(broken)


def _how_to_verify(pdf: FPDF) -> None:
    _heading(pdf, VERIFY_HEADING, size=13)
    for number, step in enumerate(VERIFY_STEPS, start=1):
        _shape(pdf, step)
        pdf.write(_LINE, f"{number}. ")
        for piece, literal in spans(step):
            if literal:
                pdf.set_text_color(*_LITERAL)
            pdf.write(_LINE, piece)
            pdf.set_text_color(0)
        pdf.ln(_LINE + 1)
