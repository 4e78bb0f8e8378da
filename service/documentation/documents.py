"""The documentation model: what an investigator records about incidents and items.

Modelled on the HURIDOCS Events Standard Formats (an event with its dates of known
precision, places, violation categories and the people involved) and the Berkeley
Protocol on Digital Open Source Investigations (what the collector asserts about a
source, graded for reliability and credibility, kept apart from what the file says).
Pure validation: every bad value is a 422 naming its field.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any, Literal, Self, TypeVar

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    Strict,
    StrictInt,
    StringConstraints,
    ValidationInfo,
    model_validator,
)

from service.core.canonical import canonical_json
from service.documentation.countries import COUNTRY_CODES
from service.documentation.languages import ONE_TEXT_PER_LANGUAGE, LanguageTag, canonical_case
from service.errors import FormatError, one_line


def _country(value: str) -> str:
    if value.upper() not in COUNTRY_CODES:
        raise ValueError(f"{value!r} is not an ISO 3166-1 alpha-2 country code")
    return value.upper()


Title = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]
LongText = Annotated[str, StringConstraints(max_length=20_000)]
ShortText = Annotated[str, StringConstraints(max_length=500)]
Label = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
Precision = Literal["exact", "day", "month", "year"]
Status = Literal["open", "under_review", "corroborated", "closed"]
STATUSES: tuple[str, ...] = ("open", "under_review", "corroborated", "closed")

_EARLIEST_YEAR, _LATEST_YEAR = 1000, 2999
_FORMATS = {"day": "%Y-%m-%d", "month": "%Y-%m", "year": "%Y"}


class _Strict(BaseModel):
    # Unknown fields are refused and JSON types are not coerced ("yes" and 1 are not true).
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class FuzzyDate(_Strict):
    """A date known to some precision: an exact time, a day, a month or only a year.

    `approximate` says the value itself is an estimate ("around June 2020").
    """

    value: str = Field(max_length=40)
    precision: Precision = "day"
    approximate: bool = False

    @model_validator(mode="after")
    def _parses(self) -> FuzzyDate:
        self.bounds()  # raises ValueError naming the expected form
        return self

    def bounds(self) -> tuple[datetime, datetime]:
        """The first and last instant the value may mean (UTC)."""
        if self.precision == "exact":
            moment = _within_calendar(self._exact_time()).astimezone(UTC)
            return moment, moment
        day = _within_calendar(self._calendar_day())
        last = _last_day(day, self.precision)
        return datetime.combine(day, time(), UTC), datetime.combine(last, time.max, UTC)

    def _exact_time(self) -> datetime:
        try:
            moment = datetime.fromisoformat(self.value.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"{self.value!r} is not an RFC 3339 time") from None
        if moment.tzinfo is None:
            raise ValueError(f"{self.value!r} has no time zone offset")
        return moment

    def _calendar_day(self) -> date:
        try:
            return datetime.strptime(self.value, _FORMATS[self.precision]).date()
        except ValueError:
            example = {"day": "2020-06-05", "month": "2020-06", "year": "2020"}[self.precision]
            raise ValueError(
                f"{self.value!r} does not match precision {self.precision} (e.g. {example})"
            ) from None


_Day = TypeVar("_Day", bound=date)


def _within_calendar(value: _Day) -> _Day:
    # Checked before any arithmetic: near year 1 or 9999 the move to UTC, or to the end
    # of the month, overflows.
    if not _EARLIEST_YEAR <= value.year <= _LATEST_YEAR:
        raise ValueError(f"year {value.year} is out of range ({_EARLIEST_YEAR}–{_LATEST_YEAR})")
    return value


def _last_day(day: date, precision: str) -> date:
    if precision == "year":
        return date(day.year, 12, 31)
    if precision == "month":
        following = date(day.year + day.month // 12, day.month % 12 + 1, 1)
        return following - timedelta(days=1)
    return day


class Place(_Strict):
    """A place: its name, administrative area, country, and coordinates if known."""

    name: ShortText | None = None
    admin_area: ShortText | None = None
    country: Annotated[str, AfterValidator(_country)] | None = None
    lat: float | None = Field(default=None, ge=-90, le=90)
    lon: float | None = Field(default=None, ge=-180, le=180)
    precision_m: int | None = Field(default=None, ge=0, le=20_000_000)

    @model_validator(mode="after")
    def _both_coordinates(self) -> Place:
        if (self.lat is None) != (self.lon is None):
            raise ValueError("give both lat and lon, or neither")
        return self


class Actor(_Strict):
    """A victim or alleged perpetrator: a person or a group, possibly counted, not named."""

    role: Literal["victim", "perpetrator"]
    kind: Literal["individual", "group"] = "individual"
    name: ShortText | None = None
    count: int | None = Field(default=None, ge=1, le=10_000_000)
    affiliation: ShortText | None = None
    identity_restricted: bool = False


_TEXTS = ("title", "summary")


def _shorthand_texts(data: Any) -> Any:
    """Let `title` and `summary` be plain strings in `language` (else the original one)."""
    if not isinstance(data, dict):
        return data
    data = dict(data)
    language = _written_in(data.pop("language", None), data.get("original_language"))
    for name in _TEXTS:
        if isinstance(data.get(name), str):
            data[name] = {language: data[name]}
    if "original_language" not in data and isinstance(data.get("title"), dict):
        titles = data["title"]
        data["original_language"] = language if language in titles else next(iter(titles), "und")
    return data


def edited(document: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON of a new version: `document` with `changes` applied.

    A plain-string title or summary sets the text in `language` (else in the original
    language) and keeps the other languages' texts; a dict replaces them all.
    """
    merged = dict(document) | {k: v for k, v in changes.items() if k != "language"}
    language = _written_in(changes.get("language"), merged.get("original_language"))
    for name in _TEXTS:
        if isinstance(changes.get(name), str):
            texts = {canonical_case(tag): text for tag, text in document.get(name, {}).items()}
            merged[name] = texts | {language: changes[name]}
    return merged


