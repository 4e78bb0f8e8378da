"""Custody entries: canonical leaf bytes and strict decoding."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.core.entry import (
    ENTRY_FORMAT,
    ENTRY_FORMAT_V1,
    RESERVED,
    decode_entry,
    encode_entry,
    entry_fields,
    entry_subjects,
)
from service.errors import FormatError

FIELDS: dict[str, object] = {
    "index": 7,
    "time": "2024-05-01T12:00:00Z",
    "organisation": "org-1",
    "actor": "محققة",
    "action": "ingest",
    "subject": "evidence/abc",
    "subjects": ["evidence/abc"],
    "sha256": "sha256:" + "0" * 64,
}
V1_FIELDS = {k: v for k, v in FIELDS.items() if k != "subjects"}


def test_encoding_is_canonical_json_with_format() -> None:
    leaf = encode_entry(FIELDS)
    assert (
        leaf
        == (
            '{"action":"ingest","actor":"محققة","format":"locker.custody.v2","index":7,'
            '"organisation":"org-1","sha256":"sha256:' + "0" * 64 + '",'
            '"subject":"evidence/abc","subjects":["evidence/abc"],'
            '"time":"2024-05-01T12:00:00Z"}'
        ).encode()
    )
    assert decode_entry(leaf) == {"format": ENTRY_FORMAT, **FIELDS}


def test_v1_entries_keep_decoding() -> None:
    """A leaf written before v2 (one signed subject) decodes as it was signed."""
    leaf = (
        '{"action":"ingest","actor":"محققة","format":"locker.custody.v1","index":7,'
        '"organisation":"org-1","sha256":"sha256:' + "0" * 64 + '",'
        '"subject":"evidence/abc","time":"2024-05-01T12:00:00Z"}'
    ).encode()
    assert encode_entry(V1_FIELDS, entry_format=ENTRY_FORMAT_V1) == leaf
    fields = decode_entry(leaf)
    assert fields == {"format": ENTRY_FORMAT_V1, **V1_FIELDS}
    assert entry_subjects(fields) == ["evidence/abc"]


def test_every_subject_is_signed() -> None:
    """A grant signs its grantee; a near-duplicate both items (finding 5)."""
    fields = entry_fields(
        index=3,
        time="2024-05-01T12:00:00Z",
        organisation="org-1",
        actor="user:1",
        action="access.granted",
        subjects=["evidence:e-1", "user:u-2", "evidence:e-1"],
    )
    leaf = encode_entry(fields)
    assert b'"subjects":["evidence:e-1","user:u-2"]' in leaf
    assert entry_subjects(decode_entry(leaf)) == ["evidence:e-1", "user:u-2"]


@pytest.mark.parametrize("name", sorted(RESERVED))
def test_details_cannot_shadow_signed_fields(name: str) -> None:
    with pytest.raises(FormatError, match=f"must not set signed fields: \\['{name}'\\]"):
        entry_fields(
            index=3,
            time="t",
            organisation="org-1",
            actor="user:1",
            action="access.granted",
            subjects=["evidence:e-1"],
            details={name: "org-2"},
        )


def test_an_entry_needs_a_subject() -> None:
    with pytest.raises(FormatError, match="at least one subject"):
        entry_fields(index=0, time="t", organisation="o", actor="a", action="x", subjects=[])
    with pytest.raises(FormatError, match="format must be one of"):
        encode_entry(V1_FIELDS, entry_format="locker.custody.v3")


@given(
    extra=st.dictionaries(
        st.text(min_size=1).filter(lambda k: k not in RESERVED and k not in FIELDS),
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
        ({"subjects": None}, "'subjects' must be a list of str"),
        ({"subjects": "evidence/abc"}, "'subjects' must be a list of str"),
        ({"subjects": ["evidence/abc", 3]}, "'subjects' must be a list of str"),
        ({"subjects": []}, "must start with its 'subject'"),
        ({"subjects": ["user:1", "evidence/abc"]}, "must start with its 'subject'"),
        ({"subjects": ["evidence/abc", "evidence/abc"]}, "must not repeat"),
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
        (LEAF.replace(b"locker.custody.v2", b"locker.custody.v3"), "format is not"),
        (LEAF.replace(b"locker.custody.v2", b"locker.custody.v1"), "cannot carry 'subjects'"),
        (LEAF.replace(b'"subjects":["evidence/abc"]', b'"subjects":[]'), "must start with"),
        (
            LEAF.replace(b'"subject":"evidence/abc",', b'"subject":"evidence/x",'),
            "must start with",
        ),
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
