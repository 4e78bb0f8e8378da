"""RFC 8785 JSON Canonicalization Scheme (JCS): one byte string per JSON value."""

from __future__ import annotations

import rfc8785

from service.core.digests import sha256
from service.errors import FormatError


def canonical_json(value: object) -> bytes:
    """Serialise `value` as RFC 8785 canonical JSON in UTF-8.

    Strings are written as UTF-8, not escaped (RFC 8785 §3.2.2.2), so Arabic or any other
    script round-trips byte for byte. Values JCS cannot represent (integers beyond
    ±(2**53 - 1) per RFC 8785 §3.2.2.3, NaN, non-string keys, lone surrogates, other
    types, cycles) raise FormatError.
    """
    try:
        # rfc8785 types its argument narrowly but checks every type at run time.
        return rfc8785.dumps(value)  # type: ignore[arg-type]
    except (ValueError, RecursionError) as exc:  # CanonicalizationError is a ValueError
        raise FormatError(f"cannot canonicalise as JSON: {exc}") from None


def canonical_sha256(value: object) -> str:
    """The hex SHA-256 of `value`'s canonical JSON: the digest the custody log records."""
    return sha256(canonical_json(value)).hex
