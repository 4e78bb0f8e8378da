"""The report as an auditor reads it: people by name and e-mail beside their ids, metadata as
labelled fields, and mixed-direction names in the order the bidirectional algorithm gives."""

from __future__ import annotations

import io

import pypdfium2 as pdfium
import pytest
from fpdf import FPDF

from service.core.readable import isolate
from service.exports.report import pdf as report_pdf
from service.exports.report import render_report, write_pdf_report
from service.exports.report.bidi import visual_runs
from tests.report.rendering import find_word, ink_runs, page_texts

SITE = "الموقع"
MIXED = f"{SITE}-1.jpg"  # Arabic, a hyphen, a digit, then a Latin extension
LEAD = "user:6f1c0d5e-0000-4000-8000-00000000000a"
ITEM = "3f1c0d5e-0000-4000-8000-000000000001"
PEOPLE = {LEAD: "lead@example.org", "operator": "the locker's operator (command line)"}


def _record() -> dict[str, object]:
    return {
        "id": ITEM,
        "sha256": "5" * 64,
        "sha512": "a1" * 64,
        "size": 20480,
        "media_type": "image/jpeg",
        "received_at": "2024-05-01T10:00:00Z",
        "path": f"data/evidence/{ITEM}/{MIXED}",
        "submissions": [
            {
                "filename": MIXED,
                "metadata": {
                    "title": "Site photo",
                    "captured_at": "2020-06-10T09:30:00Z",
                    "location": {"lat": 32.43, "lon": 13.63},
                    "source_reliability": "B",
                },
                "received_at": "2024-05-01T10:00:00Z",
                "submitted_by": LEAD,
                "custody_index": 3,
            }
        ],
    }


_TIMELINE = [
    {"index": 3, "time": "2024-05-01T10:00:00Z", "actor": LEAD, "action": "evidence.ingested"}
]


def _pdf() -> bytes:
    out = io.BytesIO()
    write_pdf_report(
        out,
        export_id="export-1",
        records=[_record()],
        timelines={ITEM: _TIMELINE},
        checkpoint="o\n4\nr\n",
        people=PEOPLE,
    )
    return out.getvalue()


def _boxes(pdf: bytes, text: str) -> list[tuple[float, float, float]]:
    """(bottom, left, right) of every place pdfium reads `text` on the first page."""
    page = pdfium.PdfDocument(pdf)[0]
    textpage = page.get_textpage()
    search = textpage.search(text, match_whole_word=False)
    found = []
    while (hit := search.get_next()) is not None:
        start, count = hit
        boxes = [textpage.get_charbox(i) for i in range(start, start + count)]
        found.append((round(boxes[0][1]), min(b[0] for b in boxes), max(b[2] for b in boxes)))
    return found


def test_the_visual_order_follows_uax9() -> None:
    # In a left-to-right line the digit, resolved to level 2, sits left of the Arabic word;
    # in a right-to-left one the extension ends up at the left.
    assert [(r.text, r.level) for r in visual_runs(f"x/{MIXED}")] == [
        ("x/", 0),
        ("1", 2),
        (f"{SITE}-", 1),
        (".jpg", 0),
    ]
    assert [r.text for r in visual_runs(MIXED)] == ["jpg", ".", "1", f"{SITE}-"]


def test_mixed_names_are_drawn_in_their_true_order() -> None:
    pdf = _pdf()
    text = "\n".join(page_texts(pdf))
    # The path is a left-to-right line: ".../1-الموقع.jpg" on the page, as a browser shows it.
    assert f"{ITEM}/1-{SITE}.jpg" in text
    # The file name is a right-to-left paragraph (its first strong letter is Arabic).
    assert f"jpg.1-{SITE}" in text
    sites = _boxes(pdf, SITE)
    extensions = _boxes(pdf, "jpg")
    for bottom, left, right in sites:
        beside = [e for e in extensions if abs(e[0] - bottom) <= 3]  # the same line
        assert beside, "no extension on the Arabic name's line"
        assert all(e[1] >= right - 0.5 or e[2] <= left + 0.5 for e in beside)
    found = find_word(pdf, SITE)  # the Arabic is still joined after reordering
    # Alef and waw join no letter after them: joined, the word is three strokes, not six.
    assert found is not None and ink_runs(pdf, found) == 3


def test_the_check_fails_when_runs_stay_in_logical_order(monkeypatch: pytest.MonkeyPatch) -> None:
    # fpdf2 alone draws the runs in logical order: the digit lands after the Arabic word.
    def fpdf2_alone(pdf: FPDF, text: str, width: float | None = None) -> str:
        pdf.set_text_shaping(True)
        return text

    monkeypatch.setattr(report_pdf, "_shape", fpdf2_alone)
    text = "\n".join(page_texts(_pdf()))
    assert f"{ITEM}/1-{SITE}.jpg" not in text


