"""one active grant: a member holds at most one unrevoked grant per item

Revision ID: 0009
Revises: 0008

Two grants sent at once could both be recorded; revoking one then left the other, and
the member kept access. The partial unique index makes the second insert fail, and the
use case answers it as a repeated grant. Existing duplicates are not revoked here: a
revocation is a custody event, so the operator revokes them through the API first.
"""

import sqlalchemy as sa
from alembic import op

from service.errors import ConfigurationError

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_ACTIVE = "revoked_at IS NULL"
_DUPLICATES = sa.text(
    f"SELECT subject, user_id, COUNT(*) FROM access_grant WHERE {_ACTIVE} "
    "GROUP BY subject, user_id HAVING COUNT(*) > 1 ORDER BY subject, user_id"
)


def upgrade() -> None:
    _refuse_duplicate_grants()
    op.create_index(
        "uq_access_grant_active",
        "access_grant",
        ["subject", "user_id"],
        unique=True,
        postgresql_where=sa.text(_ACTIVE),
        sqlite_where=sa.text(_ACTIVE),
    )


def _refuse_duplicate_grants() -> None:
    duplicates = op.get_bind().execute(_DUPLICATES).all()
    if duplicates:
        listed = "; ".join(f"user {u} on {s}: {n}" for s, u, n in duplicates)
        raise ConfigurationError(
            f"access_grant holds more than one active grant for {len(duplicates)} member and "
            f"item pair(s) ({listed}); revoke the extra grants (DELETE /v1/grants/<id>) "
            "with the previous release, then migrate again"
        )


def downgrade() -> None:
    op.drop_index("uq_access_grant_active", table_name="access_grant")
