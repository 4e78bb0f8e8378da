"""The PDF report: Arabic shaped, Hebrew and Arabic in reading order, no letter left out, and
the HTML report's content."""

from __future__ import annotations

import io
import sys
from itertools import combinations

import pytest

from service.exports.report import pdf as report_pdf
from service.exports.report import render_report, write_pdf_report
from service.exports.report.content import VERIFY_STEPS, spans
from tests.report.rendering import find_word, glyph_inks, ink_runs, page_texts, same_shape

# Every letter of both words joins the next one (the last only joins the one before).
COURT = "محكمة"
MUHAMMAD = "محمد"
# Letters IBM Plex Sans Arabic lacks, drawn from the fallback fonts: Hebrew ("court"), and a
# Turkish name in Latin Extended-A whose a, h and i come twice.
HEBREW = "בית משפט"
TURKISH = "İbrahim Şahin"
CHECKPOINT = "evidence-locker.local/custody\n7\nq83lqGd5KVhl0lDHYFvqGrwlsQamvxHV3ZWwPpj2qo0=\n"


def _record(filename: str = f"{COURT}.jpg") -> dict[str, object]:
    return {
        "id": "3f1c0d5e-0000-4000-8000-000000000001",
        "sha256": "5" * 64,
        "sha512": "a1" * 64,
        "size": 20480,
        "media_type": "image/jpeg",
        "received_at": "2024-05-01T10:00:00Z",
        "path": f"data/evidence/3f1c0d5e-0000-4000-8000-000000000001/{filename}",
        "submissions": [
            {
                "filename": filename,
                "metadata": {"title": "Site photo"},
                "received_at": "2024-05-01T10:00:00Z",
                "submitted_by": "user:lead@example.org",
                "custody_index": 1,
            }
        ],
    }


def _timeline(count: int, actor: str = f"user:{MUHAMMAD}@example.org") -> list[dict[str, object]]:
    return [
        {
            "index": n,
            "time": f"2024-05-01T10:{n // 60:02d}:{n % 60:02d}.000001Z",
            "actor": actor,
            "action": "evidence.ingested" if n == 0 else "evidence.viewed",
        }
        for n in range(count)
    ]


def _render(entries: int = 3, *, filename: str = f"{COURT}.jpg", actor: str | None = None) -> bytes:
    record = _record(filename)
    timeline = _timeline(entries) if actor is None else _timeline(entries, actor)
    out = io.BytesIO()
    write_pdf_report(
        out,
        export_id="export-1",
        records=[record],
        timelines={str(record["id"]): timeline},
        checkpoint=CHECKPOINT,
    )
    return out.getvalue()


def test_arabic_is_joined_and_in_reading_order() -> None:
    pdf = _render()
    # The file name is the item's heading (bold) and the actor a table cell (regular).
    for word in (COURT, MUHAMMAD):
        found = find_word(pdf, word)
        assert found is not None, f"{word} not read back in logical order"
        assert ink_runs(pdf, found) == 1, f"{word} is drawn as separate letters"


def test_the_checks_fail_when_text_is_not_shaped(monkeypatch: pytest.MonkeyPatch) -> None:
    # Shaping switched off: fpdf2 then draws each letter's isolated form, left to right,
    # which is what the test above must catch.
    monkeypatch.setattr(report_pdf, "_FIRST_SHAPED", sys.maxunicode + 1)
    pdf = _render()
    assert find_word(pdf, COURT) is None
    reversed_word = find_word(pdf, COURT[::-1])
    assert reversed_word is not None
    assert ink_runs(pdf, reversed_word) == len(COURT)


# Each word once as the file name (the bold heading, found first) and once as an actor.
NAMES = [(f"{HEBREW}.jpg", f"user:{TURKISH}"), (f"{TURKISH}.jpg", f"user:{HEBREW}")]


@pytest.mark.parametrize(("filename", "actor"), NAMES)
def test_hebrew_and_extended_latin_are_drawn_in_reading_order(filename: str, actor: str) -> None:
    pdf = _render(filename=filename, actor=actor)
    # pdfium reads the words of a left-to-right line left to right, so a Hebrew phrase
    # there comes back word by word: each word is read, then their places are compared.
    letters = []
    for word in [*HEBREW.split(), TURKISH]:
        inks = glyph_inks(pdf, word)
        assert inks is not None, f"{word} not read back in logical order"
        letters += [(char, ink) for char, ink in zip(word, inks, strict=True) if char != " "]
    assert all(ink for _, ink in letters), "a letter has no ink"
    # A missing glyph is the font's .notdef, one box for every missing letter:
    # different letters must look different, and the same letter the same.
    for (a, ink_a), (b, ink_b) in combinations(letters, 2):
        assert same_shape(ink_a, ink_b) == (a == b), f"{a} and {b} drawn alike"
    first, second = (find_word(pdf, word) for word in HEBREW.split())
    assert first is not None and second is not None
    assert (first.page, round(first.bottom)) == (second.page, round(second.bottom))
    assert first.left > second.right, f"{HEBREW} is not drawn right to left"


def test_the_checks_fail_without_the_fallback_fonts(monkeypatch: pytest.MonkeyPatch) -> None:
    # IBM Plex Sans Arabic alone: fpdf2 leaves out every letter it has no glyph for.
    monkeypatch.setattr(report_pdf, "_FALLBACKS", ())
    pdf = _render(filename=f"{HEBREW}.jpg", actor=f"user:{TURKISH}")
    assert glyph_inks(pdf, HEBREW) is None
    assert glyph_inks(pdf, TURKISH) is None
    assert "user:brahim ahin" in "\n".join(page_texts(pdf))


def test_the_pdf_says_what_the_html_says() -> None:
    record = _record()
    timeline = _timeline(3)
    html = render_report(
        export_id="export-1",
        records=[record],
        timelines={str(record["id"]): timeline},
        checkpoint=CHECKPOINT,
    )
    text = "\n".join(page_texts(_render()))
    flat = text.replace("\r\n", "")  # the SHA-512 wraps in its cell
    expected = [
        "export-1",
        str(record["sha256"]),
        str(record["sha512"]),
        "20480",
        "image/jpeg",
        "user:lead@example.org",
        "Site photo",
        *(str(e["time"]) for e in timeline),
        "evidence.ingested",
        "evidence.viewed",
        *CHECKPOINT.split(),
        *(piece for step in VERIFY_STEPS for piece, literal in spans(step) if literal),
    ]
    for value in expected:
        assert value in html
        assert value in flat, f"{value!r} missing from the PDF"


def test_a_long_timeline_runs_onto_pages_each_with_its_header() -> None:
    pages = page_texts(_render(entries=150))
    with_rows = [p for p in pages if "evidence.viewed" in p]
    assert len(with_rows) >= 3
    assert all("time (UTC)" in p for p in with_rows)
    assert "2024-05-01T10:02:29.000001Z" in "\n".join(pages)  # the last entry
