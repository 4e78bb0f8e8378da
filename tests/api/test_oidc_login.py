"""OIDC bearer tokens through the HTTP API, against a local JWKS endpoint."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from tests.harness import Locker
from tests.oidc.jwks_server import JwksServer, SigningKey, mint, rsa_key, run_jwks_server

ISSUER = "https://idp.example.org/realms/ngo"
AUDIENCE = "evidence-locker"


@pytest.fixture
def idp() -> Iterator[tuple[JwksServer, SigningKey]]:
    key = rsa_key("k1")
    with run_jwks_server() as server:
        server.publish(key)
        yield server, key


def _claims(**overrides: object) -> dict[str, object]:
    now = int(time.time())
    claims: dict[str, object] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "u-123",
        "iat": now,
        "exp": now + 300,
        "email": "field@example.org",
        "locker_org": "Tarhuna Documentation Project",
        "locker_role": "investigator",
    }
    return claims | overrides


def test_oidc_tokens_map_to_members_and_roles(
    make_locker: Callable[..., Locker], idp: tuple[JwksServer, SigningKey]
) -> None:
    server, key = idp
    locker = make_locker(oidc_issuer=ISSUER, oidc_audience=AUDIENCE, oidc_jwks_url=server.url)
    with locker.client(mint(key, _claims(name=" نور الهدى "))) as investigator:
        created = investigator.post("/v1/incidents", json={"title": "from the field"})
        assert created.status_code == 201, created.text
    # A name the locker would refuse does not fail the sign-in: it is left out.
    auditor = _claims(locker_role="auditor", email="a@example.org", name="a\u202eb")
    with locker.client(mint(key, auditor)) as aud:
        assert aud.get(f"/v1/incidents/{created.json()['id']}").status_code == 200
        assert aud.post("/v1/incidents", json={"title": "no"}).status_code == 403
    with locker.client() as admin:
        members = {m["email"]: (m["role"], m["name"]) for m in admin.get("/v1/members").json()}
    assert members["field@example.org"] == ("investigator", "نور الهدى")
    assert members["a@example.org"] == ("auditor", None)


@pytest.mark.parametrize(
    "claims",
    [
        _claims(exp=int(time.time()) - 3600),
        _claims(aud="someone-else"),
        _claims(iss="https://evil.example"),
        _claims(locker_org="Unknown NGO"),
        _claims(locker_role="superuser"),
    ],
)
def test_bad_tokens_are_401_without_detail(
    make_locker: Callable[..., Locker],
    idp: tuple[JwksServer, SigningKey],
    claims: dict[str, object],
) -> None:
    server, key = idp
    locker = make_locker(oidc_issuer=ISSUER, oidc_audience=AUDIENCE, oidc_jwks_url=server.url)
    with locker.client(mint(key, claims)) as client:
        response = client.get("/v1/incidents")
    assert response.status_code == 401
    assert response.json()["detail"] == "invalid bearer token"


def test_token_signed_by_another_key_is_refused(
    make_locker: Callable[..., Locker], idp: tuple[JwksServer, SigningKey]
) -> None:
    server, _ = idp
    locker = make_locker(oidc_issuer=ISSUER, oidc_audience=AUDIENCE, oidc_jwks_url=server.url)
    with locker.client(mint(rsa_key("k1"), _claims())) as client:
        assert client.get("/v1/incidents").status_code == 401
