"""OIDC bearer tokens: what verifies, everything that must not, and how often we ask the IdP.

The identity provider is tests/oidc/jwks_server.py on 127.0.0.1. The cache's clock is
fake so that TTL and refresh limits are exercised without sleeping; token times (exp,
nbf, iat) are real, as PyJWT checks them against the wall clock.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import structlog
from cryptography.hazmat.primitives import serialization

from service.accounts.oidc import JwksCache, OidcConfig, OidcVerifier, TokenIdentity, looks_like_jwt
from service.errors import ConfigurationError, Unauthenticated
from tests.oidc.jwks_server import (
    JwksServer,
    SigningKey,
    ec_key,
    ed25519_key,
    mint,
    mint_unchecked,
    rsa_key,
    run_jwks_server,
)

ISSUER = "https://idp.example.org/realms/locker"
AUDIENCE = "evidence-locker"
GENERIC = "invalid bearer token"
MIN_REFRESH = 30
TTL = 300
_ABSENT = object()  # an override that removes the claim


@dataclass(frozen=True)
class FromNow:
    """A time claim `seconds` from when the token is minted (not when tests are collected)."""

    seconds: int


class FakeClock:
    """A monotonic clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def logged() -> Iterator[list[dict[str, Any]]]:
    """The structured log lines written meanwhile, as the JSON renderer would get them."""
    with structlog.testing.capture_logs() as entries:
        yield entries


@pytest.fixture(scope="module")
def keys() -> dict[str, SigningKey]:
    """One key per supported algorithm (RSA generation is slow: once per module)."""
    return {"RS256": rsa_key(), "ES256": ec_key(), "EdDSA": ed25519_key()}


@pytest.fixture(scope="module")
def stranger() -> SigningKey:
    """An RSA key the IdP never published."""
    return rsa_key("stranger")


@pytest.fixture
def idp(keys: dict[str, SigningKey]) -> Iterator[JwksServer]:
    with run_jwks_server() as server:
        server.publish(*keys.values())
        yield server


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def _config(url: str, **overrides: Any) -> OidcConfig:
    timings: dict[str, Any] = {"jwks_ttl_seconds": TTL, "min_refresh_seconds": MIN_REFRESH}
    return OidcConfig(issuer=ISSUER, audience=AUDIENCE, jwks_url=url, **{**timings, **overrides})


def _verifier(url: str, clock: FakeClock, **overrides: Any) -> OidcVerifier:
    config = _config(url, **overrides)
    return OidcVerifier(config, jwks=JwksCache.for_config(config, now=clock))


@pytest.fixture
def verifier(idp: JwksServer, clock: FakeClock) -> OidcVerifier:
    return _verifier(idp.url, clock)


def claims(**overrides: Any) -> dict[str, Any]:
    """Claims a valid token carries, with `overrides` (_ABSENT removes one)."""
    now = int(time.time())
    base: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "user-123",
        "email": "ana@example.org",
        "locker_org": "Syrian Archive",
        "locker_role": "investigator",
        "iat": now,
        "exp": now + 300,
    }
    base.update({k: now + v.seconds if isinstance(v, FromNow) else v for k, v in overrides.items()})
    return {name: value for name, value in base.items() if value is not _ABSENT}


def assert_rejected(verifier: OidcVerifier, token: str) -> None:
    """The token is refused with the generic message, whatever was wrong with it."""
    with pytest.raises(Unauthenticated) as refused:
        verifier.verify(token)
    assert str(refused.value) == GENERIC


