"""Verify OIDC bearer tokens (signed JWTs) against the identity provider's published keys.

A token is accepted only if it is signed, with an asymmetric algorithm from the
allow-list, by the key its `kid` names in the provider's JWKS (RFC 7517), and its
claims name this locker's issuer and audience, are within their validity window and
carry the organisation, role and e-mail the locker maps to a member.

Every refusal raises `Unauthenticated` with one generic message, so a caller cannot
probe which check failed; the precise reason goes to the "locker.security" log.
No FastAPI and no database here: the caller maps the identity to a principal.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn

import httpx
import jwt
import structlog

from service.accounts.people import person_name
from service.accounts.permissions import Role
from service.errors import ConfigurationError, InvalidInput, Unauthenticated, describe

_log = structlog.get_logger("locker.security")

_GENERIC = "invalid bearer token"
_ROLES = frozenset(role.value for role in Role)
# Far above any real access token; refusing bigger ones early bounds the parsing work
# an anonymous caller can make us do.
_MAX_TOKEN_CHARS = 16_384
# RFC 7515 §7.1 compact serialisation: header.payload.signature, each base64url.
_COMPACT_JWS = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
_FETCH_TIMEOUT_SECONDS = 5.0


def _forbidden_algorithm(alg: str) -> bool:
    """True for algorithms a bearer token must never use, whatever the configuration.

    "none" has no signature (RFC 7518 §3.6). HS* are symmetric: with them a
    verifier that hands the provider's *public* key to HMAC as the secret accepts
    tokens anyone can mint (the RS/HS key-confusion attack).
    """
    return alg.lower() == "none" or alg.upper().startswith("HS")


@dataclass(frozen=True, slots=True, kw_only=True)
class OidcConfig:
    """Where the identity provider publishes its keys, and what its tokens must say."""

    issuer: str
    audience: str
    jwks_url: str
    organisation_claim: str = "locker_org"
    role_claim: str = "locker_role"
    email_claim: str = "email"
    algorithms: tuple[str, ...] = ("RS256", "ES256", "EdDSA")
    leeway_seconds: int = 30
    jwks_ttl_seconds: int = 300
    min_refresh_seconds: int = 30

    def __post_init__(self) -> None:
        forbidden = [alg for alg in self.algorithms if _forbidden_algorithm(alg)]
        if forbidden or not self.algorithms:
            raise ConfigurationError(
                f"OIDC algorithms must be non-empty and asymmetric; refused: {forbidden}"
            )
        if self.leeway_seconds < 0 or self.min_refresh_seconds < 0 or self.jwks_ttl_seconds <= 0:
            raise ConfigurationError(
                "OIDC leeway and minimum refresh must be >= 0 and the JWKS TTL > 0"
            )


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenIdentity:
    """Who a verified token speaks for; `organisation` is the organisation's name."""

    subject: str
    email: str
    organisation: str
    role: str
    name: str | None = None  # the standard `name` claim, recorded if the member is new


def looks_like_jwt(token: str) -> bool:
    """True if `token` has the shape of a compact JWS (three base64url segments)."""
    return _COMPACT_JWS.fullmatch(token) is not None


def _reject(reason: str) -> NoReturn:
    """Log why a token was refused and raise the one answer the caller sees."""
    _log.warning("bearer token rejected", reason=reason)
    raise Unauthenticated(_GENERIC) from None


def _usable(jwk: object) -> bool:
    """True for a JWK that may verify signatures: not symmetric, not for encryption."""
    if not isinstance(jwk, dict):
        return False
    # A symmetric ("oct") key in a *public* document is a shared secret everyone holds.
    return jwk.get("kty") != "oct" and jwk.get("use", "sig") == "sig"


def _fetch_jwks(url: str, timeout: float) -> list[dict[str, Any]]:
    """The usable keys of the JWKS at `url`; raises httpx.HTTPError or ValueError."""
    # httpx does not follow redirects unless told to: the keys come from `url` only.
    response = httpx.get(url, timeout=timeout)
    response.raise_for_status()
    document = response.json()
    keys = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(keys, list):
        raise ValueError("the JWKS document has no 'keys' list")
    return [jwk for jwk in keys if _usable(jwk)]


