"""Reading a PDF report back as a reader sees it: the text pdfium recovers, and pixels."""

from __future__ import annotations

from dataclasses import dataclass

import pypdfium2 as pdfium

_SCALE = 4  # pixels per PDF point
_INK = 128  # a pixel darker than this (0-255) is ink


@dataclass(frozen=True, slots=True)
class Word:
    """Where `text` was found: its page and the union of its characters' boxes."""

    page: int
    left: float
    bottom: float
    right: float
    top: float


def page_texts(pdf: bytes) -> list[str]:
    """The text of every page, as pdfium extracts it."""
    document = pdfium.PdfDocument(pdf)
    return [page.get_textpage().get_text_range() for page in document]


def find_word(pdf: bytes, text: str) -> Word | None:
    """The first place pdfium reads `text` in logical order, or None.

    Visual order drawn left to right (no bidi reordering) reads back reversed. pdfium
    orders characters by position, so a narrow medial letter overlapping its
    neighbour can come back swapped ("المقبرة" as "المقربة"): test with words whose
    letters do not overlap.
    """
    document = pdfium.PdfDocument(pdf)
    for number, page in enumerate(document):
        textpage = page.get_textpage()
        found = textpage.search(text, match_whole_word=False).get_next()
        if found is None:
            continue
        start, count = found
        boxes = [textpage.get_charbox(i) for i in range(start, start + count)]
        return Word(
            number,
            min(b[0] for b in boxes),
            min(b[1] for b in boxes),
            max(b[2] for b in boxes),
            max(b[3] for b in boxes),
        )
    return None


def ink_runs(pdf: bytes, word: Word) -> int:
    """How many horizontally separate pieces of ink the word's box holds.

    Joined Arabic letters are one stroke along the baseline; isolated forms
    (unshaped text) leave a gap between letters.
    """
    page = pdfium.PdfDocument(pdf)[word.page]
    height = page.get_height()
    image = page.render(scale=_SCALE).to_pil().convert("L")
    crop = image.crop(
        (
            round(word.left * _SCALE),
            round((height - word.top) * _SCALE),
            round(word.right * _SCALE),
            round((height - word.bottom) * _SCALE),
        )
    )
    width, rows = crop.size
    pixels = crop.load()
    assert pixels is not None
    inked = [any(pixels[x, y] < _INK for y in range(rows)) for x in range(width)]
    return sum(1 for x, ink in enumerate(inked) if ink and (x == 0 or not inked[x - 1]))