def _b64url_json(value: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


# --- tokens that verify --------------------------------------------------------------


@pytest.mark.parametrize("alg", ["RS256", "ES256", "EdDSA"])
def test_valid_token_verifies_and_maps_claims(
    verifier: OidcVerifier, keys: dict[str, SigningKey], alg: str
) -> None:
    identity = verifier.verify(mint(keys[alg], claims(locker_role="auditor")))
    assert identity == TokenIdentity(
        subject="user-123", email="ana@example.org", organisation="Syrian Archive", role="auditor"
    )


@pytest.mark.parametrize("role", ["admin", "investigator", "analyst", "auditor"])
def test_every_locker_role_is_accepted(
    verifier: OidcVerifier, keys: dict[str, SigningKey], role: str
) -> None:
    assert verifier.verify(mint(keys["ES256"], claims(locker_role=role))).role == role


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({"aud": ["other-app", AUDIENCE]}, id="audience-in-list"),
        pytest.param({"exp": FromNow(-10)}, id="expired-within-leeway"),
        pytest.param({"nbf": FromNow(10)}, id="nbf-within-leeway"),
        pytest.param({"iat": _ABSENT}, id="no-iat"),
    ],
)
def test_tolerated_variations_verify(
    verifier: OidcVerifier, keys: dict[str, SigningKey], overrides: dict[str, Any]
) -> None:
    assert verifier.verify(mint(keys["RS256"], claims(**overrides))).subject == "user-123"


def test_configured_claim_names_are_used(
    idp: JwksServer, clock: FakeClock, keys: dict[str, SigningKey]
) -> None:
    verifier = _verifier(
        idp.url, clock, organisation_claim="org", role_claim="roles", email_claim="mail"
    )
    token = mint(
        keys["EdDSA"],
        claims(org="Mnemonic", roles="analyst", mail="b@example.org", locker_org=_ABSENT),
    )
    identity = verifier.verify(token)
    assert (identity.organisation, identity.role, identity.email) == (
        "Mnemonic",
        "analyst",
        "b@example.org",
    )


def test_token_without_kid_verifies_when_jwks_has_one_key(
    idp: JwksServer, verifier: OidcVerifier, keys: dict[str, SigningKey]
) -> None:
    idp.publish(keys["ES256"])
    assert verifier.verify(mint(keys["ES256"], claims(), kid=None)).subject == "user-123"


# --- tokens that must be refused, all with the same message ---------------------------


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({"exp": FromNow(-120)}, id="expired-beyond-leeway"),
        pytest.param({"nbf": FromNow(120)}, id="not-yet-valid"),
        pytest.param({"iat": FromNow(120)}, id="issued-in-future"),
        pytest.param({"exp": "tomorrow"}, id="exp-not-a-number"),
        pytest.param({"exp": _ABSENT}, id="missing-exp"),
        pytest.param({"aud": "another-app"}, id="wrong-audience"),
        pytest.param({"aud": ["a", "b"]}, id="audience-list-without-ours"),
        pytest.param({"aud": _ABSENT}, id="missing-audience"),
        pytest.param({"iss": "https://evil.example.org/realms/locker"}, id="wrong-issuer"),
        pytest.param({"iss": ISSUER + "/"}, id="issuer-not-exact"),
        pytest.param({"iss": _ABSENT}, id="missing-issuer"),
        pytest.param({"sub": _ABSENT}, id="missing-sub"),
        pytest.param({"sub": ""}, id="empty-sub"),
        pytest.param({"sub": 123}, id="sub-not-a-string"),
        pytest.param({"locker_org": _ABSENT}, id="missing-organisation"),
        pytest.param({"locker_org": ["Syrian Archive"]}, id="organisation-not-a-string"),
        pytest.param({"locker_role": _ABSENT}, id="missing-role"),
        pytest.param({"locker_role": "superuser"}, id="unknown-role"),
        pytest.param({"locker_role": "Admin"}, id="role-wrong-case"),
        pytest.param({"email": _ABSENT}, id="missing-email"),
    ],
)
def test_bad_claims_are_refused(
    verifier: OidcVerifier, keys: dict[str, SigningKey], overrides: dict[str, Any]
) -> None:
    assert_rejected(verifier, mint(keys["RS256"], claims(**overrides)))


