"""RFC 8785 canonical JSON."""

from __future__ import annotations

import hashlib
import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.core.canonical import canonical_json, canonical_sha256
from service.errors import FormatError


def test_sorted_keys_no_whitespace() -> None:
    assert canonical_json({"b": [1, 2.5, None], "a": True, "c": {"y": "", "x": 1e21}}) == (
        b'{"a":true,"b":[1,2.5,null],"c":{"x":1e+21,"y":""}}'
    )


def test_rfc8785_key_order_is_utf16() -> None:
    # RFC 8785 §3.2.3: keys sort by UTF-16 code units, so U+1F600 (a surrogate pair,
    # 0xD83D...) comes before U+FB33 even though its code point is larger.
    value = {"\ufb33": 1, "\U0001f600": 2, "\r": 3}
    assert canonical_json(value) == '{"\\r":3,"\U0001f600":2,"\ufb33":1}'.encode()


def test_arabic_round_trips_exactly() -> None:
    text = "شهادة الشاهد: تم التصوير في حلب، ٢٠٢٤"
    encoded = canonical_json({"note": text})
    assert encoded == ('{"note":"' + text + '"}').encode("utf-8")
    assert json.loads(encoded) == {"note": text}


@pytest.mark.parametrize(
    "value",
    [
        2**53,
        -(2**53),
        math.nan,
        math.inf,
        {1: "non-string key"},
        {"set": {1, 2}},
        b"bytes",
        "\ud800",  # a lone surrogate is not Unicode text
        {"\ud800": 1},
    ],
)
def test_unrepresentable_values(value: object) -> None:
    with pytest.raises(FormatError, match="cannot canonicalise"):
        canonical_json(value)


def test_cycles_are_refused() -> None:
    cycle: list[object] = []
    cycle.append(cycle)
    with pytest.raises(FormatError):
        canonical_json(cycle)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1)
    | st.text(alphabet=st.characters(exclude_categories=["Cs"])),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=20,
)


@given(json_values)
def test_parse_and_reencode_is_stable(value: object) -> None:
    encoded = canonical_json(value)
    assert canonical_json(json.loads(encoded)) == encoded


def test_the_digest_is_sha256_of_the_canonical_bytes() -> None:
    value = {"b": 1, "a": "شاهد"}
    expected = hashlib.sha256('{"a":"شاهد","b":1}'.encode()).hexdigest()
    assert canonical_sha256(value) == expected
    assert canonical_sha256({"a": "شاهد", "b": 1}) == expected  # key order does not matter