def _written_in(language: Any, original_language: Any) -> Any:
    # The language of a plain-string text, in canonical case so that it replaces the text
    # already held in that language; a non-string is left for validation to refuse.
    tag = language or original_language or "und"
    return canonical_case(tag) if isinstance(tag, str) else tag


class IncidentDocument(_Strict):
    """One version of an incident's record (HURIDOCS "event")."""

    title: Annotated[dict[LanguageTag, Title], ONE_TEXT_PER_LANGUAGE] = Field(
        min_length=1, max_length=20
    )
    summary: Annotated[dict[LanguageTag, LongText], ONE_TEXT_PER_LANGUAGE] = Field(
        default_factory=dict, max_length=20
    )
    original_language: LanguageTag
    start: FuzzyDate | None = None
    end: FuzzyDate | None = None
    locations: list[Place] = Field(default_factory=list, max_length=50)
    categories: list[Label] = Field(default_factory=list, max_length=50)
    actors: list[Actor] = Field(default_factory=list, max_length=500)
    status: Status = "open"
    tags: list[Label] = Field(default_factory=list, max_length=50)
    related_incidents: list[Annotated[str, StringConstraints(max_length=36)]] = Field(
        default_factory=list, max_length=100
    )

    _shorthand = model_validator(mode="before")(_shorthand_texts)

    @model_validator(mode="after")
    def _consistent(self) -> IncidentDocument:
        if self.original_language not in self.title:
            raise ValueError(f"original_language: no title in {self.original_language!r}")
        if self.start and self.end and self.end.bounds()[1] < self.start.bounds()[0]:
            raise ValueError("end: must not be before start")
        return self

    def display_title(self) -> str:
        """The title in the language the record was written in."""
        return self.title[self.original_language]

    def period(self) -> tuple[datetime | None, datetime | None]:
        """The widest interval the dates allow (for date-range filters)."""
        earliest = self.start.bounds()[0] if self.start else None
        latest = (
            self.end.bounds()[1] if self.end else (self.start.bounds()[1] if self.start else None)
        )
        return earliest, latest

    def search_text(self) -> str:
        """What search should find it by; restricted identities are left out."""
        parts = [*self.title.values(), *self.summary.values(), *self.tags, *self.categories]
        for place in self.locations:
            parts += [place.name or "", place.admin_area or "", place.country or ""]
        for actor in self.actors:
            parts.append(actor.affiliation or "")
            if not actor.identity_restricted:
                parts.append(actor.name or "")
        return "\n".join(p for p in parts if p)


Reliability = Literal["A", "B", "C", "D", "E", "F"]
# An integer, not Literal[1, …]: a Literal takes true for 1 even in strict mode.
Credibility = Annotated[StrictInt, Field(ge=1, le=6)]


