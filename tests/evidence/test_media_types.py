"""Media types sniffed from the bytes: a weak signature names nothing."""

from __future__ import annotations

import pytest

from service.evidence.media_types import sniff_media_type


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        # Binary bytes that merely start with `{` (one file in 256 of random bytes).
        (b"{\xb0\x93\x00\x17\xfe\x81" + bytes(range(256)), "application/octet-stream"),
        (b'{"witness": "W-17", "statement": 3}', "application/json"),
        (b'{\n  "witness": "W-17"\n}\n', "text/plain; charset=utf-8"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(64), "image/jpeg"),
        (b"%PDF-1.7\n" + bytes(64), "application/pdf"),
        ("شهادة الشاهد".encode(), "text/plain; charset=utf-8"),
        (b"", "application/octet-stream"),
    ],
)
def test_sniffed_media_types(head: bytes, expected: str) -> None:
    assert sniff_media_type(head) == expected
