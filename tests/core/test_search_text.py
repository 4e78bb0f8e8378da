"""Search normalisation: Arabic variants and diacritics meet on the same tokens."""

from __future__ import annotations

import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from service.core.search_text import index_tokens, normalise, search_tokens


@pytest.mark.parametrize(
    ("written", "plain"),
    [
        ("مَقْبَرَة", "مقبره"),  # tashkeel dropped, teh marbuta → heh
        ("مقـــبرة", "مقبره"),  # tatweel dropped
        ("أحمد", "احمد"),
        ("إخفاء", "اخفاء"),
        ("آثار", "اثار"),
        ("ٱلله", "الله"),  # alef wasla
        ("مستشفى", "مستشفي"),  # alef maqsura → yeh
        ("مسؤول", "مسوول"),
        ("Café GRAVES", "cafe graves"),
        ("２０２０", "2020"),  # full-width digits
    ],
)
def test_normalise(written: str, plain: str) -> None:
    assert normalise(written) == plain


def test_index_keeps_the_word_and_adds_its_stem() -> None:
    assert index_tokens("المقابر والمستشفى بالمدينة") == [
        "المقابر",
        "مقابر",
        "والمستشفي",
        "مستشفي",
        "بالمدينه",
        "مدينه",
    ]


def test_query_uses_stems_once_each() -> None:
    assert search_tokens("المقبرة مقبرة، ال") == ["مقبره", "ال"]
    assert search_tokens("   ؟!  ") == []


def test_short_words_keep_their_prefix_letters() -> None:
    # "الم" has one letter after the article: too short to be a stem.
    assert index_tokens("الم") == ["الم"]


def test_english_words_meet_on_their_stem() -> None:
    assert search_tokens("killings") == search_tokens("killing") == ["kill"]
    assert "kill" in index_tokens("Killings in Tarhuna")
    assert search_tokens("disappeared") == ["disappear"]
    assert "disappear" in index_tokens("enforced disappearances")


def test_threads_stemming_at_once_each_get_their_own_words_stemmed() -> None:
    """A Snowball stemmer keeps its word in its own fields: request threads indexing at
    once must not stem each other's words (a shared one gave wrong stems and IndexError)."""
    texts = [
        f"killings {'documented ' * (n % 7)}witnesses interviewed graves exhumed {n}"
        for n in range(64)
    ]
    expected = [index_tokens(text) for text in texts]
    start = threading.Barrier(8)

    def index_all(offset: int) -> list[list[str]]:
        start.wait()
        return [index_tokens(texts[(offset + n) % len(texts)]) for n in range(200)]

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads switch often, mid-word too
    try:
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(index_all, range(8)))
    finally:
        sys.setswitchinterval(interval)
    for offset, got in enumerate(results):
        assert got == [expected[(offset + n) % len(texts)] for n in range(200)]