def _written_time(value: Any) -> Any:
    # A number would be taken as Unix seconds: a guess at what the collector meant.
    if isinstance(value, int | float):
        raise ValueError("give an RFC 3339 time with its offset (2020-06-10T09:30:00+02:00)")
    return value


# An instant: a time with its offset. Not strict, as JSON can only carry it as a string.
Instant = Annotated[
    AwareDatetime,
    Strict(False),
    BeforeValidator(_written_time),
    AfterValidator(_within_calendar),
]


_EXTRA_MAX_KEYS = 100
_EXTRA_MAX_DEPTH = 8
_EXTRA_MAX_BYTES = 20_000
_STORED = "stored"


def _bounded_extra(value: dict[str, JsonValue]) -> dict[str, JsonValue]:
    """Free-form additions stay small: a few levels deep and 20,000 bytes as JSON."""
    if _depth(value) > _EXTRA_MAX_DEPTH:
        raise ValueError(f"nested deeper than {_EXTRA_MAX_DEPTH} levels")
    try:
        size = len(canonical_json(value))
    except FormatError as exc:
        raise ValueError(str(exc)) from None
    if size > _EXTRA_MAX_BYTES:
        raise ValueError(f"{size} bytes as JSON; at most {_EXTRA_MAX_BYTES}")
    return value


def _depth(value: JsonValue) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


Extra = Annotated[
    dict[Annotated[str, StringConstraints(min_length=1, max_length=100)], JsonValue],
    Field(max_length=_EXTRA_MAX_KEYS),
    AfterValidator(_bounded_extra),
]


class AssertedMetadata(BaseModel):
    """What the collector says about an item (the Berkeley Protocol's source record).

    Source reliability A–F and information credibility 1–6 follow the Admiralty grading.
    Input is checked, not guessed: an unknown field (a misspelt `titel`) is refused with
    the list of known ones; free-form additions go under `extra`. Versions stored before
    that rule may hold other top-level keys: `from_stored` reads them as they were kept.
    """

    # Strict like the incident record; an upload's own fields (UploadMetadata) inherit it.
    # "allow" only so that stored versions read back whole; input is refused by
    # `_known_fields` below.
    model_config = ConfigDict(extra="allow", frozen=True, str_max_length=20_000, strict=True)

    title: ShortText | None = None
    description: LongText | None = None
    source_url: Annotated[str, StringConstraints(max_length=2048)] | None = None
    source_platform: Annotated[str, StringConstraints(max_length=100)] | None = None
    collector: ShortText | None = None
    collected_at: Instant | None = None
    captured_at: Instant | None = None
    capture_device: ShortText | None = None
    location: Place | None = None
    language: LanguageTag | None = None
    source_reliability: Reliability | None = None
    information_credibility: Credibility | None = None
    tags: list[Label] = Field(default_factory=list, max_length=50)
    extra: Extra | None = Field(
        default=None,
        description="Free-form additions (at most 100 keys, 8 levels, 20,000 bytes of JSON).",
    )

    @classmethod
    def from_stored(cls, data: Mapping[str, Any]) -> Self:
        """A version as it was stored, top-level keys of before `extra` included."""
        return cls.model_validate(data, context={_STORED: True})

    @classmethod
    def from_stored_json(cls, text: str | bytes) -> Self:
        """`from_stored` of the JSON text a version or an upload intent keeps."""
        return cls.model_validate_json(text, context={_STORED: True})

    @model_validator(mode="before")
    @classmethod
    def _known_fields(cls, data: Any, info: ValidationInfo) -> Any:
        if not isinstance(data, dict) or (info.context or {}).get(_STORED):
            return data
        unknown = sorted(set(data) - set(cls.model_fields))
        if unknown:
            name = one_line(str(unknown[0]))[:40]
            raise ValueError(
                f"unknown field {name!r} (free-form additions go under extra); "
                f"known fields: {', '.join(cls.model_fields)}"
            )
        return data

    @model_validator(mode="before")
    @classmethod
    def _representable(cls, data: Any) -> Any:
        # Kept as given and digested in the log: a value RFC 8785 cannot write (NaN,
        # infinity, an integer beyond 2**53) would otherwise be changed or lost.
        try:
            canonical_json(data)
        except FormatError as exc:
            raise ValueError(str(exc)) from None
        return data

    def search_text(self) -> str:
        """What search should find the item by."""
        parts = [self.title, self.description, self.source_platform, self.collector, *self.tags]
        if self.location:
            parts += [self.location.name, self.location.admin_area, self.location.country]
        return "\n".join(p for p in parts if p)
