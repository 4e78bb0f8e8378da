"""/v1/keys: API keys — created (shown once), listed, revoked."""

from __future__ import annotations

from fastapi import APIRouter, status

from service.accounts.members import create_key, list_keys, revoke_key
from service.api.deps import KeyHolder, RuntimeDep
from service.api.idempotency import Idempotency, IdempotentRoute
from service.api.schemas.keys import KeyCreate, KeyIssued, KeyPublic

router = APIRouter(prefix="/v1/keys", tags=["keys"], route_class=IdempotentRoute)


@router.get("", response_model=list[KeyPublic])
def get_keys(runtime: RuntimeDep, principal: KeyHolder) -> list[KeyPublic]:
    """The caller's keys (every key of the organisation for admins); never the secrets."""
    return [KeyPublic.model_validate(k) for k in list_keys(runtime, principal)]


@router.post("", status_code=status.HTTP_201_CREATED, response_model=KeyIssued)
def post_key(
    body: KeyCreate, runtime: RuntimeDep, principal: KeyHolder, _: Idempotency
) -> KeyIssued:
    """A new key, its role at most its owner's; the secret is in this answer only."""
    issued = create_key(
        runtime,
        principal,
        name=body.name,
        role=body.role,
        expires_days=body.expires_days,
        email=body.email,
    )
    return KeyIssued.of(issued)


@router.delete("/{prefix}", response_model=KeyPublic)
def delete_key(prefix: str, runtime: RuntimeDep, principal: KeyHolder) -> KeyPublic:
    """Revoke a key; it fails from the next request on."""
    return KeyPublic.model_validate(revoke_key(runtime, principal, prefix))
