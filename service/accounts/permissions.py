"""Roles and what each may do: the permission matrix (docs/security.md shows it).

Pure policy, no I/O. Every API route declares exactly one Permission; a test walks the
route table so that a route without one fails the suite.
"""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    ADMIN = "admin"
    INVESTIGATOR = "investigator"
    ANALYST = "analyst"
    AUDITOR = "auditor"


class Permission(StrEnum):
    EVIDENCE_UPLOAD = "evidence.upload"
    EVIDENCE_READ = "evidence.read"  # records and custody trails, not the bytes
    EVIDENCE_CONTENT = "evidence.content"  # the bytes themselves
    EVIDENCE_DESCRIBE = "evidence.describe"  # edit an item's asserted metadata
    INCIDENT_WRITE = "incident.write"  # create, edit, link and unlink evidence
    NOTE_WRITE = "notes.write"  # annotate incidents and items
    INCIDENT_READ = "incident.read"
    CUSTODY_READ = "custody.read"  # checkpoints, entries, proofs
    RESTRICT = "access.restrict"  # mark an item restricted
    GRANT = "access.grant"  # grant or revoke access to restricted items
    MEMBERS = "members.manage"
    KEYS_OWN = "keys.own"  # create, list, revoke one's own keys
    KEYS_ALL = "keys.all"  # list and revoke every key of the organisation
    PUBLIC = "public"  # no credentials needed (the verifier key)


_READ = {
    Permission.EVIDENCE_READ,
    Permission.INCIDENT_READ,
    Permission.CUSTODY_READ,
    Permission.KEYS_OWN,
}
MATRIX: dict[Role, frozenset[Permission]] = {
    Role.ADMIN: frozenset(Permission) - {Permission.PUBLIC},
    Role.INVESTIGATOR: frozenset(
        _READ
        | {
            Permission.EVIDENCE_UPLOAD,
            Permission.EVIDENCE_CONTENT,
            Permission.EVIDENCE_DESCRIBE,
            Permission.INCIDENT_WRITE,
            Permission.NOTE_WRITE,
            Permission.RESTRICT,
        }
    ),
    Role.ANALYST: frozenset(_READ | {Permission.EVIDENCE_CONTENT, Permission.NOTE_WRITE}),
    Role.AUDITOR: frozenset(_READ),
}


def allows(role: Role, permission: Permission) -> bool:
    """Whether `role` holds `permission`."""
    return permission is Permission.PUBLIC or permission in MATRIX[role]


def within(lower: Role, upper: Role) -> bool:
    """Whether `lower` can do nothing that `upper` cannot (a key's role vs its owner's)."""
    return MATRIX[lower] <= MATRIX[upper]


def parse_role(text: str) -> Role:
    """A role from its name; ValueError names the valid ones."""
    try:
        return Role(text)
    except ValueError:
        valid = ", ".join(r.value for r in Role)
        raise ValueError(f"unknown role {text!r}; one of {valid}") from None


def matrix_markdown() -> str:
    """The permission matrix as the Markdown table docs/security.md shows."""
    roles = list(Role)
    lines = [
        "| permission | " + " | ".join(r.value for r in roles) + " |",
        "| --- |" + " --- |" * len(roles),
    ]
    for permission in Permission:
        if permission is Permission.PUBLIC:
            continue
        marks = " | ".join("yes" if allows(r, permission) else "—" for r in roles)
        lines.append(f"| `{permission.value}` | {marks} |")
    return "\n".join(lines) + "\n"
