"""Streaming content digests and the Digest value."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.core.digests import (
    ContentDigester,
    ContentDigests,
    Digest,
    digest_stream,
    sha256,
    sha256_hex_valid,
)
from service.errors import FormatError

# FIPS 180-2 "abc" test vectors.
ABC_SHA256 = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
ABC_SHA512 = (
    "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
    "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"
)


def test_known_answers() -> None:
    digests = digest_stream([b"a", b"", b"bc"])
    assert digests == ContentDigests(
        sha256=Digest(algorithm="sha256", hex=ABC_SHA256),
        sha512=Digest(algorithm="sha512", hex=ABC_SHA512),
        size=3,
    )
    assert sha256(b"abc") == digests.sha256
    assert str(digests.sha256) == f"sha256:{ABC_SHA256}"
    assert str(digests.sha512) == f"sha512:{ABC_SHA512}"


def test_raw_and_base64() -> None:
    digest = sha256(b"abc")
    assert digest.raw == hashlib.sha256(b"abc").digest()
    assert digest.b64 == "ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0="


def test_digester_counts_as_it_goes() -> None:
    digester = ContentDigester()
    assert digester.size == 0
    digester.update(b"ab")
    digester.update(b"c")
    assert digester.size == 3
    assert digester.finish().sha256.hex == ABC_SHA256
    assert digest_stream([]).size == 0


@given(st.lists(st.binary(max_size=300), max_size=20))
def test_chunking_does_not_matter(chunks: list[bytes]) -> None:
    whole = b"".join(chunks)
    digests = digest_stream(chunks)
    assert digests.sha256.hex == hashlib.sha256(whole).hexdigest()
    assert digests.sha512.hex == hashlib.sha512(whole).hexdigest()
    assert digests.size == len(whole)
    assert Digest.parse(str(digests.sha512)) == digests.sha512


@pytest.mark.parametrize(
    "text",
    [
        ABC_SHA256,
        f"sha256:{ABC_SHA256.upper()}",
        f"sha256:{ABC_SHA256[:-1]}",
        f"sha256:{ABC_SHA256}0",
        f"sha256: {ABC_SHA256[1:]}",
        f"sha512:{ABC_SHA256}",
        f"SHA256:{ABC_SHA256}",
        f"md5:{ABC_SHA256[:32]}",
        f"sha256:{ABC_SHA256[:-1]}g",
        f"sha256:{ABC_SHA256}\n",
        "",
    ],
)
def test_parse_refuses_malformed(text: str) -> None:
    with pytest.raises(FormatError):
        Digest.parse(text)


def test_constructor_validates_too() -> None:
    with pytest.raises(FormatError, match="64 lowercase hex"):
        Digest(algorithm="sha256", hex="00")


@pytest.mark.parametrize(
    ("text", "valid"),
    [
        (ABC_SHA256, True),
        (ABC_SHA256.upper(), False),
        (ABC_SHA256[:-1], False),
        (ABC_SHA256 + "\n", False),
        ("٠" * 64, False),  # Arabic-Indic digits are not hex
        (ABC_SHA512, False),
    ],
)
def test_sha256_hex_valid(text: str, valid: bool) -> None:
    assert sha256_hex_valid(text) is valid
