"""Office files: Office Open XML (docx, xlsx, pptx) core and extended properties."""

from __future__ import annotations

import zipfile
from pathlib import Path
from xml.etree import ElementTree

from service.evidence.analysis._findings import Findings, text

# ECMA-376 Part 2 (Open Packaging Conventions) core properties, and Part 1 extended ones.
_CORE = "docProps/core.xml"
_APP = "docProps/app.xml"
_CORE_FIELDS = {
    "{http://purl.org/dc/elements/1.1/}creator": "author",
    "{http://schemas.openxmlformats.org/package/2006/metadata/core-properties}lastModifiedBy": (
        "last_modified_by"
    ),
    "{http://purl.org/dc/terms/}created": "created_at",
    "{http://purl.org/dc/terms/}modified": "modified_at",
    "{http://purl.org/dc/elements/1.1/}title": "title",
    "{http://purl.org/dc/elements/1.1/}subject": "subject",
    "{http://schemas.openxmlformats.org/package/2006/metadata/core-properties}revision": (
        "revision"
    ),
}
_APP_FIELDS = {
    "{http://schemas.openxmlformats.org/officeDocument/2006/extended-properties}Application": (
        "application"
    ),
    "{http://schemas.openxmlformats.org/officeDocument/2006/extended-properties}Company": (
        "company"
    ),
}
_OOXML_PARTS = {
    "word/document.xml": "docx",
    "xl/workbook.xml": "xlsx",
    "ppt/presentation.xml": "pptx",
}
# Property parts are a few kilobytes; a larger one is not worth reading.
_MAX_PART = 1 << 20


def analyse_office(path: Path, media_type: str, findings: Findings) -> None:
    """Read an Office Open XML file's core and extended properties into `findings`."""
    with zipfile.ZipFile(path) as package:
        names = set(package.namelist())
        if _CORE not in names:
            return
        findings.put("kind", "office")
        findings.put("format", next((f for p, f in _OOXML_PARTS.items() if p in names), None))
        _read_properties(package, _CORE, _CORE_FIELDS, findings)
        if _APP in names:
            _read_properties(package, _APP, _APP_FIELDS, findings)


def _read_properties(
    package: zipfile.ZipFile, part: str, fields: dict[str, str], findings: Findings
) -> None:
    with package.open(part) as stream:
        # The size in the zip directory can lie; read one byte past the cap to know.
        data = stream.read(_MAX_PART + 1)
    if len(data) > _MAX_PART:
        raise ValueError(f"{part} is larger than {_MAX_PART} bytes")
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        # Property parts never declare entities; one that does is an entity-expansion bomb.
        raise ValueError(f"{part} declares a DTD")
    root = ElementTree.fromstring(data)
    for element in root:
        key = fields.get(element.tag)
        if key is not None:
            findings.put(key, text(element.text))
