"""The one safe form of a file name: nothing invisible, nothing Windows refuses."""

from __future__ import annotations

import unicodedata
from urllib.parse import unquote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.core.bagit import unsafe_path
from service.core.names import attachment_disposition, safe_filename, visible_text


@pytest.mark.parametrize(
    ("name", "safe"),
    [
        ("photo\u202egpj.exe", "photogpj.exe"),  # displayed as "photoexe.jpg"
        ("a\u2066b\u2069c\u200dd\u200be\ufefff.pdf", "abcdef.pdf"),
        ('say "hi".txt', "say _hi_.txt"),
        ("a<b>c:d|e?f*g.txt", "a_b_c_d_e_f_g.txt"),
        ("CON", "_CON"),
        ("nul.txt", "_nul.txt"),
        ("console.txt", "console.txt"),
        ("report. ", "report__"),
        ("line\u2028break", "linebreak"),
        ("شهادة الشاهد.txt", "شهادة الشاهد.txt"),
        ("\u202e", "_"),
    ],
)
def test_safe_filename_removes_what_could_lie(name: str, safe: str) -> None:
    assert safe_filename(name) == safe


@given(st.text(max_size=300))
def test_safe_filename_never_contains_invisible_or_refused_characters(name: str) -> None:
    safe = safe_filename(name)
    assert safe and len(safe.encode()) <= 200
    assert not unsafe_path(safe)
    assert unicodedata.is_normalized("NFC", safe)
    for character in safe:
        assert unicodedata.category(character) not in {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}
        assert character not in '/\\<>:"|?*'
    assert not safe.endswith((".", " "))
    assert safe_filename(safe) == safe


def test_attachment_disposition_has_an_ascii_fallback_and_the_safe_utf8_name() -> None:
    header = attachment_disposition('صورة\u202e"x.jpg')
    assert header.isascii()
    fallback = header.split('filename="')[1].split('"')[0]
    assert fallback == "_____x.jpg"
    encoded = header.split("filename*=UTF-8''")[1]
    assert unquote(encoded) == "صورة_x.jpg"


def test_visible_text_keeps_words_and_drops_what_cannot_be_seen() -> None:
    assert visible_text("data/photo\u202egpj.exe: missing\x1b[2J") == (
        "data/photogpj.exe: missing\ufffd[2J"
    )
