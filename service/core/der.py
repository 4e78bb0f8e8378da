"""The unsigned envelope of an RFC 3161 TimeStampResp, re-encoded as DER.

Real authorities (OpenSSL's `ts -reply`, Bouncy Castle, Microsoft's) write the CMS
`certificates` SET in chain order, and some use BER: indefinite lengths, an eContent
OCTET STRING in segments. The strict parser that checks tokens accepts only DER (X.690
§10–11). Nothing in that envelope is signed:
the TSA's signature covers the signed attributes, which hold a digest of the TSTInfo
(RFC 5652 §5.4), and each certificate carries its own signature. So re-encoding the
envelope, and the envelope only, changes nothing a signature vouches for. The TSTInfo's
octets, the signed attributes and each certificate are copied byte for byte.

The bytes as received are what the locker stores and bundles; this re-encoding exists
only in memory, on the way to the parser, on the server and in the offline verifier
alike.
"""

from __future__ import annotations

from dataclasses import dataclass

_SEQUENCE, _SET, _OCTET_STRING, _CONSTRUCTED = 0x30, 0x31, 0x04, 0x20
_CERTIFICATES, _CRLS = 0xA0, 0xA1  # SignedData's [0] and [1] IMPLICIT SET OF (RFC 5652 §5.1)
_EXPLICIT_0 = 0xA0  # ContentInfo's content [0] EXPLICIT (RFC 5652 §3)
_SET_OF_IN_SIGNED_DATA = (_SET, _CERTIFICATES, _CRLS)  # digestAlgorithms, signerInfos too


class _Malformed(Exception):
    """Not the structure expected; the strict parser will say what is wrong."""


@dataclass(frozen=True, slots=True)
class _Tlv:
    tag: int  # the identifier octet (low tag numbers only: all this envelope uses)
    content: bytes  # the content octets, end-of-contents octets removed
    raw: bytes  # the element exactly as received


def der_timestamp_response(response: bytes) -> bytes:
    """`response` with the envelope of its token in DER: definite, minimal lengths and
    every SET OF of the SignedData sorted (X.690 §11.6). Unchanged if it is not a
    TimeStampResp holding a SignedData token, for the strict parser to refuse."""
    try:
        return _response(response)
    except (_Malformed, RecursionError):  # RecursionError: BER nested beyond reason
        return response


def _response(data: bytes) -> bytes:
    # TimeStampResp ::= SEQUENCE { status PKIStatusInfo, timeStampToken ContentInfo OPTIONAL }
    outer = _single(data, _SEQUENCE)
    fields = _elements(outer.content)
    if len(fields) == 1:  # a refusal carries no token
        return _encode(_SEQUENCE, fields[0].raw)
    if len(fields) != 2:
        raise _Malformed
    return _encode(_SEQUENCE, fields[0].raw + _token(fields[1]))


def _token(content_info: _Tlv) -> bytes:
    # ContentInfo ::= SEQUENCE { contentType OID, content [0] EXPLICIT SignedData }
    if content_info.tag != _SEQUENCE:
        raise _Malformed
    fields = _elements(content_info.content)
    if len(fields) != 2 or fields[1].tag != _EXPLICIT_0:
        raise _Malformed
    signed_data = _single(fields[1].content, _SEQUENCE)
    parts = [_signed_data_part(part) for part in _elements(signed_data.content)]
    inner = _encode(_EXPLICIT_0, _encode(_SEQUENCE, b"".join(parts)))
    return _encode(_SEQUENCE, fields[0].raw + inner)


def _signed_data_part(part: _Tlv) -> bytes:
    if part.tag in _SET_OF_IN_SIGNED_DATA:
        return _sorted_set(part)
    if part.tag == _SEQUENCE:  # the only SEQUENCE: encapContentInfo
        return _encapsulated(part)
    return part.raw


def _encapsulated(tlv: _Tlv) -> bytes:
    """EncapsulatedContentInfo ::= SEQUENCE { eContentType OID, eContent [0] EXPLICIT
    OCTET STRING OPTIONAL } (RFC 5652 §5.2), eContent as one primitive OCTET STRING. The
    signature's message digest covers its value only (§5.4), which BER may split into
    segments (X.690 §8.7.3): joined, they are the same octets, the TSTInfo untouched."""
    fields = _elements(tlv.content)
    if len(fields) != 2 or fields[1].tag != _EXPLICIT_0:
        return tlv.raw
    content = _encode(_EXPLICIT_0, _encode(_OCTET_STRING, _octets(_single(fields[1].content))))
    return _encode(_SEQUENCE, fields[0].raw + content)


def _octets(tlv: _Tlv) -> bytes:
    """The value of an OCTET STRING, primitive or constructed of segments."""
    if tlv.tag == _OCTET_STRING:
        return tlv.content
    if tlv.tag != _OCTET_STRING | _CONSTRUCTED:
        raise _Malformed
    return b"".join(_octets(segment) for segment in _elements(tlv.content))


def _sorted_set(tlv: _Tlv) -> bytes:
    """X.690 §11.6: the encodings in ascending order, shorter ones padded with 0-octets."""
    members = [member.raw for member in _elements(tlv.content)]
    width = max((len(m) for m in members), default=0)
    members.sort(key=lambda m: (m.ljust(width, b"\0"), len(m)))
    return _encode(tlv.tag, b"".join(members))


def _single(data: bytes, tag: int | None = None) -> _Tlv:
    """The one element `data` holds, with `tag` if given."""
    elements = _elements(data)
    if len(elements) != 1 or elements[0].tag != (tag or elements[0].tag):
        raise _Malformed
    return elements[0]


def _elements(data: bytes) -> list[_Tlv]:
    """Every TLV in `data`, which they must fill exactly."""
    found, offset = [], 0
    while offset < len(data):
        tlv, offset = _read(data, offset)
        found.append(tlv)
    return found


def _read(data: bytes, start: int) -> tuple[_Tlv, int]:
    """The BER element at `start` (X.690 §8.1) and the offset after it."""
    if start + 2 > len(data) or data[start] & 0x1F == 0x1F:
        raise _Malformed  # truncated, or a high tag number, which this envelope never uses
    tag, first = data[start], data[start + 1]
    offset = start + 2
    if first == 0x80:  # indefinite (§8.1.3.6): constructed only, ends at 00 00
        if not tag & 0x20:
            raise _Malformed
        begin = offset
        while data[offset : offset + 2] != b"\0\0":
            _, offset = _read(data, offset)
        return _Tlv(tag, data[begin:offset], data[start : offset + 2]), offset + 2
    if first & 0x80:  # long form (§8.1.3.5), minimal or not
        count = first & 0x7F
        if count == 0x7F or offset + count > len(data):
            raise _Malformed
        length = int.from_bytes(data[offset : offset + count], "big")
        offset += count
    else:
        length = first
    end = offset + length
    if end > len(data):
        raise _Malformed
    return _Tlv(tag, data[offset:end], data[start:end]), end


def _encode(tag: int, content: bytes) -> bytes:
    """A DER element: definite length in the fewest octets (X.690 §10.1)."""
    size = len(content)
    if size < 0x80:
        return bytes([tag, size]) + content
    octets = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(octets)]) + octets + content
