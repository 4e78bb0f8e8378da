"""A stand-in identity provider for tests: a JWKS over HTTP on 127.0.0.1, and signing keys.

`run_jwks_server()` serves `server.document` (mutable: swap it to rotate keys) and
counts requests, so tests can assert how often the verifier went back to the provider.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


class JwksServer:
    """What the handler serves (`document`, `status`) and what it has seen (`requests`)."""

    def __init__(self) -> None:
        self.document: dict[str, Any] = {"keys": []}
        self.status = 200
        self.body: bytes | None = None  # when set, served instead of `document`
        self.url = ""
        self._requests = 0
        self._lock = threading.Lock()

    @property
    def requests(self) -> int:
        with self._lock:
            return self._requests

    def publish(self, *keys: SigningKey) -> None:
        """Serve exactly the public halves of `keys`."""
        self.document = {"keys": [key.public_jwk() for key in keys]}

    def _respond(self) -> tuple[int, bytes]:
        with self._lock:
            self._requests += 1
        body = self.body if self.body is not None else json.dumps(self.document).encode()
        return self.status, body


@contextmanager
def run_jwks_server() -> Iterator[JwksServer]:
    """A JwksServer listening on a free port of 127.0.0.1 for the duration of the block."""
    state = JwksServer()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, body = state._respond()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep test output quiet

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    # A short poll interval: shutdown() waits for it, once per test.
    thread = threading.Thread(target=httpd.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}/jwks.json"
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@dataclass(frozen=True)
class SigningKey:
    """A private key with the kid and algorithm the provider signs with."""

    kid: str
    alg: str
    private_key: PrivateKey

    def public_jwk(self) -> dict[str, Any]:
        """The public half as a JWK, with kid, alg and use, as providers publish it."""
        public = self.private_key.public_key()
        if isinstance(public, rsa.RSAPublicKey):
            jwk = RSAAlgorithm.to_jwk(public, as_dict=True)
        elif isinstance(public, ec.EllipticCurvePublicKey):
            jwk = ECAlgorithm.to_jwk(public, as_dict=True)
        else:
            jwk = OKPAlgorithm.to_jwk(public, as_dict=True)
        return {**jwk, "kid": self.kid, "alg": self.alg, "use": "sig"}


def rsa_key(kid: str = "rsa-1") -> SigningKey:
    return SigningKey(kid, "RS256", rsa.generate_private_key(public_exponent=65537, key_size=2048))


def ec_key(kid: str = "ec-1") -> SigningKey:
    return SigningKey(kid, "ES256", ec.generate_private_key(ec.SECP256R1()))


def ed25519_key(kid: str = "ed-1") -> SigningKey:
    return SigningKey(kid, "EdDSA", ed25519.Ed25519PrivateKey.generate())


def mint(
    key: SigningKey,
    claims: dict[str, Any],
    *,
    kid: str | None = "",
    alg: str | None = None,
) -> str:
    """A token signed by `key`; kid "" means the key's own, None means no kid header."""
    headers = {} if kid is None else {"kid": kid or key.kid}
    return jwt.encode(claims, key.private_key, algorithm=alg or key.alg, headers=headers)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def mint_unchecked(header: dict[str, Any], claims: dict[str, Any], *, hmac_secret: bytes) -> str:
    """A token assembled by hand, HMAC-SHA256 signed with any secret at all.

    PyJWT refuses to use a PEM public key as an HMAC secret, which is exactly what an
    attacker attempting the RS/HS key-confusion attack does; so this does it by hand.
    An empty secret gives an empty signature (for alg "none").
    """
    signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
    signature = b""
    if hmac_secret:
        signature = hmac.new(hmac_secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64url(signature)}"