def test_tampered_payload_is_refused(verifier: OidcVerifier, keys: dict[str, SigningKey]) -> None:
    header, _, signature = mint(keys["RS256"], claims(locker_role="analyst")).split(".")
    forged = f"{header}.{_b64url_json(claims(locker_role='admin'))}.{signature}"
    assert_rejected(verifier, forged)


def test_signature_by_unpublished_key_is_refused(
    verifier: OidcVerifier, keys: dict[str, SigningKey], stranger: SigningKey
) -> None:
    # The stranger claims the published RSA key's kid: only the signature gives it away.
    assert_rejected(verifier, mint(stranger, claims(), kid=keys["RS256"].kid))


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
def test_alg_none_is_refused(
    verifier: OidcVerifier,
    keys: dict[str, SigningKey],
    alg: str,
    logged: list[dict[str, Any]],
) -> None:
    unsigned = mint_unchecked({"alg": alg, "kid": keys["RS256"].kid}, claims(), hmac_secret=b"")
    assert_rejected(verifier, unsigned)
    # With a junk signature it passes the shape check and must meet the algorithm guard.
    assert_rejected(verifier, unsigned + "c2lnbmF0dXJl")
    assert "forbidden algorithm" in logged[-1]["reason"]


def test_hs256_signed_with_rsa_public_key_is_refused(
    verifier: OidcVerifier, keys: dict[str, SigningKey], logged: list[dict[str, Any]]
) -> None:
    """The RS/HS key-confusion attack: the public key (known to all) used as HMAC secret."""
    public_pem = (
        keys["RS256"]
        .private_key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    header = {"alg": "HS256", "typ": "JWT", "kid": keys["RS256"].kid}
    assert_rejected(verifier, mint_unchecked(header, claims(), hmac_secret=public_pem))
    assert "forbidden algorithm 'HS256'" in logged[-1]["reason"]


def test_symmetric_key_in_jwks_is_never_used(
    idp: JwksServer, clock: FakeClock, keys: dict[str, SigningKey]
) -> None:
    secret = secrets.token_bytes(32)
    oct_jwk = {"kty": "oct", "kid": "shared", "k": base64.urlsafe_b64encode(secret).decode()}
    idp.document = {"keys": [oct_jwk, keys["RS256"].public_jwk()]}
    verifier = _verifier(idp.url, clock)
    header = {"alg": "HS256", "kid": "shared"}
    assert_rejected(verifier, mint_unchecked(header, claims(), hmac_secret=secret))
    # Even under RS256, the kid of a symmetric key names nothing we will verify with.
    assert_rejected(verifier, mint(keys["RS256"], claims(), kid="shared"))


def test_algorithm_outside_allow_list_is_refused(
    verifier: OidcVerifier, keys: dict[str, SigningKey]
) -> None:
    # PS256 with the published RSA key is a perfectly good signature, but not allowed.
    assert_rejected(verifier, mint(keys["RS256"], claims(), alg="PS256"))


def test_algorithm_must_match_the_key(
    idp: JwksServer, clock: FakeClock, keys: dict[str, SigningKey]
) -> None:
    # The EC key signs with ES256, but the header names the RSA key: both are allowed
    # algorithms, neither fits the other's key.
    verifier = _verifier(idp.url, clock)
    assert_rejected(verifier, mint(keys["ES256"], claims(), kid=keys["RS256"].kid))
    # A JWK without "alg" still has a type: an RSA key cannot verify ES256.
    rsa_jwk = {k: v for k, v in keys["RS256"].public_jwk().items() if k != "alg"}
    idp.document = {"keys": [rsa_jwk, keys["ES256"].public_jwk()]}
    fresh = _verifier(idp.url, clock)
    assert_rejected(fresh, mint(keys["ES256"], claims(), kid=keys["RS256"].kid))
    assert fresh.verify(mint(keys["RS256"], claims())).subject == "user-123"


def test_token_without_kid_is_refused_when_jwks_has_several_keys(
    verifier: OidcVerifier, keys: dict[str, SigningKey]
) -> None:
    assert_rejected(verifier, mint(keys["RS256"], claims(), kid=None))


@pytest.mark.parametrize(
    "token",
    [
        "",
        "not-a-token",
        "lk_0123456789abcdef",
        "a.b",
        "a.b.c.d",
        "e30.e30.e30",  # {}.{}.{}: well-formed, but no alg
        "!!.??.**",
        "eyJhbGciOiJSUzI1NiJ9.e30.c2ln\n",
        "a" * 20_000 + ".b.c",
    ],
    ids=["empty", "word", "api-key", "two", "four", "no-alg", "junk", "newline", "huge"],
)
def test_malformed_tokens_are_refused(verifier: OidcVerifier, token: str) -> None:
    assert_rejected(verifier, token)


def test_precise_reason_is_logged_but_not_the_token(
    verifier: OidcVerifier, keys: dict[str, SigningKey], logged: list[dict[str, Any]]
) -> None:
    token = mint(keys["RS256"], claims(exp=FromNow(-120)))
    assert_rejected(verifier, token)
    assert [(e["event"], e["log_level"]) for e in logged] == [("bearer token rejected", "warning")]
    assert "ExpiredSignatureError" in logged[0]["reason"]
    assert token.split(".")[2] not in repr(logged)


# --- the JWKS cache --------------------------------------------------------------------


def test_key_rotation_is_followed_after_one_refetch(
    idp: JwksServer, verifier: OidcVerifier, clock: FakeClock, keys: dict[str, SigningKey]
) -> None:
    old = keys["RS256"]
    assert verifier.verify(mint(old, claims())).subject == "user-123"
    assert idp.requests == 1
    new = rsa_key("rsa-2")
    idp.publish(new)  # the IdP swaps keys
    clock.advance(MIN_REFRESH)
    assert verifier.verify(mint(new, claims())).subject == "user-123"
    assert idp.requests == 2
    # The withdrawn key no longer verifies, and asking about it again costs no fetch.
    assert_rejected(verifier, mint(old, claims()))
    assert idp.requests == 2


def test_unknown_kid_burst_causes_at_most_one_fetch(
    idp: JwksServer,
    verifier: OidcVerifier,
    clock: FakeClock,
    keys: dict[str, SigningKey],
    stranger: SigningKey,
) -> None:
    verifier.verify(mint(keys["ES256"], claims()))
    assert idp.requests == 1
    clock.advance(MIN_REFRESH)
    for _ in range(50):
        assert_rejected(verifier, mint(stranger, claims(), kid=secrets.token_hex(8)))
        clock.advance((MIN_REFRESH - 1) / 50)  # the whole burst stays inside one window
    assert idp.requests == 2
    # Known kids keep working from the cache meanwhile.
    assert verifier.verify(mint(keys["EdDSA"], claims())).subject == "user-123"
    assert idp.requests == 2


def test_unknown_kid_right_after_a_fetch_causes_none(
    idp: JwksServer, verifier: OidcVerifier, keys: dict[str, SigningKey], stranger: SigningKey
) -> None:
    verifier.verify(mint(keys["ES256"], claims()))
    assert_rejected(verifier, mint(stranger, claims()))
    assert idp.requests == 1


def test_cache_expires_after_ttl(
    idp: JwksServer, verifier: OidcVerifier, clock: FakeClock, keys: dict[str, SigningKey]
) -> None:
    token = mint(keys["RS256"], claims())
    verifier.verify(token)
    clock.advance(TTL - 1)
    verifier.verify(token)
    assert idp.requests == 1
    clock.advance(1)
    verifier.verify(token)
    assert idp.requests == 2


def test_expired_keys_are_not_trusted_when_idp_fails(
    idp: JwksServer, verifier: OidcVerifier, clock: FakeClock, keys: dict[str, SigningKey]
) -> None:
    token = mint(keys["RS256"], claims())
    verifier.verify(token)
    idp.status = 503
    clock.advance(TTL)
    assert_rejected(verifier, token)
    assert idp.requests == 2


def test_failed_refetch_keeps_fresh_keys(
    idp: JwksServer,
    verifier: OidcVerifier,
    clock: FakeClock,
    keys: dict[str, SigningKey],
    stranger: SigningKey,
) -> None:
    verifier.verify(mint(keys["RS256"], claims()))
    idp.status = 500
    clock.advance(MIN_REFRESH)
    assert_rejected(verifier, mint(stranger, claims()))  # unknown kid: refetch fails
    assert idp.requests == 2
    assert verifier.verify(mint(keys["RS256"], claims())).subject == "user-123"


def test_jwks_server_down_is_unauthenticated(
    clock: FakeClock, keys: dict[str, SigningKey], logged: list[dict[str, Any]]
) -> None:
    with run_jwks_server() as gone:
        url = gone.url
    verifier = _verifier(url, clock)  # nothing listens there any more
    assert_rejected(verifier, mint(keys["RS256"], claims()))
    fetches = [e for e in logged if e["event"] == "JWKS fetch failed"]
    assert fetches and fetches[0]["url"] == url and fetches[0]["log_level"] == "warning"


@pytest.mark.parametrize(
    ("status", "body"),
    [
        pytest.param(500, b'{"keys": []}', id="server-error"),
        pytest.param(200, b"<html>login</html>", id="not-json"),
        pytest.param(200, b'{"keys": "none"}', id="keys-not-a-list"),
        pytest.param(200, b"[]", id="not-an-object"),
    ],
)
def test_broken_jwks_is_unauthenticated(
    idp: JwksServer, verifier: OidcVerifier, keys: dict[str, SigningKey], status: int, body: bytes
) -> None:
    idp.status, idp.body = status, body
    assert_rejected(verifier, mint(keys["RS256"], claims()))
    assert idp.requests == 1


def test_failed_fetch_is_not_retried_within_min_refresh(
    idp: JwksServer, verifier: OidcVerifier, clock: FakeClock, keys: dict[str, SigningKey]
) -> None:
    token = mint(keys["RS256"], claims())
    idp.status = 503
    for _ in range(10):
        assert_rejected(verifier, token)
    assert idp.requests == 1
    idp.status = 200
    clock.advance(MIN_REFRESH)
    assert verifier.verify(token).subject == "user-123"
    assert idp.requests == 2


def test_concurrent_cold_start_fetches_once(
    idp: JwksServer, verifier: OidcVerifier, keys: dict[str, SigningKey]
) -> None:
    token = mint(keys["ES256"], claims())
    results: list[str] = []
    start = threading.Barrier(16)

    def verify() -> None:
        start.wait()
        results.append(verifier.verify(token).subject)

    threads = [threading.Thread(target=verify) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == ["user-123"] * 16
    assert idp.requests == 1


# --- configuration and shape -------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides",
    [
        {"algorithms": ("HS256",)},
        {"algorithms": ("RS256", "hs512")},
        {"algorithms": ("none",)},
        {"algorithms": ()},
        {"jwks_ttl_seconds": 0},
        {"leeway_seconds": -1},
    ],
)
def test_unsafe_configuration_is_refused(overrides: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        _config("http://127.0.0.1:1/jwks.json", **overrides)


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        ("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl", True),
        ("a-_.b.c", True),
        ("lk_0123456789abcdef", False),
        ("a.b", False),
        ("a.b.", False),
        ("a..c", False),
        ("a.b.c.d", False),
        ("a+b.c.d", False),
        ("a.b.c\n", False),
        ("a.b.c=", False),
    ],
)
def test_looks_like_jwt(token: str, expected: bool) -> None:
    assert looks_like_jwt(token) is expected
