"""RFC 3161 trusted timestamps over signed checkpoints.

A time-stamping authority (TSA) signs the SHA-256 of a checkpoint's note bytes together
with the time: independent evidence that the log had that state no later than then. The
locker requests tokens; a court's expert checks them offline with `verify_timestamp`
(or with `openssl ts -verify`). Pure: no I/O; `rfc3161_client` parses and verifies.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

from cryptography import x509
from rfc3161_client import (
    HashAlgorithm,
    PKIStatus,
    TimestampRequestBuilder,
    TimeStampResponse,
    VerifierBuilder,
    decode_timestamp_response,
)
from rfc3161_client import VerificationError as _TsaVerificationError

from service.core.der import der_timestamp_response
from service.errors import FormatError, VerificationError

_SHA256 = x509.ObjectIdentifier("2.16.840.1.101.3.4.2.1")
_NAME_FORBIDDEN = re.compile(r"[^a-z0-9.-]+")


class TimestampMismatch(VerificationError):
    """A timestamp token attests a different message than the one it accompanies."""


class TimestampInvalid(VerificationError):
    """A timestamp token's signature, certificate or status does not hold."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TimestampRequest:
    """A DER TimeStampReq (RFC 3161 §2.4.1) and the nonce the reply must echo."""

    der: bytes
    nonce: int


@dataclass(frozen=True, slots=True, kw_only=True)
class AttestedTime:
    """What a verified token attests: when, by whom, under which policy."""

    time: datetime
    authority: str  # the TSA certificate's subject (RFC 4514)
    serial_number: int
    policy: str
    sha256: str  # hex of the message imprint: SHA-256 of the checkpoint note


def timestamp_request(message: bytes) -> TimestampRequest:
    """A request over SHA-256(`message`), with a nonce and asking for the TSA's certificate."""
    request = (
        TimestampRequestBuilder()
        .data(message)
        .hash_algorithm(HashAlgorithm.SHA256)
        .nonce(nonce=True)
        .cert_request(cert_request=True)
        .build()
    )
    assert request.nonce is not None
    return TimestampRequest(der=request.as_bytes(), nonce=request.nonce)


def authority_name(url: str) -> str:
    """A short name for the TSA at `url`, fit for logs and file names: its host, with its
    port when the URL gives one (`freetsa.org`, `tsa.example-8080`)."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:  # not a number: not a port either
        port = None
    host = parts.hostname or "tsa"
    name = host if port is None else f"{host}-{port}"
    return _NAME_FORBIDDEN.sub("-", name.lower()).strip("-.") or "tsa"


def load_certificates(pem: bytes) -> list[x509.Certificate]:
    """Every certificate in a PEM bundle; FormatError if there is none or one is malformed."""
    try:
        certificates = x509.load_pem_x509_certificates(pem)
    except ValueError as exc:
        raise FormatError(f"not a PEM certificate bundle: {exc}") from None
    return certificates


def verify_timestamp(
    response: bytes,
    message: bytes,
    *,
    roots: Sequence[x509.Certificate],
    nonce: int | None = None,
) -> AttestedTime:
    """Check a DER TimeStampResp over `message` against trusted TSA `roots`.

    In order: it parses and was granted (RFC 3161 §2.4.2); its imprint is SHA-256 of
    `message`; the CMS signature holds and the signer chains to one of `roots` at the
    attested time, with the critical id-kp-timeStamping EKU (§2.3); the nonce, if given.
    """
    parsed = _parse(response)
    imprint = parsed.tst_info.message_imprint
    wanted = hashlib.sha256(message).hexdigest()
    if imprint.hash_algorithm != _SHA256:
        raise TimestampMismatch(f"imprint algorithm is {imprint.hash_algorithm.dotted_string}")
    if imprint.message.hex() != wanted:
        raise TimestampMismatch(
            f"the token attests sha256:{imprint.message.hex()}, the message is sha256:{wanted}"
        )
    if not roots:
        raise TimestampInvalid("no trusted TSA certificate to check the signature against")
    builder = VerifierBuilder(roots=list(roots))
    if nonce is not None:
        builder = builder.nonce(nonce)
    try:
        builder.build().verify(parsed, imprint.message)
    except _TsaVerificationError as exc:
        raise TimestampInvalid(f"signature or certificate does not hold: {exc}") from None
    return AttestedTime(
        time=parsed.tst_info.gen_time,
        authority=_signer(parsed),
        serial_number=parsed.tst_info.serial_number,
        policy=parsed.tst_info.policy.dotted_string,
        sha256=wanted,
    )


def _parse(response: bytes) -> TimeStampResponse:
    try:  # the parser is strict DER; real TSAs' unsigned envelope often is not
        parsed = decode_timestamp_response(der_timestamp_response(response))
    except ValueError as exc:
        raise FormatError(f"not an RFC 3161 TimeStampResp: {exc}") from None
    if parsed.status not in (PKIStatus.GRANTED, PKIStatus.GRANTED_WITH_MODS):
        detail = "; ".join(parsed.status_string)
        raise TimestampInvalid(f"the TSA refused: status {parsed.status} {detail}".strip())
    return parsed


def _signer(parsed: TimeStampResponse) -> str:
    """The subject of the embedded certificate that signed (the chain was checked already)."""
    signer = next(iter(parsed.signed_data.signer_infos))
    for der in parsed.signed_data.certificates:
        certificate = x509.load_der_x509_certificate(der)
        if (certificate.issuer, certificate.serial_number) == (signer.issuer, signer.serial_number):
            return certificate.subject.rfc4514_string()
    # Unreachable after verification, which fails unless the signer's certificate is
    # embedded (the verifier is given only the roots); kept so a name is always returned.
    return signer.issuer.rfc4514_string()  # pragma: no cover
