"""The OpenAPI document, completed from what each route depends on.

FastAPI describes a route's success and its parameters; the errors come from our
handlers (service.app), so they are added here, once, from what every route declares:
its permission says whether it needs a bearer credential (401, 403, 429), its
parameters and body whether they can name something missing (404), its body whether it
can be unparseable (400), its method whether it writes (409). Every route can meet a
bad byte (422), an unavailable database or store (503) and an internal failure (500).
Each is an RFC 9457 problem document.
"""

from __future__ import annotations

from collections.abc import Iterator
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute, iter_route_contexts

from service.accounts.permissions import Permission

PROBLEM_MEDIA_TYPE = "application/problem+json"
BEARER = "bearer"
_PROBLEM_REF = "#/components/schemas/Problem"
_PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "description": "An RFC 9457 problem document; `detail` is one line.",
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
    },
}
_EVERY_ROUTE = (422, 500, 503)
_AUTHENTICATED = (401, 403, 429)
_WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_WHY: dict[int, str] = {
    400: "The body cannot be parsed at all.",
    401: "No credential, or one that is not recognised.",
    403: "The caller's role does not allow this.",
    404: "No such item, or none the caller may see.",
    408: "The client sent nothing for too long.",
    409: "A concurrent change came first, or the change conflicts with the record.",
    413: "The body exceeds the upload limit.",
    422: "The request is malformed.",
    429: "Too many failed authentications from this client; see Retry-After.",
    500: "Internal error, or a failed integrity check.",
    503: "The database or the object store is unavailable; see Retry-After.",
}


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses` for a route decorator: errors only that route can return."""
    return {status: _problem_response(status) for status in statuses}


def _problem_response(status: int) -> dict[str, Any]:
    return {
        "description": _WHY.get(status, HTTPStatus(status).phrase),
        "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": _PROBLEM_REF}}},
    }


def _permissions(dependant: Dependant) -> Iterator[Permission]:
    for dependency in dependant.dependencies:
        permission = getattr(dependency.call, "permission", None)
        if isinstance(permission, Permission):
            yield permission
        yield from _permissions(dependency)


def _authenticated(route: APIRoute) -> bool:
    return any(p is not Permission.PUBLIC for p in _permissions(route.dependant))


def _error_statuses(route: APIRoute, method: str) -> set[int]:
    statuses = set(_EVERY_ROUTE)
    if _authenticated(route):
        statuses.update(_AUTHENTICATED)
    dependant = route.dependant
    if dependant.path_params or dependant.query_params or route.body_field is not None:
        statuses.add(404)  # any parameter may name an item that is gone or hidden
    if route.body_field is not None:
        statuses.add(400)  # FastAPI's answer to a body it cannot even decode
    if method in _WRITES:
        statuses.update((404, 409))
    return statuses


def _complete(operation: dict[str, Any], route: APIRoute, method: str) -> None:
    responses: dict[str, Any] = operation.setdefault("responses", {})
    for status in sorted(_error_statuses(route, method)):
        # Replaces FastAPI's own 422 (HTTPValidationError): ours is a problem document.
        responses[str(status)] = _problem_response(status)
    for code, response in responses.items():
        if code.isdigit() and int(code) >= 400:  # a route's own errors are problems too
            responses[code] = {"description": response["description"]} | _problem_response(
                int(code)
            )
    if _authenticated(route):
        operation["security"] = [{BEARER: []}]


def api_routes(app: FastAPI) -> Iterator[APIRoute]:
    """Every API route of `app`, with the full path, however its routers were included."""
    for context in iter_route_contexts(app.routes):
        if isinstance(context.original_route, APIRoute):
            yield context.original_route


def openapi_document(app: FastAPI) -> dict[str, Any]:
    """The app's OpenAPI document with its errors, media types and security described."""
    if app.openapi_schema is not None:
        return app.openapi_schema
    document = get_openapi(title=app.title, version=app.version, routes=app.routes)
    for route in api_routes(app):
        if route.include_in_schema:
            for method in route.methods or ():
                _complete(document["paths"][route.path_format][method.lower()], route, method)
    components = document.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas["Problem"] = _PROBLEM_SCHEMA
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    components["securitySchemes"] = {
        BEARER: {
            "type": "http",
            "scheme": "bearer",
            "description": "An API key (`locker admin bootstrap`, /v1/keys) or an OIDC token.",
        }
    }
    app.openapi_schema = document
    return document
