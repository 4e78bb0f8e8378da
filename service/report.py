"""The human-readable chain-of-custody report inside a bundle (HTML).

Right-to-left text (Arabic, Persian, Hebrew…) is marked `dir="auto"` so every
browser shapes and orders it correctly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape

_STYLE = """
body { font-family: 'Noto Sans', 'Noto Naskh Arabic', 'DejaVu Sans', sans-serif; margin: 2em; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
td, th { border: 1px solid #999; padding: 0.25em 0.5em; text-align: start; vertical-align: top; }
code { font-size: 0.9em; word-break: break-all; }
"""

_HOW_TO_VERIFY = """
<h2>How to verify this bundle by hand</h2>
<ol>
<li>Unzip it, go into the bag folder and run <code>sha256sum -c manifest-sha256.txt</code>
and <code>sha512sum -c manifest-sha512.txt</code>: every evidence file and record must say OK.</li>
<li>Check the tag files the same way: <code>sha256sum -c tagmanifest-sha256.txt</code>.</li>
<li>Each custody entry in <code>custody/entries/</code> is the exact leaf of the log; its leaf
hash is SHA-256 of a 0x00 byte followed by the file's bytes (RFC 9162 §2.1.1). With the
proof in <code>custody/proofs.json</code> it must lead to the root hash in
<code>custody/checkpoint.txt</code> (RFC 9162 §2.1.3.2).</li>
<li>The checkpoint is a signed note (C2SP signed-note, Ed25519): check its signature with the
log's verifier key obtained from the locker's operator, not only the copy in this bundle.</li>
<li>Or run <code>locker verify BUNDLE.zip --key verifier-key.txt</code>, which does all
of this.</li>
</ol>
"""


def _cell(value: object) -> str:
    return f'<td dir="auto">{escape(str(value))}</td>'


def render_report(
    *,
    export_id: str,
    records: Sequence[Mapping[str, object]],
    timelines: Mapping[str, Sequence[Mapping[str, object]]],
    checkpoint: str,
) -> str:
    """The report: per item its identity, acquisition and full custody timeline."""
    parts = [
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
        f"<title>Chain of custody — export {escape(export_id)}</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>Chain of custody report</h1><p>Export <code>{escape(export_id)}</code></p>",
    ]
    for record in records:
        parts.append(_item_section(record, timelines.get(str(record["id"]), ())))
    parts.append(f"<h2>Checkpoint</h2><pre>{escape(checkpoint)}</pre>")
    parts.append(_HOW_TO_VERIFY)
    parts.append("</body></html>")
    return "\n".join(parts)


def _item_section(record: Mapping[str, object], entries: Sequence[Mapping[str, object]]) -> str:
    submissions = record.get("submissions")
    first = submissions[0] if isinstance(submissions, list) and submissions else {}
    rows = [
        ("File name", first.get("filename", "")),
        ("SHA-256", record["sha256"]),
        ("SHA-512", record["sha512"]),
        ("Size (bytes)", record["size"]),
        ("Media type (sniffed)", record["media_type"]),
        ("Received", record["received_at"]),
        ("Path in bundle", record["path"]),
    ]
    identity = "".join(f"<tr><th>{escape(k)}</th>{_cell(v)}</tr>" for k, v in rows)
    acquisition = "".join(
        f"<tr>{_cell(s.get('received_at'))}{_cell(s.get('filename'))}"
        f"{_cell(s.get('submitted_by'))}{_cell(s.get('metadata'))}</tr>"
        for s in (submissions if isinstance(submissions, list) else [])
    )
    timeline = "".join(
        f"<tr>{_cell(e['index'])}{_cell(e['time'])}{_cell(e['actor'])}{_cell(e['action'])}</tr>"
        for e in entries
    )
    return (
        f'<h2 dir="auto">{escape(str(first.get("filename", record["id"])))}</h2>'
        f"<h3>Identity</h3><table>{identity}</table>"
        "<h3>Acquisition</h3><table><tr><th>received</th><th>file name</th>"
        f"<th>submitted by</th><th>metadata</th></tr>{acquisition}</table>"
        "<h3>Timeline</h3><table><tr><th>entry</th><th>time (UTC)</th><th>actor</th>"
        f"<th>action</th></tr>{timeline}</table>"
    )
