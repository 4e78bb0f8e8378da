"""BCP 47 language tags (RFC 5646): which are well formed, and the one case each is kept in.

Tags are case-insensitive (RFC 5646 §2.1.1), so `AR`, `ar` and `Ar` are one language;
the locker keeps each tag in the case that section recommends (`ar`, `ar-LY`, `sr-Latn`).
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, StringConstraints

# Well-formed tags: language (or extended language), optional script, region and variants.
_WELL_FORMED = re.compile(
    r"^(?:[a-z]{2,3}(?:-[a-z]{3}){0,3}|[a-z]{4,8})"
    r"(?:-[a-z]{4})?(?:-(?:[a-z]{2}|[0-9]{3}))?"
    r"(?:-(?:[a-z0-9]{5,8}|[0-9][a-z0-9]{3}))*$",
    re.IGNORECASE,
)


def canonical_case(tag: str) -> str:
    """The tag in RFC 5646 §2.1.1 case: `AR-ly` becomes `ar-LY`, `SR-LATN` `sr-Latn`."""
    language, *rest = tag.lower().split("-")
    return "-".join([language, *map(_subtag_case, rest)])


def _subtag_case(subtag: str) -> str:
    # After the language, two letters are a region and four a script (or a variant that
    # starts with a digit, which capitalize() leaves alone); the rest stay lower case.
    if len(subtag) == 2:
        return subtag.upper()
    return subtag.capitalize() if len(subtag) == 4 else subtag


def _well_formed(value: str) -> str:
    if not _WELL_FORMED.match(value):
        raise ValueError(f"{value!r} is not a BCP 47 language tag (e.g. ar, en, ar-LY)")
    return canonical_case(value)


def _one_text_per_language(texts: Any) -> Any:
    # "ar" and "AR" would become one key: refuse the pair rather than keep either silently.
    if isinstance(texts, dict):
        seen: dict[str, str] = {}
        for tag in (key for key in texts if isinstance(key, str)):
            first = seen.setdefault(canonical_case(tag), tag)
            if first != tag:
                raise ValueError(f"{first!r} and {tag!r} are the same language")
    return texts


LanguageTag = Annotated[str, StringConstraints(max_length=35), AfterValidator(_well_formed)]
"""A well-formed tag, kept in its canonical case."""

ONE_TEXT_PER_LANGUAGE = BeforeValidator(_one_text_per_language)
"""For a dict keyed by LanguageTag: refuses two keys that name one language."""