class JwksCache:
    """The provider's signing keys, fetched over HTTP and kept for a TTL.

    An unknown `kid` triggers a refetch, to follow key rotation (OIDC Core §10.1.1),
    but fetches (successful or not) are at least `min_refresh_seconds` apart, so
    tokens with made-up kids or an unreachable provider cannot make us hammer it.
    Keys past their TTL are not used: if the provider cannot be reached we refuse
    tokens rather than trust keys it may have withdrawn.
    """

    def __init__(
        self,
        url: str,
        *,
        ttl_seconds: float = 300,
        min_refresh_seconds: float = 30,
        timeout_seconds: float = _FETCH_TIMEOUT_SECONDS,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self._url, self._ttl, self._min_refresh = url, ttl_seconds, min_refresh_seconds
        self._timeout, self._now = timeout_seconds, now
        self._keys: list[dict[str, Any]] = []
        self._fetched_at: float | None = None  # last successful fetch
        self._attempted_at: float | None = None  # last fetch, successful or not
        # Held across the fetch on purpose: concurrent requests with a cold cache or the
        # same new kid then wait for one fetch instead of each making their own.
        self._lock = threading.Lock()

    @classmethod
    def for_config(
        cls, config: OidcConfig, *, now: Callable[[], float] = time.monotonic
    ) -> JwksCache:
        """A cache of the keys at `config.jwks_url`, with the configured timings."""
        return cls(
            config.jwks_url,
            ttl_seconds=config.jwks_ttl_seconds,
            min_refresh_seconds=config.min_refresh_seconds,
            now=now,
        )

    def key_for(self, kid: str | None) -> dict[str, Any]:
        """The JWK named `kid` (None: the only key), or raise Unauthenticated."""
        with self._lock:
            now = self._now()
            if not self._fresh(now) and self._may_fetch(now):
                self._refresh(now)
            key = self._find(kid, now)
            if key is None and kid is not None and self._may_fetch(now):
                self._refresh(now)  # perhaps the provider has rotated its keys
                key = self._find(kid, now)
        if key is None:
            _reject(f"no usable key for kid {kid!r} in the JWKS at {self._url}")
        return key

    def _fresh(self, now: float) -> bool:
        return self._fetched_at is not None and now - self._fetched_at < self._ttl

    def _may_fetch(self, now: float) -> bool:
        return self._attempted_at is None or now - self._attempted_at >= self._min_refresh

    def _find(self, kid: str | None, now: float) -> dict[str, Any] | None:
        keys = self._keys if self._fresh(now) else []
        if kid is None:
            # Without a kid the key is ambiguous unless the provider publishes only one.
            return keys[0] if len(keys) == 1 else None
        return next((jwk for jwk in keys if jwk.get("kid") == kid), None)

    def _refresh(self, now: float) -> None:
        """Replace the keys with the provider's current ones; keep them if that fails."""
        self._attempted_at = now
        try:
            self._keys = _fetch_jwks(self._url, self._timeout)
        except (httpx.HTTPError, ValueError) as error:
            _log.warning("JWKS fetch failed", url=self._url, error=describe(error))
            return
        self._fetched_at = now


class OidcVerifier:
    """Turns a bearer token from the configured provider into a TokenIdentity."""

    def __init__(self, config: OidcConfig, *, jwks: JwksCache | None = None) -> None:
        self._config = config
        self._jwks = jwks if jwks is not None else JwksCache.for_config(config)

    def verify(self, token: str) -> TokenIdentity:
        """The identity `token` asserts, or raise Unauthenticated (reason logged)."""
        if len(token) > _MAX_TOKEN_CHARS or not looks_like_jwt(token):
            _reject("not a compact JWS")
        header = _header(token)
        alg = self._algorithm(header)
        key = _public_key(self._jwks.key_for(_kid(header)), alg)
        return self._identity(self._claims(token, key, alg))

    def _algorithm(self, header: dict[str, Any]) -> str:
        alg = header.get("alg")
        if not isinstance(alg, str):
            _reject("header has no 'alg'")
        # Checked before any key is looked up, independently of the allow-list, so a
        # misconfiguration cannot reopen "none" or the RS/HS key-confusion attack.
        if _forbidden_algorithm(alg):
            _reject(f"forbidden algorithm {alg!r}")
        if alg not in self._config.algorithms:
            _reject(f"algorithm {alg!r} is not in {self._config.algorithms}")
        return alg

    def _claims(self, token: str, key: jwt.PyJWK, alg: str) -> dict[str, Any]:
        """The payload, once signature, issuer, audience and validity window check out."""
        try:
            return jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=self._config.audience,
                issuer=self._config.issuer,
                leeway=self._config.leeway_seconds,
                # exp must be present: a token without one would be valid forever.
                # nbf and iat are checked when present.
                options={
                    "require": ["exp", "iss", "aud", "sub"],
                    "enforce_minimum_key_length": True,
                },
            )
        except jwt.PyJWTError as error:
            _reject(f"{type(error).__name__}: {error}")

    def _identity(self, claims: dict[str, Any]) -> TokenIdentity:
        config = self._config
        role = _string_claim(claims, config.role_claim)
        if role not in _ROLES:
            _reject(f"claim {config.role_claim!r} has unknown role {role!r}")
        return TokenIdentity(
            subject=_string_claim(claims, "sub"),
            email=_string_claim(claims, config.email_claim),
            organisation=_string_claim(claims, config.organisation_claim),
            role=role,
            name=_name_claim(claims),
        )


def _header(token: str) -> dict[str, Any]:
    """The token's JOSE header, not yet trusted (the signature is checked later)."""
    try:
        return jwt.get_unverified_header(token)
    except jwt.PyJWTError as error:
        _reject(f"malformed header: {error}")


def _kid(header: dict[str, Any]) -> str | None:
    kid = header.get("kid")
    if kid is not None and not isinstance(kid, str):
        _reject("header 'kid' is not a string")
    return kid


def _public_key(jwk: dict[str, Any], alg: str) -> jwt.PyJWK:
    """`jwk` bound to `alg`, refused if the key declares another or is of the wrong type."""
    declared = jwk.get("alg")
    if declared is not None and declared != alg:
        _reject(f"token uses {alg!r} but key {jwk.get('kid')!r} is for {declared!r}")
    try:
        # Binding the key to one algorithm makes PyJWT refuse a token whose header says
        # otherwise, and fails here if the key type does not fit (an RSA key for ES256).
        return jwt.PyJWK(jwk, algorithm=alg)
    except jwt.PyJWTError as error:
        _reject(f"key {jwk.get('kid')!r} cannot verify {alg!r}: {error}")


def _name_claim(claims: dict[str, Any]) -> str | None:
    """The person's name (OIDC Core 1.0 §5.1 `name`), if it is one a member may have.

    A name the locker would refuse (control characters, too long) is left out rather
    than failing the sign-in: the member is then named by e-mail.
    """
    value = claims.get("name")
    if not isinstance(value, str):
        return None
    try:
        return person_name(value)
    except InvalidInput as error:
        _log.warning("token's name claim not recorded", reason=describe(error))
        return None


def _string_claim(claims: dict[str, Any], name: str) -> str:
    value = claims.get(name)
    if not isinstance(value, str) or not value.strip():
        _reject(f"claim {name!r} is missing or not a non-empty string")
    return value
