"""Restricting items and granting members access to them."""

from __future__ import annotations

from fastapi import APIRouter, status

from service.accounts.access import grant_access, restrict_item, revoke_access
from service.api.deps import ITEM_KIND, Granter, ItemPath, Restricter, RuntimeDep
from service.api.idempotency import Idempotency, IdempotentRoute
from service.api.schemas.access import GrantCreate, GrantPublic

router = APIRouter(prefix="/v1", tags=["access"], route_class=IdempotentRoute)


@router.post("/{kind}/{item_id}/restriction", status_code=status.HTTP_204_NO_CONTENT)
def post_restriction(
    kind: ItemPath, item_id: str, runtime: RuntimeDep, principal: Restricter
) -> None:
    """Make an item visible only to members granted access (the caller is granted)."""
    restrict_item(runtime, principal, kind=ITEM_KIND[kind], item_id=item_id)


@router.post(
    "/{kind}/{item_id}/grants", status_code=status.HTTP_201_CREATED, response_model=GrantPublic
)
def post_grant(
    kind: ItemPath,
    item_id: str,
    body: GrantCreate,
    runtime: RuntimeDep,
    principal: Granter,
    _: Idempotency,
) -> GrantPublic:
    """Grant a member access to a restricted item (never oneself)."""
    grant = grant_access(
        runtime, principal, kind=ITEM_KIND[kind], item_id=item_id, email=body.email
    )
    return GrantPublic.model_validate(grant)


@router.delete("/grants/{grant_id}", response_model=GrantPublic)
def delete_grant(grant_id: str, runtime: RuntimeDep, principal: Granter) -> GrantPublic:
    """Revoke a grant."""
    return GrantPublic.model_validate(revoke_access(runtime, principal, grant_id))
