"""The documentation model's own rules, on the pydantic models directly."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from service.languages import canonical_case
from service.records import IncidentDocument


def _refused(model: Any, value: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as raised:
        model.model_validate(value)
    return ".".join(str(part) for part in raised.value.errors()[0]["loc"])


@pytest.mark.parametrize(
    ("given", "canonical"),
    [
        ("AR", "ar"),
        ("ar-ly", "ar-LY"),
        ("SR-LATN-rs", "sr-Latn-RS"),
        ("zh-YUE-hk", "zh-yue-HK"),
        ("es-419", "es-419"),
        ("de-ch-1901", "de-CH-1901"),
        ("sl-ROZAJ", "sl-rozaj"),
        ("UND", "und"),
    ],
)
def test_language_tags_take_their_rfc_5646_case(given: str, canonical: str) -> None:
    assert canonical_case(given) == canonical
    document = IncidentDocument.model_validate({"title": {given: "t"}})
    assert document.title == {canonical: "t"} and document.original_language == canonical


def test_texts_in_one_language_twice_are_refused() -> None:
    assert _refused(IncidentDocument, {"title": {"ar": "x", "AR": "y"}}) == "title"
    summary = {"title": "x", "summary": {"ar-LY": "a", "ar-ly": "b"}}
    assert _refused(IncidentDocument, summary) == "summary"
