"""Every error leaves the API as a JSON body that says what was wrong, with the right status — never a trace."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from xplain.errors import XplainError

log = logging.getLogger("xplain.server")

# The project's own tree says its status (`XplainError.status`); these are the few built-ins the server still meets.
# Most specific first: the first matching class decides the status.
STATUS_FOR: list[tuple[type[BaseException], int]] = [
    (XplainError, 0),  # its own `status`
    (PermissionError, 403),
    (ValueError, 422),
]


def _body(message: str, detail=None, status: int = 400, headers=None) -> JSONResponse:
    return JSONResponse({"error": message, "detail": detail}, status_code=status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, error: RequestValidationError) -> JSONResponse:
        detail = [
            {"where": ".".join(str(p) for p in e["loc"]), "problem": e["msg"]} for e in error.errors()[:20]
        ]
        return _body("the request does not match the schema", detail, 422)

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, error: HTTPException) -> JSONResponse:
        return _body(str(error.detail), None, error.status_code, getattr(error, "headers", None))

    async def known_error(_: Request, error: Exception) -> JSONResponse:
        status = error.status if isinstance(error, XplainError) else next(s for k, s in STATUS_FOR if isinstance(error, k))
        return _body(str(error), type(error).__name__, status)

    # Registered per class (not as a catch-all), so Starlette answers them without treating them as crashes.
    for kind, _status in STATUS_FOR:
        app.add_exception_handler(kind, known_error)

    @app.exception_handler(Exception)
    async def unexpected_error(_: Request, error: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return _body("internal error; the server log has the details", type(error).__name__, 500)
