"""The request fingerprint behind Idempotency-Key, apart from any server."""

from __future__ import annotations

import hashlib

from hypothesis import given
from hypothesis import strategies as st

from service.accounts.idempotency import Claim, Fingerprint, valid_key


def _streamed(body: bytes, cuts: list[int], boundary: bytes | None) -> str:
    fingerprint = Fingerprint("POST", "/v1/evidence", boundary=boundary)
    position = 0
    for cut in sorted(c % (len(body) + 1) for c in cuts):
        fingerprint.update(body[position:cut])
        position = max(position, cut)
    fingerprint.update(body[position:])
    return fingerprint.hexdigest()


@given(
    body=st.binary(max_size=300),
    boundary=st.binary(min_size=1, max_size=8),
    cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=12),
)
def test_the_boundary_is_left_out_however_the_body_is_cut(
    body: bytes, boundary: bytes, cuts: list[int]
) -> None:
    """Streaming, in any chunks, equals removing every boundary from the whole body."""
    whole = hashlib.sha256(b"POST\n/v1/evidence\n" + body.replace(boundary, b"")).hexdigest()
    assert _streamed(body, cuts, boundary) == whole


@given(body=st.binary(max_size=300), cuts=st.lists(st.integers(0, 400), max_size=12))
def test_without_a_boundary_the_body_is_hashed_as_sent(body: bytes, cuts: list[int]) -> None:
    assert _streamed(body, cuts, None) == hashlib.sha256(b"POST\n/v1/evidence\n" + body).hexdigest()


def test_two_uploads_differing_only_in_boundary_have_one_fingerprint() -> None:
    def upload(boundary: bytes) -> bytes:
        return (
            b"--" + boundary + b'\r\nContent-Disposition: form-data; name="file"; filename="a"'
            b"\r\n\r\nbytes\r\n--" + boundary + b"--\r\n"
        )

    first, second = b"8f2c1d0a" * 4, b"e41b99c7" * 4
    assert _streamed(upload(first), [3, 50], first) == _streamed(upload(second), [70], second)
    assert _streamed(upload(first), [], first) != _streamed(upload(first), [], None)


def test_method_and_path_are_part_of_the_fingerprint() -> None:
    one, other = Fingerprint("POST", "/v1/incidents"), Fingerprint("POST", "/v1/notes")
    assert one.hexdigest() != other.hexdigest()


def test_keys_are_printable_ascii_up_to_255() -> None:
    assert valid_key("a") and valid_key("~ !" * 85)
    assert not valid_key("") and not valid_key("x" * 256)
    assert not valid_key("tab\t") and not valid_key("é") and not valid_key("\x7f")


def test_a_claim_binds_owner_and_key_and_stores_neither() -> None:
    claim = Claim.of("user-1", "key-1")
    assert claim.record_id != Claim.of("user-2", "key-1").record_id
    assert claim.record_id != Claim.of("user-1", "key-2").record_id
    assert claim.secret != Claim.of("user-2", "key-1").secret
    assert "key-1" not in claim.record_id and "user-1" not in claim.record_id
    assert claim.seal_fingerprint("f") != Claim.of("user-1", "key-2").seal_fingerprint("f")
