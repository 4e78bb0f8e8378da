"""Text normalisation for search, the same on every database.

Arabic is written with optional diacritics (tashkeel), several forms of alef and hamza,
decorative stretching (tatweel) and attached prefixes (the article ال and the
conjunctions and prepositions before it). An investigator typing مقبرة must find
المَقْبَرَة. Both the indexed text and the query go through `search_tokens`, so the
database only has to match plain tokens (by prefix, for suffixes and plurals). English
words are reduced to their Snowball stem, so "killings" finds "killing".
"""

from __future__ import annotations

import re
import threading
import unicodedata

import snowballstemmer

_TATWEEL = "\u0640"
_LETTERS = str.maketrans(
    {
        # أ إ آ ؤ ئ lose their hamza or madda in decomposition; these have none to lose.
        "\u0671": "\u0627",  # ٱ alef wasla → ا
        "\u0649": "\u064a",  # ى alef maqsura → ي
        "\u0629": "\u0647",  # ة teh marbuta → ه
    }
)
_WORD = re.compile(r"\w+")
# Attached prefixes, longest first: "and the", "by the", "as the", "so the", "for the", "the".
_ARABIC_PREFIXES = ("وال", "بال", "كال", "فال", "لل", "ال")
_MIN_STEM = 2
_LATIN_WORD = re.compile(r"[a-z]+")
# A Snowball stemmer holds the word it is working on in its own fields, so one shared by
# request threads mixes their words up (and fails): each thread gets its own.
_STEMMERS = threading.local()
MAX_QUERY_TOKENS = 16


def normalise(text: str) -> str:
    """Case-folded text without diacritics (any script's combining marks), Arabic unified."""
    decomposed = unicodedata.normalize("NFKD", text).replace(_TATWEEL, "")
    bare = "".join(c for c in decomposed if unicodedata.category(c) != "Mn")
    return unicodedata.normalize("NFKC", bare).translate(_LETTERS).casefold()


def _english_stem(word: str) -> str:
    stemmer = getattr(_STEMMERS, "english", None)
    if stemmer is None:
        stemmer = _STEMMERS.english = snowballstemmer.stemmer("english")
    return str(stemmer.stemWord(word))


def _stem(token: str) -> str:
    if _LATIN_WORD.fullmatch(token):
        return _english_stem(token)  # killings, killing → kill
    for prefix in _ARABIC_PREFIXES:
        if token.startswith(prefix) and len(token) - len(prefix) >= _MIN_STEM:
            return token[len(prefix) :]
    return token


def index_tokens(text: str) -> list[str]:
    """The tokens stored for `text`: each word and, if it differs, its stem."""
    tokens: list[str] = []
    for word in _WORD.findall(normalise(text)):
        tokens.append(word)
        stem = _stem(word)
        if stem != word:
            tokens.append(stem)
    return tokens


def search_tokens(query: str) -> list[str]:
    """The stems a query must all match (by prefix), in order, without repeats."""
    stems = [_stem(word) for word in _WORD.findall(normalise(query))]
    return list(dict.fromkeys(stems))[:MAX_QUERY_TOKENS]
