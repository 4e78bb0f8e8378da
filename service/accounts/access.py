"""Who may see which item: organisations, restricted items and grants.

An item of another organisation, or a restricted item without a grant, does not exist
for the caller: the answer is the same 404 as for an unknown id (`Hidden` records the
attempt for the owner). Grants and restrictions are custody events.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TypeVar

from sqlalchemy import ColumnElement, String, and_, exists, literal, not_, or_
from sqlalchemy.orm import Mapped
from sqlmodel import Session, col, select

from service.accounts.members import Principal, same_email
from service.accounts.permissions import Permission
from service.db import rerun_if_raced
from service.db.models import AccessGrant, Evidence, Incident, Restriction, User
from service.errors import Forbidden, Hidden, InvalidInput, NotFound

if TYPE_CHECKING:
    from service.runtime import Runtime

_Item = TypeVar("_Item", Incident, Evidence)


def _granted(session: Session, principal: Principal, subject: str) -> bool:
    grant = session.exec(
        select(AccessGrant.id)
        .where(AccessGrant.subject == subject)
        .where(AccessGrant.user_id == principal.user_id)
        .where(col(AccessGrant.revoked_at).is_(None))
    ).first()
    return grant is not None


def is_restricted(session: Session, subject: str) -> bool:
    return session.get(Restriction, subject) is not None


def check_visible(
    session: Session, principal: Principal, *, subject: str, organisation_id: str, what: str
) -> None:
    """Raise Hidden unless the caller's organisation owns the item and may see it."""
    if organisation_id != principal.organisation_id or (
        is_restricted(session, subject) and not _granted(session, principal, subject)
    ):
        raise Hidden(f"no {what}", subject=subject, organisation_id=organisation_id)


def visible_incident(session: Session, principal: Principal, incident_id: str) -> Incident:
    """The incident if the caller may see it; otherwise NotFound, whatever the reason."""
    principal.require(Permission.INCIDENT_READ)
    return _visible(session, principal, session.get(Incident, incident_id), "incident", incident_id)


def visible_evidence(session: Session, principal: Principal, evidence_id: str) -> Evidence:
    """The evidence record if the caller may see it; otherwise NotFound."""
    principal.require(Permission.EVIDENCE_READ)
    return _visible(session, principal, session.get(Evidence, evidence_id), "evidence", evidence_id)


def _visible(
    session: Session, principal: Principal, item: _Item | None, kind: str, item_id: str
) -> _Item:
    if item is None:
        raise NotFound(f"no {kind} {item_id}")
    check_visible(
        session,
        principal,
        subject=f"{kind}:{item_id}",
        organisation_id=item.organisation_id,
        what=f"{kind} {item_id}",
    )
    return item


def has_grant(session: Session, principal: Principal, subject: str) -> bool:
    """Whether the caller holds an explicit grant on the item."""
    return _granted(session, principal, subject)


def subject_column(kind: str, item_id: ColumnElement[str] | Mapped[str]) -> ColumnElement[str]:
    """SQL: the subject ("<kind>:<id>") of the item whose id is in `item_id`."""
    return literal(f"{kind}:", String) + item_id


def visible_clause(
    principal: Principal, subject_column: ColumnElement[str] | Mapped[str]
) -> ColumnElement[bool]:
    """SQL: the subject is unrestricted, or the caller holds a live grant on it."""
    restricted = exists().where(col(Restriction.subject) == subject_column)
    granted = exists().where(
        and_(
            col(AccessGrant.subject) == subject_column,
            col(AccessGrant.user_id) == principal.user_id,
            col(AccessGrant.revoked_at).is_(None),
        )
    )
    return or_(not_(restricted), granted)


ITEM_KINDS = ("evidence", "incident")


def hidden_subjects(session: Session, principal: Principal, subjects: Iterable[str]) -> set[str]:
    """Of `subjects`, the items the caller cannot see (another organisation's, or
    restricted without a grant). Other subjects (users, notes, exports) are not items."""
    items = {s for s in subjects if s.partition(":")[0] in ITEM_KINDS}
    if not items:
        return set()
    hidden = set(
        session.exec(
            select(Restriction.subject)
            .where(col(Restriction.subject).in_(items))
            .where(not_(visible_clause(principal, col(Restriction.subject))))
        )
    )
    for kind, model in (("evidence", Evidence), ("incident", Incident)):
        ids = [s.partition(":")[2] for s in items if s.startswith(f"{kind}:")]
        if ids:
            hidden |= {
                f"{kind}:{i}"
                for i in session.exec(
                    select(model.id)
                    .where(col(model.id).in_(ids))
                    .where(model.organisation_id != principal.organisation_id)
                )
            }
    return hidden


def identifying_strings(session: Session, subjects: Iterable[str]) -> set[str]:
    """What names each item: its id and, for evidence, its SHA-256 and SHA-512."""
    ids = {s.partition(":")[2] for s in subjects}
    found = set(ids)
    for sha256_hex, sha512_hex in session.exec(
        select(Evidence.sha256, Evidence.sha512).where(col(Evidence.id).in_(ids))
    ):
        found |= {sha256_hex, sha512_hex}
    return found


