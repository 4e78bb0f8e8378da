"""The API describes itself: the OpenAPI document builds and names every route."""

from __future__ import annotations

from service.app import ROUTERS
from tests.harness import Locker


def test_openapi_document_lists_every_route(locker: Locker) -> None:
    with locker.client(api_key="") as anonymous:
        response = anonymous.get("/openapi.json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    routed = {route.path for router in ROUTERS for route in router.routes}  # type: ignore[attr-defined]
    routed = {path.replace(":path}", "}") for path in routed}  # OpenAPI has no path converters
    assert routed <= set(paths)
    create = paths["/v1/incidents"]["post"]["requestBody"]["content"]["application/json"]
    assert create["schema"]["$ref"].endswith("IncidentCreate")
