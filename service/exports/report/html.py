"""The chain-of-custody report as HTML.

Right-to-left text (Arabic, Persian, Hebrew…) is marked `dir="auto"`, and each
isolated name within a line (FSI…PDI in the content) is a `<bdi>`, so every browser
shapes and orders it with the bidirectional algorithm.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from html import escape

from service.core.readable import FSI, PDI
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

_STYLE = """
body { font-family: 'Noto Sans', 'Noto Naskh Arabic', 'DejaVu Sans', sans-serif; margin: 2em; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
td, th { border: 1px solid #999; padding: 0.25em 0.5em; text-align: start; vertical-align: top; }
code { font-size: 0.9em; word-break: break-all; }
"""


def render_report(
    *,
    export_id: str,
    records: Sequence[Mapping[str, object]],
    timelines: Mapping[str, Sequence[Mapping[str, object]]],
    checkpoint: str,
    people: Mapping[str, str] | None = None,
) -> str:
    """The report: the people it names, then per item its identity, acquisition and full
    custody timeline; `people` maps `user:<id>` to "Name <e-mail>"."""
    names = people or {}
    parts = [
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
        f"<title>{TITLE} — export {escape(export_id)}</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>{TITLE}</h1><p>Export <code>{escape(export_id)}</code></p>",
    ]
    named = people_rows(records, timelines, names)
    if named:
        parts.append(f"<h2>{PEOPLE_HEADING}</h2>{_table(PEOPLE_COLUMNS, named)}")
    for record in records:
        section = item_section(record, timelines.get(str(record["id"]), ()), names)
        parts.append(_item_section(section))
    parts.append(f"<h2>Checkpoint</h2><pre>{escape(checkpoint)}</pre>")
    parts.append(_how_to_verify())
    parts.append("</body></html>")
    return "\n".join(parts)


def _text(value: str) -> str:
    """Escaped, each isolated name a <bdi>, each line break a <br>."""
    marked = escape(value).replace(FSI, "<bdi>").replace(PDI, "</bdi>")
    return marked.replace("\n", "<br>")


def _cell(value: str) -> str:
    return f'<td dir="auto">{_text(value)}</td>'


def _table(header: Iterable[str], rows: Iterable[Iterable[str]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join(f"<tr>{''.join(_cell(v) for v in row)}</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _item_section(section: ItemSection) -> str:
    identity = "".join(f"<tr><th>{escape(k)}</th>{_cell(v)}</tr>" for k, v in section.identity)
    return (
        f'<h2 dir="auto">{_text(section.heading)}</h2>'
        f"<h3>Identity</h3><table>{identity}</table>"
        f"<h3>Acquisition</h3>{_table(ACQUISITION_COLUMNS, section.acquisition)}"
        f"<h3>Timeline</h3>{_table(TIMELINE_COLUMNS, section.timeline)}"
    )


def _how_to_verify() -> str:
    steps = "".join(
        "<li>"
        + "".join(f"<code>{escape(p)}</code>" if code else escape(p) for p, code in spans(step))
        + "</li>\n"
        for step in VERIFY_STEPS
    )
    return f"<h2>{VERIFY_HEADING}</h2>\n<ol>\n{steps}</ol>"
