"""Reading a PDF report back as a reader sees it: the text pdfium recovers, and pixels."""

from __future__ import annotations

from dataclasses import dataclass

import pypdfium2 as pdfium
from PIL import Image

_SCALE = 4  # pixels per PDF point
_INK = 128  # a pixel darker than this (0-255) is ink
_SAME_SHAPE = 0.97  # share of a glyph's ink near another's when they are one glyph

Ink = frozenset[tuple[int, int]]  # a glyph's inked pixels, from its ink's top left corner


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


def glyph_inks(pdf: bytes, text: str) -> list[Ink] | None:
    """The ink in each character's box where pdfium first reads `text`, or None.

    A character the fonts lack is either left out (no text, no ink) or drawn as the
    font's .notdef glyph, one empty box for every missing letter: `same_shape` tells.
    """
    document = pdfium.PdfDocument(pdf)
    for page in document:
        textpage = page.get_textpage()
        found = textpage.search(text, match_whole_word=False).get_next()
        if found is None:
            continue
        start, count = found
        image = page.render(scale=_SCALE).to_pil().convert("L")
        height = page.get_height()
        return [_ink(image, height, textpage.get_charbox(i)) for i in range(start, start + count)]
    return None


def same_shape(a: Ink, b: Ink) -> bool:
    """Whether two inks are one glyph: each lies within a pixel of the other.

    Anti-aliasing draws one glyph a pixel wider or narrower at another position; two
    different letters of a word differ by more (b and h, the closest, by 8 %).
    """
    if not a or not b:
        return a == b
    return min(_near(a, b), _near(b, a)) >= _SAME_SHAPE


def _near(a: Ink, b: Ink) -> float:
    """The share of `a`'s pixels that lie within one pixel of one of `b`'s."""
    around = {(x + dx, y + dy) for x, y in b for dx in (-1, 0, 1) for dy in (-1, 0, 1)}
    return len(a & around) / len(a)


def _ink(image: Image.Image, height: float, box: tuple[float, float, float, float]) -> Ink:
    left, bottom, right, top = box
    crop = image.crop(
        (
            round(left * _SCALE),
            round((height - top) * _SCALE),
            round(right * _SCALE),
            round((height - bottom) * _SCALE),
        )
    )
    width, rows = crop.size
    pixels = crop.load()
    assert pixels is not None
    inked = [(x, y) for x in range(width) for y in range(rows) if pixels[x, y] < _INK]
    if not inked:
        return frozenset()
    x0, y0 = min(x for x, _ in inked), min(y for _, y in inked)
    return frozenset((x - x0, y - y0) for x, y in inked)
