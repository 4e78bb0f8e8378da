"""Organisations, members and API keys: bootstrap, authentication, key management."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import ColumnElement, func
from sqlmodel import Session, col, select

from service.accounts.people import MEMBER_ADDED, person_name
from service.accounts.permissions import Permission, Role, allows, parse_role, within
from service.db import rerun_if_raced
from service.db.models import ApiKey, Organisation, User
from service.errors import Forbidden, InvalidInput, NotFound, Unauthenticated

if TYPE_CHECKING:
    from service.runtime import Runtime

_KEY_PREFIX = "lk_"
_BAD_KEY = "invalid or expired credentials"
# Writing last_used_at on every request would turn every read into a write.
_LAST_USED_RESOLUTION = timedelta(minutes=1)
_KEY_NAME_LIMIT = 200  # the api_key.name column


class _Acting:
    """What a member's principal and the operator share: a role, checked the same way."""

    __slots__ = ()
    role: Role

    def require(self, permission: Permission, *, subject: str = "") -> None:
        """Raise Forbidden unless this principal's role holds `permission`."""
        if not allows(self.role, permission):
            raise Forbidden(
                f"role {self.role} may not {permission.value}", subject=subject or permission
            )


@dataclass(frozen=True, slots=True, kw_only=True)
class Principal(_Acting):
    """Who is calling: a member acting for one organisation, with the key's role."""

    user_id: str
    organisation_id: str
    role: Role
    key_id: str | None = None

    @property
    def actor(self) -> str:
        return f"user:{self.user_id}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Operator(_Acting):
    """The deployment's operator at the command line, administering one organisation.

    Not a member (`user_id` is None): it holds the admin role there without a key, and
    the custody log names it `operator:<name>`. The CLI passes it to the same use cases
    the API calls with a member's principal, so both follow one set of rules.
    """

    organisation_id: str
    name: str = "cli"
    role: Role = Role.ADMIN
    user_id: None = None

    @property
    def actor(self) -> str:
        return f"operator:{self.name}"


# Whoever may call the member and key use cases: a member or the operator.
Caller = Principal | Operator


@dataclass(frozen=True, slots=True, kw_only=True)
class IssuedKey:
    """A new key: the secret is shown once and never stored."""

    row: ApiKey
    secret: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Bootstrapped:
    organisation_id: str
    user_id: str
    api_key: str


