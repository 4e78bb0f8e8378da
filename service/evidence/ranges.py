"""Resumable downloads: one byte range of a stored object (RFC 9110 §14), and If-Range.

Pure rules, applied by `service.evidence.reading` once the record (size, SHA-256, time
of receipt) is known. Only a single range is served; a request for several is answered
with the whole object (200), which RFC 9110 §14.2 allows ("a server MAY ignore the
Range header field"), as is a Range header this parser does not understand.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime

from service.errors import RangeNotSatisfiable

# RFC 9110 §14.1.1: `bytes=first-last`, `bytes=first-` or the suffix `bytes=-length`.
_SINGLE = re.compile(r"bytes=(?:(\d{1,19})-(\d{0,19})|-(\d{1,19}))")


@dataclass(frozen=True, slots=True, kw_only=True)
class ByteRange:
    """The bytes `start` … `start + length - 1` of an object of `size` bytes."""

    start: int
    length: int
    size: int

    @property
    def whole(self) -> bool:
        """Whether the range is the entire object (then it is read and verified whole)."""
        return self.start == 0 and self.length == self.size

    def content_range(self) -> str:
        """The Content-Range of a 206 answer (RFC 9110 §14.4)."""
        return f"bytes {self.start}-{self.start + self.length - 1}/{self.size}"


@dataclass(frozen=True, slots=True, kw_only=True)
class RangeRequest:
    """What a request's Range and If-Range headers ask for, before the object is known.

    `first`/`last` as written (`last` None: to the end); a suffix request has `first`
    None and `last` the number of final bytes.
    """

    first: int | None
    last: int | None
    if_range: str | None = None

    @classmethod
    def from_headers(cls, range_header: str | None, if_range: str | None) -> RangeRequest | None:
        """The single byte range asked for, or None (no Range, several, or not understood)."""
        if range_header is None:
            return None
        matched = _SINGLE.fullmatch(range_header.replace(" ", ""))
        if matched is None:
            return None
        first, last, suffix = matched.groups()
        if suffix is not None:
            return cls(first=None, last=int(suffix), if_range=if_range)
        return cls(first=int(first), last=int(last) if last else None, if_range=if_range)

    def resolve(self, *, size: int, etag: str, last_modified: datetime) -> ByteRange | None:
        """The range to serve from an object of `size` bytes, or None for the whole object.

        None also when If-Range names another version (RFC 9110 §13.1.5): the client's
        partial copy is stale and gets the whole object. Raises RangeNotSatisfiable when
        no byte of the object is in the range.
        """
        if self.if_range is not None and not _still_valid(self.if_range, etag, last_modified):
            return None
        if self.first is None:
            assert self.last is not None
            if self.last == 0 or size == 0:
                raise RangeNotSatisfiable("range: an empty suffix selects no byte", size=size)
            length = min(self.last, size)
            return ByteRange(start=size - length, length=length, size=size)
        if self.last is not None and self.last < self.first:
            return None  # invalid (RFC 9110 §14.1.1): ignored like any range we do not read
        if self.first >= size:
            raise RangeNotSatisfiable(
                f"range: starts at byte {self.first}, the object has {size}", size=size
            )
        end = size - 1 if self.last is None else min(self.last, size - 1)
        return ByteRange(start=self.first, length=end - self.first + 1, size=size)


def _utc(moment: datetime) -> datetime:
    # SQLite hands back the stored UTC times without their zone.
    whole = moment.replace(microsecond=0)
    return whole if whole.tzinfo is not None else whole.replace(tzinfo=UTC)


def entity_tag(sha256_hex: str) -> str:
    """The strong ETag of stored bytes: their SHA-256, which no other content has."""
    return f'"{sha256_hex}"'


def http_date(moment: datetime) -> str:
    """An IMF-fixdate (RFC 9110 §5.6.7), as Last-Modified carries it."""
    return format_datetime(_utc(moment).astimezone(UTC), usegmt=True)


def _still_valid(if_range: str, etag: str, last_modified: datetime) -> bool:
    """Whether If-Range names this very object: the same strong ETag, or its date.

    A weak tag never matches (§13.1.5). The stored bytes of a record never change, so
    its time of receipt is a strong validator once a second has passed.
    """
    value = if_range.strip()
    if value.startswith(('"', "W/")):
        return value == etag
    try:
        given = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return False
    return given.tzinfo is not None and given == _utc(last_modified)
