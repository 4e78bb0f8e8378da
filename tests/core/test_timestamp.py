"""RFC 3161 tokens over checkpoints, checked against a real (test) TSA's signatures:
the request's shape, a valid token's facts, and every way a token can fail."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime, timedelta

import pytest
from asn1crypto import tsp
from asn1crypto import x509 as asn1_x509
from cryptography.hazmat.primitives.serialization import Encoding
from rfc3161_client import HashAlgorithm, TimestampRequestBuilder

from service.core.timestamp import (
    TimestampInvalid,
    TimestampMismatch,
    load_certificates,
    timestamp_request,
    verify_timestamp,
)
from service.errors import FormatError
from tests.tsa import POLICY, Authority

NOTE = "locker.example/log\n3\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\n— sig\n".encode()
NOTE_SHA256 = hashlib.sha256(NOTE).hexdigest()


@pytest.fixture(scope="module")
def authority() -> Authority:
    return Authority.create()


def _token(authority: Authority, message: bytes = NOTE) -> bytes:
    return authority.respond(timestamp_request(message).der)


def test_the_request_asks_for_sha256_a_nonce_and_the_certificate() -> None:
    request = timestamp_request(NOTE)
    parsed = tsp.TimeStampReq.load(request.der)
    imprint = parsed["message_imprint"]
    assert imprint["hash_algorithm"]["algorithm"].native == "sha256"
    assert imprint["hashed_message"].native.hex() == NOTE_SHA256
    assert parsed["nonce"].native == request.nonce
    assert parsed["cert_req"].native is True
    assert timestamp_request(NOTE).nonce != request.nonce  # fresh each time


def test_a_granted_token_attests_the_time_the_tsa_and_the_digest(authority: Authority) -> None:
    # A second-precision time inside the test TSA certificate's validity.
    at = (datetime.now(UTC) - timedelta(minutes=5)).replace(microsecond=0)
    request = timestamp_request(NOTE)
    token = authority.respond(request.der, at=at)
    attested = verify_timestamp(token, NOTE, roots=[authority.ca], nonce=request.nonce)
    assert attested.time == at
    assert attested.authority == authority.certificate.subject.rfc4514_string()
    assert attested.policy == POLICY
    assert attested.serial_number > 0
    assert attested.sha256 == NOTE_SHA256
    # Without a nonce to compare, the same token verifies too.
    assert verify_timestamp(token, NOTE, roots=[authority.ca]) == attested


def test_the_signer_is_found_among_several_embedded_certificates(authority: Authority) -> None:
    response = tsp.TimeStampResp.load(_token(authority))
    signed = response["time_stamp_token"]["content"]
    ca = asn1_x509.Certificate.load(authority.ca.public_bytes(Encoding.DER))
    # The certificates sit outside the signed attributes: adding one keeps the token valid.
    signed["certificates"] = [ca, *signed["certificates"]]
    token = response.dump(force=True)
    attested = verify_timestamp(token, NOTE, roots=[authority.ca])
    assert attested.authority == authority.certificate.subject.rfc4514_string()


def test_a_token_over_another_message_is_a_mismatch(authority: Authority) -> None:
    token = _token(authority, b"another checkpoint\n")
    with pytest.raises(TimestampMismatch, match=f"the message is sha256:{NOTE_SHA256}"):
        verify_timestamp(token, NOTE, roots=[authority.ca])


def test_a_token_over_another_hash_algorithm_is_a_mismatch(authority: Authority) -> None:
    request = TimestampRequestBuilder().data(NOTE).hash_algorithm(HashAlgorithm.SHA512).build()
    token = authority.respond(request.as_bytes())
    sha512 = re.escape("imprint algorithm is 2.16.840.1.101.3.4.2.3")
    with pytest.raises(TimestampMismatch, match=sha512):
        verify_timestamp(token, NOTE, roots=[authority.ca])


def test_a_token_needs_a_trusted_root(authority: Authority) -> None:
    with pytest.raises(TimestampInvalid, match="no trusted TSA certificate"):
        verify_timestamp(_token(authority), NOTE, roots=[])


def test_a_token_from_an_untrusted_tsa_is_invalid(authority: Authority) -> None:
    stranger = Authority.create("Stranger")
    with pytest.raises(TimestampInvalid, match="signature or certificate does not hold"):
        verify_timestamp(_token(stranger), NOTE, roots=[authority.ca])


def test_a_token_answering_another_request_is_invalid(authority: Authority) -> None:
    request = timestamp_request(NOTE)
    token = authority.respond(request.der)
    with pytest.raises(TimestampInvalid, match="signature or certificate does not hold"):
        verify_timestamp(token, NOTE, roots=[authority.ca], nonce=request.nonce + 1)


def test_a_tampered_token_is_invalid(authority: Authority) -> None:
    response = tsp.TimeStampResp.load(_token(authority))
    signer = response["time_stamp_token"]["content"]["signer_infos"][0]
    signature = bytearray(signer["signature"].native)
    signature[-1] ^= 1
    signer["signature"] = bytes(signature)
    with pytest.raises(TimestampInvalid):
        verify_timestamp(response.dump(force=True), NOTE, roots=[authority.ca])


def test_a_refusal_names_the_tsa_status() -> None:
    status = tsp.PKIStatusInfo({"status": "rejection", "status_string": ["unknown policy"]})
    # TimeStampResp ::= SEQUENCE { status, timeStampToken OPTIONAL }, here without a token.
    refusal = b"\x30" + bytes([len(status.dump())]) + status.dump()
    with pytest.raises(TimestampInvalid, match=r"the TSA refused: status .* unknown policy"):
        verify_timestamp(refusal, NOTE, roots=[])


@pytest.mark.parametrize("response", [b"", b"not DER at all", b"\x30\x03\x02\x01\x00"])
def test_bytes_that_are_no_timestamp_response_are_a_format_error(response: bytes) -> None:
    with pytest.raises(FormatError, match="not an RFC 3161 TimeStampResp"):
        verify_timestamp(response, NOTE, roots=[])


def test_certificate_bundles_load_in_order(authority: Authority) -> None:
    other = Authority.create("Other")
    pem = authority.ca_pem() + other.ca_pem()
    assert load_certificates(pem) == [authority.ca, other.ca]


@pytest.mark.parametrize(
    "pem", [b"", b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n"]
)
def test_a_malformed_certificate_bundle_is_a_format_error(pem: bytes) -> None:
    with pytest.raises(FormatError, match="not a PEM certificate bundle"):
        load_certificates(pem)
