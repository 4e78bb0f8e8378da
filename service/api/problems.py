"""RFC 9457 problem documents: the one shape every error answer takes."""

from __future__ import annotations

from http import HTTPStatus

from fastapi.responses import JSONResponse

from service.errors import RangeNotSatisfiable, one_line

# Statuses of protocols beside HTTP's own register.
_TITLES = {460: "Checksum Mismatch"}  # tus 1.0 checksum extension


def problem(status: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """A problem document whose detail is one line, whatever it quotes."""
    body = {
        "type": "about:blank",
        "title": _TITLES.get(status) or HTTPStatus(status).phrase,
        "status": status,
        "detail": one_line(detail),
    }
    return JSONResponse(
        body, status_code=status, media_type="application/problem+json", headers=headers
    )


def unsatisfiable(exc: RangeNotSatisfiable) -> JSONResponse:
    """416, with the object's size in Content-Range as RFC 9110 §15.5.17 asks."""
    return problem(416, exc.diagnostics(), {"Content-Range": f"bytes */{exc.size}"})
