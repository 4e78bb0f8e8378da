"""The Range and If-Range rules (RFC 9110 §13.1.5, §14), apart from any server."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from service.errors import RangeNotSatisfiable
from service.evidence.ranges import ByteRange, RangeRequest, entity_tag, http_date

ETAG = entity_tag("ab" * 32)
STORED = datetime(2020, 6, 10, 9, 30, 15, 123456, tzinfo=UTC)


def _resolve(header: str, size: int = 100, if_range: str | None = None) -> ByteRange | None:
    wanted = RangeRequest.from_headers(header, if_range)
    assert wanted is not None
    return wanted.resolve(size=size, etag=ETAG, last_modified=STORED)


@pytest.mark.parametrize(
    ("header", "start", "length"),
    [
        ("bytes=0-9", 0, 10),
        ("bytes=10-", 10, 90),
        ("bytes=-30", 70, 30),
        ("bytes=-500", 0, 100),
        ("bytes=90-1000", 90, 10),
        ("bytes=99-99", 99, 1),
        ("bytes = 5 - 6", 5, 2),
    ],
)
def test_a_single_range_resolves_against_the_size(header: str, start: int, length: int) -> None:
    assert _resolve(header) == ByteRange(start=start, length=length, size=100)


def test_content_range_and_whole() -> None:
    assert ByteRange(start=70, length=30, size=100).content_range() == "bytes 70-99/100"
    assert ByteRange(start=0, length=100, size=100).whole
    assert not ByteRange(start=0, length=99, size=100).whole


@pytest.mark.parametrize(
    "header",
    ["bytes=0-1,5-6", "items=0-1", "bytes=", "bytes=a-b", "bytes=-", "bytes=1-2-3"],
)
def test_several_ranges_or_an_unreadable_header_mean_the_whole_object(header: str) -> None:
    assert RangeRequest.from_headers(header, None) is None


def test_no_range_header_means_the_whole_object() -> None:
    assert RangeRequest.from_headers(None, ETAG) is None


def test_a_range_ending_before_it_starts_is_ignored() -> None:
    assert _resolve("bytes=9-3") is None


@pytest.mark.parametrize(
    ("header", "size"),
    [("bytes=100-", 100), ("bytes=100-200", 100), ("bytes=-0", 100), ("bytes=-5", 0)],
)
def test_a_range_with_no_byte_of_the_object_is_not_satisfiable(header: str, size: int) -> None:
    with pytest.raises(RangeNotSatisfiable) as refused:
        _resolve(header, size=size)
    assert refused.value.size == size


@pytest.mark.parametrize(
    ("if_range", "applies"),
    [
        (ETAG, True),
        (f"W/{ETAG}", False),
        (entity_tag("cd" * 32), False),
        ("Wed, 10 Jun 2020 09:30:15 GMT", True),
        ("Wed, 10 Jun 2020 09:30:16 GMT", False),
        ("not a date", False),
        ("Wed, 10 Jun 2020 09:30:15 -0000", False),
    ],
)
def test_if_range_serves_the_range_only_for_the_same_version(if_range: str, applies: bool) -> None:
    expected = ByteRange(start=10, length=90, size=100) if applies else None
    assert _resolve("bytes=10-", if_range=if_range) == expected


def test_last_modified_is_an_imf_fixdate_of_whole_seconds() -> None:
    assert http_date(STORED) == "Wed, 10 Jun 2020 09:30:15 GMT"
    # SQLite gives stored UTC times back without their zone.
    assert http_date(STORED.replace(tzinfo=None)) == "Wed, 10 Jun 2020 09:30:15 GMT"
    assert _resolve("bytes=1-", if_range=http_date(STORED.replace(tzinfo=None))) is not None
