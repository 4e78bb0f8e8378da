"""Organisations, users and API keys: bootstrap and authentication."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlmodel import select

from service.db.models import ApiKey, Organisation, User
from service.errors import InvalidInput, Unauthenticated
from service.runtime import Runtime

_KEY_PREFIX = "lk_"


@dataclass(frozen=True, slots=True, kw_only=True)
class Principal:
    """Who is calling: a user acting for one organisation."""

    user_id: str
    organisation_id: str
    role: str

    @property
    def actor(self) -> str:
        return f"user:{self.user_id}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Bootstrapped:
    organisation_id: str
    user_id: str
    api_key: str


def _key_sha256(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _new_key() -> tuple[str, str]:
    """A fresh key and its lookup prefix: lk_<prefix>_<secret>."""
    prefix = secrets.token_hex(6)
    return prefix, f"{_KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"


def bootstrap(runtime: Runtime, *, organisation: str, email: str) -> Bootstrapped:
    """Create an organisation, its first (admin) user and an API key for that user."""
    organisation, email = organisation.strip(), email.strip()
    if not organisation or "@" not in email:
        raise InvalidInput("bootstrap needs an organisation name and an e-mail address")
    now = datetime.now(UTC)
    with runtime.database.session() as session:
        if session.exec(select(Organisation).where(Organisation.name == organisation)).first():
            raise InvalidInput(f"organisation {organisation!r} already exists")
        org = Organisation(id=str(uuid.uuid4()), name=organisation, created_at=now)
        user = User(
            id=str(uuid.uuid4()),
            organisation_id=org.id,
            email=email,
            role="admin",
            created_at=now,
        )
        prefix, key = _new_key()
        session.add(org)
        session.flush()
        session.add(user)
        session.flush()
        session.add(
            ApiKey(
                id=str(uuid.uuid4()),
                prefix=prefix,
                key_sha256=_key_sha256(key),
                user_id=user.id,
                organisation_id=org.id,
                created_at=now,
            )
        )
        runtime.log.append(
            session,
            organisation_id=org.id,
            actor=f"user:{user.id}",
            action="organisation.created",
            subjects=[f"organisation:{org.id}"],
            details={"name": organisation},
        )
    return Bootstrapped(organisation_id=org.id, user_id=user.id, api_key=key)


def authenticate(runtime: Runtime, authorization: str | None) -> Principal:
    """Resolve an `Authorization: Bearer <key>` header to a principal, or refuse."""
    scheme, _, key = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not key.startswith(_KEY_PREFIX):
        raise Unauthenticated("missing or malformed bearer API key")
    prefix = key.removeprefix(_KEY_PREFIX).split("_", 1)[0]
    with runtime.database.session() as session:
        row = session.exec(select(ApiKey).where(ApiKey.prefix == prefix)).first()
        user = session.get(User, row.user_id) if row else None
    if row is None or user is None or row.revoked_at is not None:
        raise Unauthenticated("unknown or revoked API key")
    if not hmac.compare_digest(row.key_sha256, _key_sha256(key)):
        raise Unauthenticated("unknown or revoked API key")
    return Principal(user_id=user.id, organisation_id=row.organisation_id, role=user.role)
