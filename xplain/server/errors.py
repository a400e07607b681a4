"""Every error leaves the API as a JSON body that says what was wrong, with the right status — never a trace."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from xplain.errors import BUILT_IN_STATUS, Busy, XplainError, describe, describe_validation_error
from xplain.server.guards import send_json

log = logging.getLogger("xplain.server")

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
        status, message = describe(error)
        headers = {"Retry-After": str(error.retry_after_s)} if isinstance(error, Busy) else None
        return _body(message, type(error).__name__, status, headers)

    # Registered per class (not as a catch-all), so Starlette answers them without treating them as crashes.
    for kind in (XplainError, *(kind for kind, _ in BUILT_IN_STATUS)):
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
            status, message = describe(error)
            await send_json(send, status, {"error": message, "detail": type(error).__name__})


def _body_model(request: Request) -> type[BaseModel] | None:
    """The pydantic model of the route's JSON body, to name the keys it allows."""
    field = getattr(request.scope.get("route"), "body_field", None)
    annotation = getattr(getattr(field, "field_info", None), "annotation", None)
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None

