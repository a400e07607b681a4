"""Every error leaves the API as a JSON body that says what was wrong, with the right status — never a trace."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from xplain.errors import Busy, XplainError, describe_validation_error
from xplain.server.guards import send_json

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
    async def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        problems = describe_validation_error(error, _body_model(request))
        return _body("the request does not match the schema", problems[:20], 422)

    @app.exception_handler(ValidationError)
    async def invalid_value(_: Request, error: ValidationError) -> JSONResponse:
        """Options and other data validated inside a route (e.g. a method's options model)."""
        return _body(f"invalid {error.title}", describe_validation_error(error)[:20], 422)

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, error: HTTPException) -> JSONResponse:
        return _body(str(error.detail), None, error.status_code, getattr(error, "headers", None))

    async def known_error(_: Request, error: Exception) -> JSONResponse:
        status = error.status if isinstance(error, XplainError) else next(s for k, s in STATUS_FOR if isinstance(error, k))
        headers = {"Retry-After": str(error.retry_after_s)} if isinstance(error, Busy) else None
        return _body(str(error), type(error).__name__, status, headers)

    # Registered per class (not as a catch-all), so Starlette answers them without treating them as crashes.
    for kind, _status in STATUS_FOR:
        app.add_exception_handler(kind, known_error)

    app.add_middleware(UnexpectedErrors)  # the innermost middleware: around the routes, inside the guards


class UnexpectedErrors:
    """A bug answers 500 with a JSON body and goes to the log, and is not passed on: the server would close the
    connection, and a keep-alive client's next request would be reset. (Starlette's own catch-all re-raises.)"""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracked_send)
        except Exception as error:
            log.exception("unhandled error")
            if started:  # half a response is out: only closing the connection tells the client
                raise
            body = {"error": "internal error; the server log has the details", "detail": type(error).__name__}
            await send_json(send, 500, body)


def _body_model(request: Request) -> type[BaseModel] | None:
    """The pydantic model of the route's JSON body, to name the keys it allows."""
    field = getattr(request.scope.get("route"), "body_field", None)
    annotation = getattr(getattr(field, "field_info", None), "annotation", None)
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None

