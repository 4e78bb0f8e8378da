"""The API describes itself: the OpenAPI document builds and names every route."""

from __future__ import annotations

from typing import Any

import pytest

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


def _document(locker: Locker) -> dict[str, Any]:
    with locker.client(api_key="") as anonymous:
        document: dict[str, Any] = anonymous.get("/openapi.json").json()
        assert anonymous.get("/openapi.json").json() == document  # built once, then kept
    return document


@pytest.mark.parametrize("backend", ["sqlite-fs"])
def test_every_error_is_a_problem_document_and_keys_are_bearer_tokens(locker: Locker) -> None:
    document = _document(locker)
    schemes = document["components"]["securitySchemes"]
    assert list(schemes) == ["bearer"]
    assert (schemes["bearer"]["type"], schemes["bearer"]["scheme"]) == ("http", "bearer")
    assert "HTTPValidationError" not in document["components"]["schemas"]
    problem = document["components"]["schemas"]["Problem"]
    assert problem["required"] == ["type", "title", "status", "detail"]
    operations = [
        (path, method, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
    ]
    for path, method, operation in operations:
        errors = {code: r for code, r in operation["responses"].items() if int(code) >= 400}
        assert {"422", "500", "503"} <= set(errors), (path, method)
        for response in errors.values():
            assert list(response["content"]) == ["application/problem+json"], (path, method)
            assert response["content"]["application/problem+json"]["schema"] == {
                "$ref": "#/components/schemas/Problem"
            }
    read = document["paths"]["/v1/evidence/{evidence_id}"]["get"]
    assert read["security"] == [{"bearer": []}]
    assert {"401", "403", "404", "429"} <= set(read["responses"])
    assert not {"400", "409"} & set(read["responses"])  # no body, and it writes nothing
    patch = document["paths"]["/v1/evidence/{evidence_id}/metadata"]["patch"]
    assert {"400", "409"} <= set(patch["responses"])
    public = document["paths"]["/v1/custody/verifier-key"]["get"]
    assert "security" not in public and "401" not in public["responses"]


@pytest.mark.parametrize("backend", ["sqlite-fs"])
def test_the_upload_body_is_described_as_a_multipart_form(locker: Locker) -> None:
    upload = _document(locker)["paths"]["/v1/evidence"]["post"]
    body = upload["requestBody"]
    assert body["required"] is True
    form = body["content"]["multipart/form-data"]["schema"]
    assert form["required"] == ["file"]
    file = form["properties"]["file"]
    assert (file["type"], file["format"]) == ("string", "binary")  # a file picker
    assert set(form["properties"]) == {"file", "metadata", "sha256"}
    assert {"408", "413"} <= set(upload["responses"])


@pytest.mark.parametrize("backend", ["sqlite-fs"])
def test_a_wrong_method_answers_405_with_every_allowed_method(locker: Locker) -> None:
    with locker.client() as client:
        evidence = client.delete("/v1/evidence")
        item = client.put("/v1/evidence/some-id")
        health = client.post("/healthz")
    assert evidence.status_code == 405
    assert evidence.headers["allow"] == "GET, POST"
    assert evidence.headers["content-type"] == "application/problem+json"
    assert item.status_code == 405 and item.headers["allow"] == "GET"
    assert health.status_code == 405 and health.headers["allow"] == "GET"
