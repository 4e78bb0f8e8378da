"""Custody entries: canonical leaf bytes and strict decoding."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.core.entry import ENTRY_FORMAT, decode_entry, encode_entry
from service.errors import FormatError

FIELDS: dict[str, object] = {
    "index": 7,
    "time": "2024-05-01T12:00:00Z",
    "organisation": "org-1",
    "actor": "محققة",
    "action": "ingest",
    "subject": "evidence/abc",
    "sha256": "sha256:" + "0" * 64,
}


def test_encoding_is_canonical_json_with_format() -> None:
    leaf = encode_entry(FIELDS)
    assert (
        leaf
        == (
            '{"action":"ingest","actor":"محققة","format":"locker.custody.v1","index":7,'
            '"organisation":"org-1","sha256":"sha256:' + "0" * 64 + '",'
            '"subject":"evidence/abc","time":"2024-05-01T12:00:00Z"}'
        ).encode()
    )
    assert decode_entry(leaf) == {"format": ENTRY_FORMAT, **FIELDS}


@given(
    extra=st.dictionaries(
        st.text(min_size=1).filter(lambda k: k not in FIELDS and k != "format"),
        st.text() | st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1),
        max_size=4,
    ),
    actor=st.text(),
)
def test_round_trip(extra: dict[str, object], actor: str) -> None:
    fields = {**FIELDS, **extra, "actor": actor}
    assert decode_entry(encode_entry(fields)) == {"format": ENTRY_FORMAT, **fields}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"format": "x"}, "must not set 'format'"),
        ({"index": None}, "'index' must be a int"),
        ({"index": True}, "'index' must be a int"),
        ({"index": "7"}, "'index' must be a int"),
        ({"index": -1}, "must not be negative"),
        ({"actor": 3}, "'actor' must be a str"),
        ({"subject": None}, "'subject' must be a str"),
        ({"extra": {1, 2}}, "cannot canonicalise"),
    ],
)
def test_encode_refuses_bad_fields(change: dict[str, object], message: str) -> None:
    fields = {k: v for k, v in {**FIELDS, **change}.items() if v is not None}
    with pytest.raises(FormatError, match=message):
        encode_entry(fields)


LEAF = encode_entry(FIELDS)


@pytest.mark.parametrize(
    ("leaf", "message"),
    [
        (b"\xff", "not UTF-8 JSON"),
        (b"{", "not UTF-8 JSON"),
        (b"[" * 100_000, "not UTF-8 JSON"),
        (b"[]", "not a JSON object"),
        (LEAF.replace(b"locker.custody.v1", b"locker.custody.v2"), "format is not"),
        (b'{"format":"locker.custody.v1"}', "'index' must be a int"),
        (LEAF.replace(b":7,", b":7.0,"), "'index' must be a int"),
        (LEAF.replace(b",", b", "), "not canonical"),
        (LEAF + b"\n", "not canonical"),
        (LEAF.replace(b'"index":7', b'"index":7,"index":7'), "not canonical"),
        (LEAF.replace("محققة".encode(), b"\\u0645\\u062d\\u0642\\u0642\\u0629"), "not canonical"),
        (LEAF.replace(b'{"action":"ingest",', b"{")[:-1] + b',"action":"ingest"}', "not canonical"),
    ],
)
def test_decode_is_strict(leaf: bytes, message: str) -> None:
    with pytest.raises(FormatError, match=message):
        decode_entry(leaf)


def test_decoded_fields_match_json() -> None:
    assert decode_entry(LEAF) == json.loads(LEAF)
