"""From an Authorization header to a principal: API keys and OIDC bearer tokens."""

from __future__ import annotations

from typing import TYPE_CHECKING

from service.accounts.members import Principal, authenticate_key, principal_for_member
from service.accounts.oidc import looks_like_jwt
from service.accounts.permissions import Role
from service.errors import NotFound, Unauthenticated

if TYPE_CHECKING:
    from service.runtime import Runtime

_MISSING = "missing or malformed bearer credentials"


def presented_key_prefix(authorization: str | None) -> str | None:
    """The prefix of the API key an Authorization header presents (valid or not), if any.

    Failures are counted per prefix, so many addresses guessing at one key get no further
    than one address would.
    """
    scheme, _, credential = (authorization or "").partition(" ")
    credential = credential.strip()
    if scheme.lower() != "bearer" or not credential.startswith("lk_"):
        return None
    return credential.removeprefix("lk_").split("_", 1)[0][:32] or None


def authenticate(runtime: Runtime, authorization: str | None) -> Principal:
    """Resolve `Bearer <API key or OIDC token>`, or raise Unauthenticated."""
    scheme, _, credential = (authorization or "").partition(" ")
    credential = credential.strip()
    if scheme.lower() != "bearer" or not credential:
        raise Unauthenticated(_MISSING)
    if credential.startswith("lk_"):
        return authenticate_key(runtime, credential)
    if runtime.oidc is None or not looks_like_jwt(credential):
        raise Unauthenticated(_MISSING)
    identity = runtime.oidc.verify(credential)
    try:
        return principal_for_member(
            runtime,
            organisation=identity.organisation,
            email=identity.email,
            role=Role(identity.role),
            actor=f"oidc:{identity.subject}"[:80],
            name=identity.name,
        )
    except NotFound:
        # A token for an organisation this locker does not hold.
        raise Unauthenticated("invalid bearer token") from None