def _key_sha256(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _now() -> datetime:
    return datetime.now(UTC)


def bootstrap(
    runtime: Runtime, *, organisation: str, email: str, name: str | None = None
) -> Bootstrapped:
    """Create an organisation, its first (admin) member and an API key for them."""
    organisation, email = organisation.strip(), email.strip()
    if not organisation or "@" not in email:
        raise InvalidInput("bootstrap needs an organisation name and an e-mail address")
    name = person_name(name)
    with runtime.database.session() as session:
        if session.exec(select(Organisation).where(Organisation.name == organisation)).first():
            raise InvalidInput(f"organisation {organisation!r} already exists")
        org = Organisation(id=str(uuid.uuid4()), name=organisation, created_at=_now())
        session.add(org)
        session.flush()
        operator = Operator(organisation_id=org.id)
        runtime.log.append(
            session,
            organisation_id=org.id,
            actor=operator.actor,
            action="organisation.created",
            subjects=[f"organisation:{org.id}"],
            details={"name": organisation},
        )
        user = _add_member(
            runtime, session, org.id, email, Role.ADMIN, name=name, actor=operator.actor
        )
        issued = _issue_key(
            runtime,
            session,
            user,
            role=Role.ADMIN,
            name="bootstrap",
            expires=None,
            actor=operator.actor,
        )
    # A signed checkpoint binds the log to its key: a process started later with another
    # key is refused at once (custody.keys), not only after someone asked for one.
    runtime.log.latest_checkpoint(runtime.database)
    return Bootstrapped(organisation_id=org.id, user_id=user.id, api_key=issued.secret)


def _add_member(
    runtime: Runtime,
    session: Session,
    organisation_id: str,
    email: str,
    role: Role,
    *,
    name: str | None,
    actor: str,
) -> User:
    """Add the member and sign who they are (e-mail, and name if given) in `member.added`."""
    if "@" not in email or len(email) > 320:
        raise InvalidInput("email: not an e-mail address")
    if session.exec(
        select(User).where(User.organisation_id == organisation_id).where(same_email(email))
    ).first():
        raise InvalidInput(f"email: {email} is already a member")
    user_id = str(uuid.uuid4())
    added = runtime.log.append(
        session,
        organisation_id=organisation_id,
        actor=actor,
        action=MEMBER_ADDED,
        subjects=[f"user:{user_id}"],
        details={"role": role.value, "email": email} | ({"name": name} if name else {}),
    )
    user = User(
        id=user_id,
        organisation_id=organisation_id,
        email=email,
        name=name,
        role=role,
        created_at=_now(),
        custody_index=added.index,
    )
    session.add(user)
    session.flush()
    return user


def _issue_key(
    runtime: Runtime,
    session: Session,
    user: User,
    *,
    role: Role,
    name: str,
    expires: datetime | None,
    actor: str,
) -> IssuedKey:
    if not within(role, Role(user.role)):
        raise Forbidden(
            f"a key's role ({role}) cannot exceed its owner's ({user.role})",
            subject=f"user:{user.id}",
        )
    prefix = secrets.token_hex(6)
    secret = f"{_KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
    row = ApiKey(
        id=str(uuid.uuid4()),
        prefix=prefix,
        key_sha256=_key_sha256(secret),
        user_id=user.id,
        organisation_id=user.organisation_id,
        name=name,
        role=role,
        created_at=_now(),
        expires_at=expires,
    )
    session.add(row)
    session.flush()
    runtime.log.append(
        session,
        organisation_id=user.organisation_id,
        actor=actor,
        action="key.created",
        subjects=[f"key:{prefix}", f"user:{user.id}"],
        details={"role": role.value},
    )
    return IssuedKey(row=row, secret=secret)


def authenticate_key(runtime: Runtime, key: str) -> Principal:
    """Resolve an API key to a principal, or raise Unauthenticated."""
    if not key.startswith(_KEY_PREFIX):
        raise Unauthenticated(_BAD_KEY)
    prefix = key.removeprefix(_KEY_PREFIX).split("_", 1)[0]
    now = _now()
    with runtime.database.session() as session:
        row = session.exec(select(ApiKey).where(ApiKey.prefix == prefix)).first()
        if (
            row is None
            or row.revoked_at is not None
            or (row.expires_at is not None and row.expires_at <= now)
            or not hmac.compare_digest(row.key_sha256, _key_sha256(key))
        ):
            raise Unauthenticated(_BAD_KEY)
        if row.last_used_at is None or now - row.last_used_at > _LAST_USED_RESOLUTION:
            row.last_used_at = now
            session.add(row)
    return Principal(
        user_id=row.user_id,
        organisation_id=row.organisation_id,
        role=Role(row.role),
        key_id=row.id,
    )


@rerun_if_raced
def principal_for_member(
    runtime: Runtime,
    *,
    organisation: str,
    email: str,
    role: Role,
    actor: str,
    name: str | None = None,
) -> Principal:
    """The principal of a member named by an identity provider (created on first use,
    with `name` if the provider gave one)."""
    with runtime.database.session() as session:
        org = _organisation_by_name(session, organisation)
        user = session.exec(
            select(User).where(User.organisation_id == org.id).where(same_email(email))
        ).first()
        if user is None:
            user = _add_member(runtime, session, org.id, email, role, name=name, actor=actor)
    return Principal(user_id=user.id, organisation_id=org.id, role=role)


def _organisation_by_name(session: Session, name: str) -> Organisation:
    org = session.exec(select(Organisation).where(Organisation.name == name)).first()
    if org is None:
        raise NotFound(f"no organisation {name!r}")
    return org


def same_email(email: str) -> ColumnElement[bool]:
    # Mailboxes are case-insensitive in practice (and identity providers vary the case):
    # AN@example.org and an@example.org are one member.
    return func.lower(col(User.email)) == email.strip().lower()


def _member(session: Session, organisation_id: str, *, email: str) -> User:
    user = session.exec(
        select(User).where(User.organisation_id == organisation_id).where(same_email(email))
    ).first()
    if user is None:
        raise NotFound(f"no member {email}")
    return user


@rerun_if_raced
def add_member(
    runtime: Runtime, principal: Caller, *, email: str, role: str, name: str | None = None
) -> User:
    """An admin (or the operator) adds a member, named or not, to their organisation."""
    principal.require(Permission.MEMBERS)
    wanted_role, wanted_name = _role(role), person_name(name)
    with runtime.database.session() as session:
        return _add_member(
            runtime,
            session,
            principal.organisation_id,
            email.strip(),
            wanted_role,
            name=wanted_name,
            actor=principal.actor,
        )


def list_members(runtime: Runtime, principal: Caller) -> list[User]:
    """Every member of the organisation, oldest first."""
    principal.require(Permission.MEMBERS)
    with runtime.database.session() as session:
        return list(
            session.exec(
                select(User)
                .where(User.organisation_id == principal.organisation_id)
                .order_by(col(User.created_at))
            )
        )


def create_key(
    runtime: Runtime,
    principal: Caller,
    *,
    name: str,
    role: str | None = None,
    expires_days: int | None = None,
    email: str | None = None,
) -> IssuedKey:
    """A new key for the caller (or, for admins, another member), never above its owner."""
    principal.require(Permission.KEYS_OWN)
    if len(name) > _KEY_NAME_LIMIT:
        raise InvalidInput(f"name: at most {_KEY_NAME_LIMIT} characters")
    with runtime.database.session() as session:
        owner = _key_owner(session, principal, email)
        default = principal.role if owner.id == principal.user_id else Role(owner.role)
        wanted = _role(role) if role else default
        if owner.id == principal.user_id and not within(wanted, principal.role):
            raise Forbidden(
                f"a key's role ({wanted}) cannot exceed yours ({principal.role})",
                subject=f"user:{owner.id}",
            )
        return _issue_key(
            runtime,
            session,
            owner,
            role=wanted,
            name=name,
            expires=_expiry(expires_days),
            actor=principal.actor,
        )


def _key_owner(session: Session, principal: Caller, email: str | None) -> User:
    """The caller, unless `email` names another member (admins only; the operator must)."""
    own = session.get(User, principal.user_id) if principal.user_id is not None else None
    if own is not None and (email is None or email.strip().lower() == own.email.lower()):
        return own
    if email is None:
        raise InvalidInput("email: name the member who will own the key")
    principal.require(Permission.KEYS_ALL, subject=f"member:{email}")
    return _member(session, principal.organisation_id, email=email)


def list_keys(runtime: Runtime, principal: Caller) -> list[ApiKey]:
    """The caller's keys, or every key of the organisation for admins."""
    principal.require(Permission.KEYS_OWN)
    query = select(ApiKey).where(ApiKey.organisation_id == principal.organisation_id)
    if not allows(principal.role, Permission.KEYS_ALL):
        query = query.where(ApiKey.user_id == principal.user_id)
    with runtime.database.session() as session:
        return list(session.exec(query.order_by(col(ApiKey.created_at))))


def revoke_key(runtime: Runtime, principal: Caller, prefix: str) -> ApiKey:
    """Revoke a key at once; the next request with it is refused."""
    principal.require(Permission.KEYS_OWN)
    with runtime.database.session() as session:
        row = _key_to_revoke(session, prefix)
        if row is None or row.organisation_id != principal.organisation_id:
            raise NotFound(f"no key {prefix}")
        if row.user_id != principal.user_id:
            principal.require(Permission.KEYS_ALL, subject=f"key:{prefix}")
        return _revoke(runtime, session, row, actor=principal.actor)


def _key_to_revoke(session: Session, prefix: str) -> ApiKey | None:
    # Locked: a concurrent revocation waits, then finds this one done and logs nothing.
    return session.exec(select(ApiKey).where(ApiKey.prefix == prefix).with_for_update()).first()


def _revoke(runtime: Runtime, session: Session, row: ApiKey, *, actor: str) -> ApiKey:
    if row.revoked_at is None:
        row.revoked_at = _now()
        session.add(row)
        runtime.log.append(
            session,
            organisation_id=row.organisation_id,
            actor=actor,
            action="key.revoked",
            subjects=[f"key:{row.prefix}", f"user:{row.user_id}"],
        )
    return row


def _role(text: str) -> Role:
    try:
        return parse_role(text)
    except ValueError as exc:
        raise InvalidInput(f"role: {exc}") from None


def _expiry(days: int | None) -> datetime | None:
    if days is None:
        return None
    if not 1 <= days <= 3650:
        raise InvalidInput("expires_days: must be between 1 and 3650")
    return _now() + timedelta(days=days)


def operator_of(runtime: Runtime, *, organisation: str, name: str = "cli") -> Operator:
    """The operator acting on the organisation of that name (NotFound if there is none)."""
    with runtime.database.session() as session:
        return Operator(organisation_id=_organisation_by_name(session, organisation).id, name=name)
