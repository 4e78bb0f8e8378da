"""Re-encoding a TimeStampResp's unsigned envelope as DER: certificate sets sorted, BER
lengths made definite and minimal, the signed parts and anything unexpected untouched."""

from __future__ import annotations

from asn1crypto import cms, tsp
from cryptography.hazmat.primitives.serialization import Encoding
from hypothesis import given
from hypothesis import strategies as st

from service.core.der import der_timestamp_response
from service.core.timestamp import timestamp_request, verify_timestamp
from tests.tsa import Authority

_AUTHORITY = Authority.create()


def _indefinite(tag: int, content: bytes) -> bytes:
    return bytes([tag, 0x80]) + content + b"\0\0"


def _long_form(tag: int, content: bytes) -> bytes:
    """A definite length in four octets, however short it is (BER, not DER)."""
    return bytes([tag, 0x84]) + len(content).to_bytes(4, "big") + content


def _segmented(encapsulated: cms.EncapsulatedContentInfo) -> bytes:
    """eContent as BER does it in streams: an OCTET STRING of 16-byte segments (X.690 §8.7.3)."""
    octets = encapsulated["content"].contents
    segments = b"".join(
        bytes([0x04, len(octets[i : i + 16])]) + octets[i : i + 16]
        for i in range(0, len(octets), 16)
    )
    content = _indefinite(0xA0, _indefinite(0x24, segments))
    return _indefinite(0x30, encapsulated["content_type"].dump() + content)


def _ber(response: bytes, certificates: list[bytes] | None = None) -> bytes:
    """`response` with its envelope in BER, and its certificates in the order given."""
    parsed = tsp.TimeStampResp.load(response)
    token = parsed["time_stamp_token"]
    signed = token["content"]
    fields = []
    for name in ("version", "digest_algorithms", "encap_content_info", "certificates"):
        if name == "certificates" and certificates is not None:
            fields.append(_indefinite(0xA0, b"".join(certificates)))
        elif name == "encap_content_info":
            fields.append(_segmented(signed[name]))
        elif signed[name].contents is not None:
            fields.append(signed[name].dump())
    fields.append(signed["signer_infos"].dump())
    signed_data = _long_form(0x30, b"".join(fields))
    content_info = _indefinite(0x30, token["content_type"].dump() + _indefinite(0xA0, signed_data))
    return _indefinite(0x30, parsed["status"].dump() + content_info)


def test_a_ber_envelope_becomes_the_der_the_authority_signed() -> None:
    request = timestamp_request(b"note\n")
    response = _AUTHORITY.respond(request.der)
    ber = _ber(response)
    assert ber != response
    assert der_timestamp_response(ber) == response
    assert der_timestamp_response(response) == response
    attested = verify_timestamp(ber, b"note\n", roots=[_AUTHORITY.ca], nonce=request.nonce)
    assert attested.authority == "CN=Locker Test TSA,O=Locker Test TSA"


def test_certificates_are_sorted_and_kept_byte_for_byte() -> None:
    response = _AUTHORITY.respond(timestamp_request(b"note\n").der)
    signer = tsp.TimeStampResp.load(response)["time_stamp_token"]["content"]["certificates"][0]
    members = [signer.dump(), _AUTHORITY.ca.public_bytes(Encoding.DER)]
    for order in (members, members[::-1]):
        normalised = der_timestamp_response(_ber(response, order))
        certificates = tsp.TimeStampResp.load(normalised)["time_stamp_token"]["content"][
            "certificates"
        ]
        assert [c.dump() for c in certificates] == sorted(members)
    assert verify_timestamp(_ber(response, members[::-1]), b"note\n", roots=[_AUTHORITY.ca])


def test_a_refusal_without_a_token_is_only_re_encoded() -> None:
    refusal = b"\x30\x05\x30\x03\x02\x01\x02"  # status: rejection (RFC 3161 §2.4.2)
    assert der_timestamp_response(refusal) == refusal
    assert der_timestamp_response(_indefinite(0x30, refusal[2:])) == refusal


def _token_with(encapsulated: bytes) -> bytes:
    """A granted TimeStampResp whose SignedData holds only `encapsulated`."""
    signed_data = b"\x30" + bytes([len(encapsulated)]) + encapsulated
    content = b"\x06\x01\x00\xa0" + bytes([len(signed_data)]) + signed_data
    token = b"\x30" + bytes([len(content)]) + content
    body = b"\x30\x03\x02\x01\x00" + token
    return b"\x30" + bytes([len(body)]) + body


def test_what_is_not_a_timestamp_response_is_left_for_the_parser() -> None:
    response = _AUTHORITY.respond(timestamp_request(b"note\n").der)
    for data in (
        b"",
        b"\x30",  # truncated
        b"\x30\x80\x02\x01",  # indefinite, never ended
        b"\x02\x80\x00\x00",  # indefinite but primitive
        b"\x30\xff" + bytes(200),  # a length of 127 octets
        b"\x30\x84\x00\x00\x01\x00",  # longer than the data
        b"\x1f\x81\x00\x00",  # a high tag number
        b"\x30\x03\x02\x01\x00\x00",  # trailing data
        b"\x02\x01\x00",  # not a SEQUENCE
        response + b"\x00",
        b"\x30\x05\x30\x00\x02\x01\x00",  # a token that is not a SEQUENCE
        b"\x30\x08\x30\x00\x02\x01\x00\x02\x01\x00",  # three fields
        b"\x30\x06\x30\x00\x30\x02\x05\x00",  # a ContentInfo without content
        b"\x30\x30" + b"\x30\x80" * 24,  # nested deeper than the data goes
        b"\x30\x80" * 5000,  # nested beyond reason
        _token_with(b"\x30\x03\x06\x01\x00"),  # encapContentInfo without eContent
        _token_with(b"\x30\x07\x06\x01\x00\xa0\x02\x05\x00"),  # eContent not OCTET STRING
    ):
        assert der_timestamp_response(data) == data


@given(st.binary(max_size=300))
def test_never_raises(data: bytes) -> None:
    assert isinstance(der_timestamp_response(data), bytes)
