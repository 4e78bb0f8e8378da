"""PDFs: the document information dictionary and page count (pypdf)."""

from __future__ import annotations

import re
from pathlib import Path

from pypdf import PasswordType, PdfReader

from service.evidence.analysis._findings import Findings, text

_PDF_TEXT = {
    "/Author": "author",
    "/Creator": "creator",
    "/Producer": "producer",
    "/Title": "title",
    "/Subject": "subject",
    "/Keywords": "keywords",
}
# ISO 32000-1 §7.9.4: D:YYYYMMDDHHmmSSOHH'mm, every part after the year optional.
_PDF_DATE = re.compile(
    r"D:(\d{4})(\d\d)?(\d\d)?(\d\d)?(\d\d)?(\d\d)?(?:([Zz])|([+-])(\d\d)'?(\d\d)?'?)?"
)


def analyse_pdf(path: Path, media_type: str, findings: Findings) -> None:
    """Read a PDF's document information dictionary and page count into `findings`."""
    reader = PdfReader(path, strict=False)
    findings.put("kind", "pdf")
    findings.put("pdf_version", text(reader.pdf_header.removeprefix("%PDF-")))
    if reader.is_encrypted:
        findings.put("encrypted", True)
        # Many PDFs are encrypted only against editing, with an empty password to open.
        if reader.decrypt("") == PasswordType.NOT_DECRYPTED:
            raise ValueError("the PDF is encrypted with a password")
    info = reader.metadata
    if info is not None:
        for name, key in _PDF_TEXT.items():
            findings.put(key, text(info.get(name)))
        findings.put("created_at", _pdf_date(text(info.get("/CreationDate"))))
        findings.put("modified_at", _pdf_date(text(info.get("/ModDate"))))
    findings.put("pages", len(reader.pages))


def _pdf_date(raw: str | None) -> str | None:
    """A PDF date as ISO 8601; kept as written when it does not parse."""
    match = _PDF_DATE.fullmatch(raw) if raw is not None else None
    if match is None:
        return raw
    year, month, day, hour, minute, second, zulu, sign, off_h, off_m = match.groups()
    stamp = f"{year}-{month or '01'}-{day or '01'}T{hour or '00'}:{minute or '00'}:{second or '00'}"
    if zulu:
        return stamp + "Z"
    if sign:
        return f"{stamp}{sign}{off_h}:{off_m or '00'}"
    return stamp
