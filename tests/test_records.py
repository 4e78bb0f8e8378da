"""The documentation model's own rules, on the pydantic models directly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import ValidationError

from service.documentation.documents import AssertedMetadata, FuzzyDate, IncidentDocument, edited
from service.documentation.languages import canonical_case
from service.evidence.recording import UploadMetadata


def _refused(model: Any, value: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as raised:
        model.model_validate(value)
    return ".".join(str(part) for part in raised.value.errors()[0]["loc"])


@pytest.mark.parametrize("field", ["captured_at", "collected_at"])
def test_asserted_times_need_an_offset(field: str) -> None:
    assert _refused(AssertedMetadata, {field: "2020-01-01T00:00:00"}) == field
    given = AssertedMetadata.model_validate({field: "2020-06-10T09:30:00+02:00"})
    kept = given.model_dump(mode="json")[field]
    assert kept == "2020-06-10T09:30:00+02:00"  # the offset the collector gave is kept


@pytest.mark.parametrize("value", ["9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00"])
def test_asserted_times_at_the_calendars_edge_are_refused(value: str) -> None:
    assert _refused(AssertedMetadata, {"captured_at": value}) == "captured_at"


def test_asserted_json_types_are_not_coerced() -> None:
    assert _refused(AssertedMetadata, {"information_credibility": True}) == (
        "information_credibility"
    )
    assert _refused(AssertedMetadata, {"information_credibility": "2"}) == (
        "information_credibility"
    )
    assert _refused(UploadMetadata, {"restricted": "yes"}) == "restricted"
    assert _refused(UploadMetadata, {"restricted": 1}) == "restricted"
    assert UploadMetadata.model_validate_json('{"restricted": true}').restricted is True
    assert (
        AssertedMetadata.model_validate({"information_credibility": 6}).information_credibility == 6
    )


@pytest.mark.parametrize(
    "value",
    [
        {"value": "9999-12-31T23:59:59-14:00", "precision": "exact"},
        {"value": "0001-01-01T00:00:00+14:00", "precision": "exact"},
        {"value": "9999-12", "precision": "month"},
        {"value": "0999", "precision": "year"},
    ],
)
def test_dates_outside_the_calendar_are_refused_not_overflowed(value: dict[str, str]) -> None:
    with pytest.raises(ValidationError, match="out of range"):
        FuzzyDate.model_validate(value)


def test_an_exact_time_is_read_in_utc() -> None:
    date = FuzzyDate(value="2020-06-05T23:30:00-02:00", precision="exact")
    moment = datetime(2020, 6, 6, 1, 30, tzinfo=UTC)
    assert date.bounds() == (moment, moment)
    assert moment.astimezone(timezone(timedelta(hours=-2))).day == 5


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


MASS_GRAVE = {"title": {"ar": "مقبرة جماعية", "en": "Mass grave"}, "original_language": "ar"}


def test_an_edit_sets_one_language_or_replaces_all() -> None:
    french = edited(MASS_GRAVE, {"language": "FR", "title": "Fosse commune"})
    original = edited(MASS_GRAVE, {"title": "مقابر"})
    moved = edited(MASS_GRAVE, {"original_language": "en", "title": "Graves"})
    whole = edited(MASS_GRAVE, {"title": {"en": "Grave"}})
    summary = edited(MASS_GRAVE, {"language": "en", "summary": "s"})
    assert french["title"] == {"ar": "مقبرة جماعية", "en": "Mass grave", "fr": "Fosse commune"}
    assert "language" not in french
    assert original["title"] == {"ar": "مقابر", "en": "Mass grave"}
    assert moved["title"] == {"ar": "مقبرة جماعية", "en": "Graves"}
    assert whole["title"] == {"en": "Grave"}
    assert summary["summary"] == {"en": "s"} and summary["title"] == MASS_GRAVE["title"]


def test_a_plain_string_at_creation_is_in_language_first() -> None:
    both = {"title": {"ar": "مقبرة"}, "summary": "s", "language": "en", "original_language": "ar"}
    document = IncidentDocument.model_validate(both)
    assert document.summary == {"en": "s"} and document.original_language == "ar"
    untagged = IncidentDocument.model_validate({"title": "بلا لغة"})
    assert untagged.title == {"und": "بلا لغة"} and untagged.original_language == "und"
