"""A time-stamping authority nobody here wrote: OpenSSL's `openssl ts -reply` behind a
small HTTP endpoint, with a root CA, an intermediate CA and a TSA certificate.

Its configuration sets `certs`, so every response carries the chain after the signer's
certificate, in chain order (TSA, intermediate, root) as OpenSSL writes it: not in the
sorted order DER requires of a SET OF. That is how FreeTSA and many in-house
authorities answer.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.tsa import reply_with_token, serving_handler

POLICY = "1.3.6.1.4.1.55738.2.1"

_CONFIG = """\
[ tsa ]
default_tsa = locker_test_tsa

[ locker_test_tsa ]
dir = {dir}
serial = $dir/serial
crypto_device = builtin
signer_cert = $dir/tsa.pem
certs = $dir/chain.pem
signer_key = $dir/tsa.key
signer_digest = sha256
default_policy = {policy}
digests = sha256, sha384, sha512
accuracy = secs:1
ordering = yes
tsa_name = yes
ess_cert_id_chain = no
ess_cert_id_alg = sha256
"""


def openssl_available() -> bool:
    """Whether the system's `openssl` can serve as the independent authority."""
    return shutil.which("openssl") is not None


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Independent Test Authority"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _key_usage(*, sign_certificates: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not sign_certificates,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=sign_certificates,
        crl_sign=sign_certificates,
        encipher_only=False,
        decipher_only=False,
    )


def _issue(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None,
    *,
    path_length: int | None,
) -> x509.Certificate:
    """A CA certificate (`path_length` set) or the TSA's (`path_length` None)."""
    now = datetime.now(UTC)
    issuer_name, issuer_key = (issuer[0].subject, issuer[1]) if issuer else (_name(subject), key)
    is_ca = path_length is not None
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=path_length), critical=True)
        .add_extension(_key_usage(sign_certificates=is_ca), critical=True)
    )
    if not is_ca:  # RFC 3161 §2.3: exactly id-kp-timeStamping, critical
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True
        )
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(*certificates: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates)


@dataclass(slots=True)
class OpensslAuthority:
    """The files of one OpenSSL TSA: root, intermediate, TSA certificate and key, config."""

    directory: Path
    root: x509.Certificate
    intermediate: x509.Certificate
    certificate: x509.Certificate

    @classmethod
    def create(cls, directory: Path, name: str = "Independent") -> OpensslAuthority:
        directory.mkdir(parents=True, exist_ok=True)
        root_key, intermediate_key, key = (ec.generate_private_key(ec.SECP256R1()) for _ in "abc")
        root = _issue(f"{name} Root CA", root_key, None, path_length=1)
        intermediate = _issue(
            f"{name} Intermediate CA", intermediate_key, (root, root_key), path_length=0
        )
        certificate = _issue(f"{name} TSA", key, (intermediate, intermediate_key), path_length=None)
        (directory / "tsa.pem").write_bytes(_pem(certificate))
        (directory / "chain.pem").write_bytes(_pem(intermediate, root))
        (directory / "root.pem").write_bytes(_pem(root))
        (directory / "tsa.key").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        (directory / "serial").write_text("01\n")
        (directory / "openssl.cnf").write_text(_CONFIG.format(dir=directory, policy=POLICY))
        return cls(directory, root, intermediate, certificate)

    def ca_pem(self) -> bytes:
        """The root CA certificate, as a relying party configures it."""
        return _pem(self.root)

    def respond(self, request_der: bytes) -> bytes:
        """`openssl ts -reply` over the DER TimeStampReq: what the authority answers."""
        with tempfile.TemporaryDirectory(dir=self.directory) as scratch:
            query, reply = Path(scratch) / "request.tsq", Path(scratch) / "reply.tsr"
            query.write_bytes(request_der)
            command = [
                "openssl", "ts", "-reply", "-config", str(self.directory / "openssl.cnf"),
                "-queryfile", str(query), "-out", str(reply),
            ]  # fmt: skip
            result = subprocess.run(command, capture_output=True, text=True, check=False)
            if result.returncode != 0 or not reply.exists():
                raise RuntimeError(f"openssl ts -reply failed: {result.stderr.strip()}")
            return reply.read_bytes()


@dataclass(slots=True)
class OpensslTsaServer:
    """The running endpoint: its URL, its authority, and a switch to take it down."""

    url: str
    authority: OpensslAuthority
    down: bool = False
    requests: int = 0


@contextmanager
def run_openssl_tsa(authority: OpensslAuthority) -> Iterator[OpensslTsaServer]:
    """Serve `authority` on a free loopback port, one `openssl ts -reply` per request."""
    state = OpensslTsaServer(url="", authority=authority)
    serial = threading.Lock()  # openssl increments its serial file; one reply at a time

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if state.down:
                self.send_error(503, "the authority is down")
                return
            with serial:
                state.requests += 1
                answer = state.authority.respond(body)
            reply_with_token(self, answer)

        def log_message(self, format: str, *args: object) -> None:
            pass

    with serving_handler(Handler) as url:
        state.url = url
        yield state
