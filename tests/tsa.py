"""A small RFC 3161 time-stamping authority for the tests: a test CA, a TSA certificate
with the critical id-kp-timeStamping EKU, and an HTTP server answering
application/timestamp-query with a real, signed TimeStampResp."""

from __future__ import annotations

import hashlib
import itertools
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from asn1crypto import algos, cms, core, tsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

POLICY = "1.3.6.1.4.1.55738.1.1"  # a test policy OID; a real TSA publishes its own


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Locker Test TSA"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _certificate(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    *,
    issuer: x509.Certificate | None,
    issuer_key: ec.EllipticCurvePrivateKey,
) -> x509.Certificate:
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer.subject if issuer else _name(subject))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if issuer is None:
        builder = builder.add_extension(
            x509.BasicConstraints(ca=True, path_length=0), critical=True
        ).add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    else:
        builder = (
            builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
                critical=False,
            )
            # RFC 3161 §2.3: the TSA's certificate has exactly this EKU, marked critical.
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True
            )
        )
    return builder.sign(issuer_key, hashes.SHA256())


@dataclass(slots=True)
class Authority:
    """A test CA and the TSA certificate it issued; `respond` answers a request."""

    ca_key: ec.EllipticCurvePrivateKey
    ca: x509.Certificate
    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate
    serials: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    requests: int = 0

    @classmethod
    def create(cls, name: str = "Locker Test") -> Authority:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca = _certificate(f"{name} Root CA", ca_key, issuer=None, issuer_key=ca_key)
        key = ec.generate_private_key(ec.SECP256R1())
        certificate = _certificate(f"{name} TSA", key, issuer=ca, issuer_key=ca_key)
        return cls(ca_key=ca_key, ca=ca, key=key, certificate=certificate)

    def ca_pem(self) -> bytes:
        return self.ca.public_bytes(serialization.Encoding.PEM)

    def respond(self, request_der: bytes, *, at: datetime | None = None) -> bytes:
        """A granted TimeStampResp (RFC 3161 §2.4.2) for the DER TimeStampReq given."""
        self.requests += 1
        request = tsp.TimeStampReq.load(request_der)
        info = tsp.TSTInfo(
            {
                "version": "v1",
                "policy": POLICY,
                "message_imprint": request["message_imprint"],
                "serial_number": next(self.serials),
                "gen_time": (at or datetime.now(UTC)).replace(microsecond=0),
                "accuracy": {"seconds": 1},
                "nonce": request["nonce"].native,
            }
        )
        token = self._sign(info.dump(), include_certificate=bool(request["cert_req"].native))
        return tsp.TimeStampResp(
            {"status": {"status": "granted"}, "time_stamp_token": token}
        ).dump()

    def _sign(self, content: bytes, *, include_certificate: bool) -> cms.ContentInfo:
        """CMS SignedData over a TSTInfo, with the ESS signing-certificate-v2 attribute."""
        cert_der = self.certificate.public_bytes(serialization.Encoding.DER)
        cert = asn1_x509.Certificate.load(cert_der)
        attributes = cms.CMSAttributes(
            [
                {"type": "content_type", "values": ["tst_info"]},
                {"type": "message_digest", "values": [hashlib.sha256(content).digest()]},
                {
                    "type": "signing_certificate_v2",
                    "values": [{"certs": [{"cert_hash": hashlib.sha256(cert_der).digest()}]}],
                },
            ]
        )
        # RFC 5652 §5.4: the signature is over the DER of the attributes as a SET OF.
        signature = self.key.sign(attributes.dump(), ec.ECDSA(hashes.SHA256()))
        signer = cms.SignerInfo(
            {
                "version": "v1",
                "sid": cms.SignerIdentifier(
                    "issuer_and_serial_number",
                    {"issuer": cert.issuer, "serial_number": cert.serial_number},
                ),
                "digest_algorithm": algos.DigestAlgorithm({"algorithm": "sha256"}),
                "signed_attrs": attributes,
                "signature_algorithm": algos.SignedDigestAlgorithm({"algorithm": "sha256_ecdsa"}),
                "signature": signature,
            }
        )
        signed = cms.SignedData(
            {
                "version": "v3",
                "digest_algorithms": [algos.DigestAlgorithm({"algorithm": "sha256"})],
                "encap_content_info": {
                    "content_type": "tst_info",
                    "content": core.ParsableOctetString(content),
                },
                "certificates": [cert] if include_certificate else [],
                "signer_infos": [signer],
            }
        )
        return cms.ContentInfo({"content_type": "signed_data", "content": signed})


def _open_gate() -> threading.Event:
    gate = threading.Event()
    gate.set()
    return gate


@dataclass(slots=True)
class TsaServer:
    """The running test TSA: its URL, its authority, and switches to misbehave."""

    url: str
    authority: Authority
    delay: float = 0.0
    down: bool = False
    # Answers a request's DER instead of the authority, to send what a broken TSA would.
    answer: Callable[[bytes], bytes] | None = None
    hits: int = 0  # requests received, answered or not
    # Cleared, every request is held unanswered until the test sets it again.
    gate: threading.Event = field(default_factory=_open_gate)


@contextmanager
def run_tsa(authority: Authority | None = None) -> Iterator[TsaServer]:
    """Serve `authority` (a fresh one by default) on a free loopback port."""
    state = TsaServer(url="", authority=authority or Authority.create())

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            state.hits += 1
            state.gate.wait()
            time.sleep(state.delay)
            if state.down:
                self.send_error(503, "the test TSA is down")
                return
            if self.headers.get("Content-Type") != "application/timestamp-query":
                self.send_error(415, "expected application/timestamp-query")
                return
            answer = (state.answer or state.authority.respond)(body)
            reply_with_token(self, answer)

        def log_message(self, format: str, *args: object) -> None:
            pass

    with serving_handler(Handler) as url:
        state.url = url
        yield state


def reply_with_token(handler: BaseHTTPRequestHandler, answer: bytes) -> None:
    """Send `answer` as an RFC 3161 reply (RFC 3161 §3.4)."""
    handler.send_response(200)
    handler.send_header("Content-Type", "application/timestamp-reply")
    handler.send_header("Content-Length", str(len(answer)))
    handler.end_headers()
    handler.wfile.write(answer)


@contextmanager
def serving_handler(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """Serve `handler` on a free loopback port until the block ends; yields its /tsr URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/tsr"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
