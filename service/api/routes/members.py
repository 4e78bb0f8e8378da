"""/v1/members: an organisation's members and their roles (admins only)."""

from __future__ import annotations

from fastapi import APIRouter, status

from service.accounts.members import add_member, list_members
from service.api.deps import MemberManager, RuntimeDep
from service.api.idempotency import Idempotency, IdempotentRoute
from service.api.schemas.members import MemberCreate, MemberPublic

router = APIRouter(prefix="/v1/members", tags=["members"], route_class=IdempotentRoute)


@router.get("", response_model=list[MemberPublic])
def get_members(runtime: RuntimeDep, principal: MemberManager) -> list[MemberPublic]:
    """Every member of the caller's organisation."""
    return [MemberPublic.model_validate(u) for u in list_members(runtime, principal)]


@router.post("", status_code=status.HTTP_201_CREATED, response_model=MemberPublic)
def post_member(
    body: MemberCreate, runtime: RuntimeDep, principal: MemberManager, _: Idempotency
) -> MemberPublic:
    """Add a member with a role and, if given, their name."""
    return MemberPublic.model_validate(
        add_member(runtime, principal, email=body.email, role=body.role, name=body.name)
    )
