"""PDFs and Office files through the sandbox: authorship and dates, and hostile documents."""

from __future__ import annotations

import random
import zipfile
from pathlib import Path

import pytest
from pypdf import PdfWriter

from service.evidence.analysis import analyse_file

DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
_CORE_XML = """<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<cp:coreProperties
  xmlns:cp="http://schemas.openxmlformats.org/package/2006/metadata/core-properties"
  xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:dcterms="http://purl.org/dc/terms/"
  xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <dc:title>إفادة شاهد</dc:title><dc:creator>Salma B.</dc:creator>
  <cp:lastModifiedBy>Field office</cp:lastModifiedBy><cp:revision>3</cp:revision>
  <dcterms:created xsi:type="dcterms:W3CDTF">2020-06-11T08:00:00Z</dcterms:created>
  <dcterms:modified xsi:type="dcterms:W3CDTF">2020-06-12T10:15:00Z</dcterms:modified>
</cp:coreProperties>"""
_APP_XML = """<?xml version="1.0" encoding="UTF-8"?>
<Properties xmlns="http://schemas.openxmlformats.org/officeDocument/2006/extended-properties">
<Application>Microsoft Office Word</Application><Company>Documentation Project</Company>
</Properties>"""


def _pdf(path: Path, *, pages: int = 3, password: str | None = None) -> Path:
    writer = PdfWriter()
    for _ in range(pages):
        writer.add_blank_page(width=595, height=842)
    writer.add_metadata(
        {
            "/Author": "لجنة التوثيق",
            "/Creator": "Writer",
            "/Producer": "LibreOffice 7.0",
            "/Title": "Exhumation report",
            "/CreationDate": "D:20200610093000+02'00'",
            "/ModDate": "D:20200611Z",
        }
    )
    if password is not None:
        writer.encrypt(user_password=password, owner_password="owner", algorithm="AES-128")
    writer.write(path)
    return path


def _office(path: Path, parts: dict[str, str | bytes], *, kind: str = "word") -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as package:
        package.writestr("[Content_Types].xml", "<Types/>")
        package.writestr(
            {"word": "word/document.xml", "xl": "xl/workbook.xml"}[kind], "<document/>"
        )
        for name, data in parts.items():
            package.writestr(name, data)
    return path


def test_pdf_document_information(tmp_path: Path) -> None:
    analysis = analyse_file(_pdf(tmp_path / "report.pdf"), "application/pdf")
    assert analysis.error is None and analysis.perceptual == ()
    assert analysis.extracted == {
        "kind": "pdf",
        "pdf_version": "1.3",
        "author": "لجنة التوثيق",
        "creator": "Writer",
        "producer": "LibreOffice 7.0",
        "title": "Exhumation report",
        "created_at": "2020-06-10T09:30:00+02:00",
        "modified_at": "2020-06-11T00:00:00Z",
        "pages": 3,
    }


def test_pdf_locked_with_a_password(tmp_path: Path) -> None:
    analysis = analyse_file(_pdf(tmp_path / "locked.pdf", password="secret"), "application/pdf")
    assert analysis.error is not None and "password" in analysis.error
    assert analysis.extracted["encrypted"] is True


@pytest.mark.parametrize(
    ("content", "error"),
    [
        # Seeded: random bytes whose last line ends in `%` (one file in 256) read as a cut
        # `%%EOF` and fail otherwise ("startxref not found").
        (
            b"%PDF-1.7\n" + random.Random(0).randbytes(20_000),
            "PdfStreamError: Stream has ended unexpectedly",
        ),
        # An author nested 100,000 arrays deep, to exhaust a recursive parser.
        (
            b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n"
            b"2 0 obj\n<< /Type /Pages /Kids [] /Count 0 >>\nendobj\n"
            b"3 0 obj\n<< /Author " + b"[" * 100_000 + b"]" * 100_000 + b" >>\nendobj\n"
            b"trailer\n<< /Root 1 0 R /Info 3 0 R >>\nstartxref\n999\n%%EOF\n",
            "PdfReadError: Error reading PDF file.",
        ),
    ],
    ids=["garbage", "deep-nesting"],
)
def test_hostile_pdf(tmp_path: Path, content: bytes, error: str) -> None:
    path = tmp_path / "hostile.pdf"
    path.write_bytes(content)
    # pypdf's own refusal: the parser ran and gave up, it did not fail to load.
    assert analyse_file(path, "application/pdf").error == error


def test_docx_core_and_extended_properties(tmp_path: Path) -> None:
    path = _office(
        tmp_path / "statement.docx", {"docProps/core.xml": _CORE_XML, "docProps/app.xml": _APP_XML}
    )
    analysis = analyse_file(path, DOCX)
    assert analysis.error is None
    assert analysis.extracted == {
        "kind": "office",
        "format": "docx",
        "title": "إفادة شاهد",
        "author": "Salma B.",
        "last_modified_by": "Field office",
        "revision": "3",
        "created_at": "2020-06-11T08:00:00Z",
        "modified_at": "2020-06-12T10:15:00Z",
        "application": "Microsoft Office Word",
        "company": "Documentation Project",
    }


def test_xlsx_sniffed_under_another_office_type(tmp_path: Path) -> None:
    path = _office(tmp_path / "list.xlsx", {"docProps/core.xml": _CORE_XML}, kind="xl")
    analysis = analyse_file(path, DOCX)
    assert analysis.extracted["format"] == "xlsx"
    assert analysis.extracted["author"] == "Salma B."


def test_office_properties_bomb_is_not_expanded(tmp_path: Path) -> None:
    # 20 MB of properties in a few kilobytes of zip.
    bomb = b"<cp:coreProperties>" + b" " * 20_000_000 + b"</cp:coreProperties>"
    path = _office(tmp_path / "bomb.docx", {"docProps/core.xml": bomb})
    analysis = analyse_file(path, DOCX)
    assert analysis.error is not None and "larger than" in analysis.error


def test_office_entity_expansion_is_refused(tmp_path: Path) -> None:
    laughs = '<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "ha">]><l>&a;</l>'
    path = _office(tmp_path / "laughs.docx", {"docProps/core.xml": laughs})
    analysis = analyse_file(path, DOCX)
    assert analysis.error is not None and "DTD" in analysis.error


def test_zip_that_is_not_an_office_file(tmp_path: Path) -> None:
    path = tmp_path / "photos.zip"
    with zipfile.ZipFile(path, "w") as package:
        package.writestr("a.txt", "hello")
    assert analyse_file(path, "application/zip") == analyse_file(path, "text/plain")