def restrict_in_session(
    runtime: Runtime, session: Session, principal: Principal, subject: str
) -> None:
    """Mark an item restricted and grant its restricter access (inside a transaction)."""
    if is_restricted(session, subject):
        return
    entry = runtime.log.append(
        session,
        organisation_id=principal.organisation_id,
        actor=principal.actor,
        action="access.restricted",
        subjects=[subject],
    )
    session.add(
        Restriction(
            subject=subject,
            organisation_id=principal.organisation_id,
            restricted_by=principal.user_id,
            restricted_at=entry.time,
            custody_index=entry.index,
        )
    )
    if not _granted(session, principal, subject):
        _grant(runtime, session, principal, subject, principal.user_id)


def _grant(
    runtime: Runtime, session: Session, principal: Principal, subject: str, user_id: str
) -> AccessGrant:
    entry = runtime.log.append(
        session,
        organisation_id=principal.organisation_id,
        actor=principal.actor,
        action="access.granted",
        subjects=[subject, f"user:{user_id}"],
    )
    grant = AccessGrant(
        id=str(uuid.uuid4()),
        subject=subject,
        organisation_id=principal.organisation_id,
        user_id=user_id,
        granted_by=principal.user_id,
        granted_at=entry.time,
        custody_index=entry.index,
    )
    session.add(grant)
    session.flush()
    return grant


def visible_item(session: Session, principal: Principal, kind: str, item_id: str) -> str:
    """The subject ("incident:<id>" or "evidence:<id>") if the caller may see the item."""
    if kind == "incident":
        visible_incident(session, principal, item_id)
    else:
        visible_evidence(session, principal, item_id)
    return f"{kind}:{item_id}"


@rerun_if_raced
def restrict_item(runtime: Runtime, principal: Principal, *, kind: str, item_id: str) -> None:
    """Restrict an item the caller can see; the caller keeps access through a grant."""
    principal.require(Permission.RESTRICT, subject=f"{kind}:{item_id}")
    with runtime.database.session() as session:
        subject = visible_item(session, principal, kind, item_id)
        restrict_in_session(runtime, session, principal, subject)


@rerun_if_raced
def grant_access(
    runtime: Runtime, principal: Principal, *, kind: str, item_id: str, email: str
) -> AccessGrant:
    """An admin grants a member access to a restricted item (never to themself)."""
    subject = f"{kind}:{item_id}"
    principal.require(Permission.GRANT, subject=subject)
    with runtime.database.session() as session:
        # Admins grant on their organisation's items without seeing them themselves.
        item: Incident | Evidence | None = (
            session.get(Incident, item_id) if kind == "incident" else session.get(Evidence, item_id)
        )
        if item is None:
            raise NotFound(f"no {kind} {item_id}")
        if item.organisation_id != principal.organisation_id:
            raise Hidden(
                f"no {kind} {item_id}", subject=subject, organisation_id=item.organisation_id
            )
        member = session.exec(
            select(User)
            .where(User.organisation_id == principal.organisation_id)
            .where(same_email(email))
        ).first()
        if member is None:
            raise NotFound(f"no member {email}")
        if member.id == principal.user_id:
            raise Forbidden("you cannot grant yourself access", subject=subject)
        if not is_restricted(session, subject):
            raise InvalidInput(f"{subject} is not restricted; every member can see it")
        if _granted(session, _as(member, principal), subject):
            raise InvalidInput(f"{email} already has access")
        return _grant(runtime, session, principal, subject, member.id)


def _as(member: User, principal: Principal) -> Principal:
    return Principal(user_id=member.id, organisation_id=member.organisation_id, role=principal.role)


def revoke_access(runtime: Runtime, principal: Principal, grant_id: str) -> AccessGrant:
    """An admin revokes a grant; it stops working on the next request."""
    principal.require(Permission.GRANT)
    with runtime.database.session() as session:
        # Locked: a concurrent revocation waits, then finds this one done and logs nothing.
        grant = session.get(AccessGrant, grant_id, with_for_update=True)
        if grant is None or grant.organisation_id != principal.organisation_id:
            raise NotFound(f"no grant {grant_id}")
        if grant.revoked_at is None:
            grant.revoked_at = datetime.now(UTC)
            session.add(grant)
            runtime.log.append(
                session,
                organisation_id=principal.organisation_id,
                actor=principal.actor,
                action="access.revoked",
                subjects=[grant.subject, f"user:{grant.user_id}"],
            )
        return grant


def record_denial(runtime: Runtime, principal: Principal, error: Hidden | Forbidden) -> None:
    """Record a refused attempt as an `access.denied` custody event.

    A hidden item's attempt goes to the item's organisation (the caller's own entries
    must not reveal that the item exists); a refused role goes to the caller's.
    """
    organisation_id = (
        error.organisation_id if isinstance(error, Hidden) else principal.organisation_id
    )
    with runtime.database.session() as session:
        runtime.log.append(
            session,
            organisation_id=organisation_id,
            actor=principal.actor,
            action="access.denied",
            subjects=[error.subject],
            details={
                "by_organisation": principal.organisation_id,
                "reason": error.diagnostics()[:200],
            },
        )