def test_people_are_named_beside_their_ids_and_metadata_is_labelled() -> None:
    text = "\n".join(page_texts(_pdf())).replace("\r\n", "\n")
    assert "lead@example.org" in text and LEAD in text  # the People table pairs them
    assert text.count(LEAD) == 1, "ids belong in the People table, not every row"
    for field in (
        "title: Site photo",
        "captured at: 2020-06-10T09:30:00Z",
        "source reliability: B",
    ):
        assert field in text
    assert "location: lat 32.43, lon 13.63" in text
    assert "{" not in text and "'title'" not in text


def test_the_html_isolates_each_name() -> None:
    html = render_report(
        export_id="export-1",
        records=[_record()],
        timelines={ITEM: _TIMELINE},
        checkpoint="o\n4\nr\n",
        people=PEOPLE,
    )
    assert f'<h2 dir="auto">{MIXED}</h2>' in html
    assert f'<td dir="auto">{LEAD}</td>' in html and "lead@example.org" in html
    assert "title: Site photo<br>captured at: 2020-06-10T09:30:00Z" in html
    labelled = render_report(
        export_id="e",
        records=[
            {
                **_record(),
                "submissions": [{**_record()["submissions"][0], "metadata": {"title": SITE}}],
            }
        ],  # type: ignore[index]
        timelines={},
        checkpoint="",
    )
    assert f"title: <bdi>{SITE}</bdi>" in labelled


# Too long for the metadata column, and mixed (the dates are left-to-right runs inside
# it): it must be broken into lines before each line is reordered, first words first.
STATEMENT = "رأيت فرق البحث تصل إلى المكب في 6 يونيو 2020 بعد اختفاء أخي في سبتمبر 2019 صباحا"


def test_wrapped_right_to_left_text_keeps_its_lines_in_reading_order() -> None:
    record = _record()
    submission = {
        **record["submissions"][0],
        "metadata": {"description": f"{STATEMENT} {STATEMENT}"},
    }  # type: ignore[index]
    out = io.BytesIO()
    write_pdf_report(
        out,
        export_id="export-1",
        records=[{**record, "submissions": [submission]}],
        timelines={ITEM: _TIMELINE},
        checkpoint="o\n4\nr\n",
    )
    pdf = out.getvalue()
    first, last = _boxes(pdf, "رأيت"), _boxes(pdf, "صباحا")
    assert len(first) == 2 and len(last) == 2  # the sentence twice, every word drawn
    # pdfium's y grows upwards: the first word's line is above the last word's.
    assert first[0][0] > last[-1][0], "the wrapped lines are in the wrong order"
    bottom, left, _ = first[0]
    second = [b for b in _boxes(pdf, "فرق") if abs(b[0] - bottom) <= 3]
    assert second and all(b[2] <= left + 0.5 for b in second), "not right to left"


def test_the_wrap_check_fails_when_lines_break_after_reordering(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Reordered whole, then broken by fpdf2: the sentence's end comes out on its first line.
    monkeypatch.setattr(report_pdf, "_wrap", lambda pdf, line, width: [line])
    with pytest.raises(AssertionError):
        test_wrapped_right_to_left_text_keeps_its_lines_in_reading_order()


NOOR = "نور"  # no letter of it overlaps the next, so pdfium reads it back in order


def test_a_named_person_is_shown_with_their_e_mail_beside_their_id() -> None:
    # A name isolated beside the e-mail, as people are labelled: the line stays left to right.
    people = {LEAD: f"{isolate(NOOR)} <lead@example.org>"}
    out = io.BytesIO()
    write_pdf_report(
        out,
        export_id="export-1",
        records=[_record()],
        timelines={ITEM: _TIMELINE},
        checkpoint="o\n4\nr\n",
        people=people,
    )
    pdf = out.getvalue()
    # One left-to-right line: the name, then the e-mail, then the id, drawn in the body
    # font (after a right-to-left name, fpdf2 alone drew the id in a fallback's glyphs).
    [ids] = _boxes(pdf, LEAD)  # found whole: readable
    [name] = [box for box in _boxes(pdf, NOOR) if abs(box[0] - ids[0]) <= 3]
    [email] = [box for box in _boxes(pdf, "lead@example.org") if abs(box[0] - ids[0]) <= 3]
    assert name[2] < email[1] and email[2] < ids[1]
    found = find_word(pdf, NOOR)
    # Read back in reading order; nun joins waw, which joins nothing after it: two
    # strokes, where unshaped letters would be three.
    assert found is not None and ink_runs(pdf, found) == 2
    html = render_report(
        export_id="export-1",
        records=[_record()],
        timelines={ITEM: _TIMELINE},
        checkpoint="",
        people=people,
    )
    named = f'<td dir="auto"><bdi>{NOOR}</bdi> &lt;lead@example.org&gt;</td>'
    assert f'{named}<td dir="auto">{LEAD}</td>' in html
    assert html.count(named) == 3  # the People table, the acquisition, the timeline
