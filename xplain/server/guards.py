"""Pure ASGI middleware that guard every request before any route runs: the API key, and the request's time.

Pure ASGI (not `@app.middleware("http")`) so that they see the raw `receive` channel: a client that goes away is
noticed while its handler still works, and streaming responses pass through untouched.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
from collections.abc import Collection
from dataclasses import dataclass

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: Paths anyone may read: liveness, and documents that hold no data (the API's description, the docs pages and
#: their assets, the chat page's HTML/JS/CSS). Everything else — /ready included — needs a key when keys are set.
PUBLIC_PATHS = frozenset({"/health", "/", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json", "/chat"})
PUBLIC_PREFIXES = ("/static-offline-docs/", "/chat/static/")
KEY_HELP = "missing or wrong API key (Authorization: Bearer KEY, or X-API-Key: KEY)"


def is_public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


async def send_json(send: Send, status: int, body: dict, headers: dict[str, str] | None = None) -> None:
    payload = json.dumps(body).encode()
    raw_headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    raw_headers += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": payload})


@dataclass(frozen=True)
class Principal:
    """Who sends a request: `owner` names the API key (a digest, never the key itself); what one key makes (jobs,
    models, conversations) belongs to it. Without configured keys everyone is the same operator, `owner` "", who
    sees everything; an admin key sees and cancels everything too. Things owned by "" (the demos) are shared."""

    owner: str
    admin: bool

    def sees(self, owner: str | None) -> bool:
        return self.admin or owner == self.owner


OPERATOR = Principal(owner="", admin=True)


def owner_of(key: bytes) -> str:
    return hashlib.sha256(b"xplain-key\0" + key).hexdigest()[:16]


class ApiKeyGuard:
    """With keys configured, every path outside PUBLIC_PATHS needs one: closed by default, so a route added
    later (or a path that does not exist) is guarded without anyone remembering to. The key's Principal goes into
    the request's state (`request.state.principal`)."""

    def __init__(self, app: ASGIApp, keys: Collection[str], admin_keys: Collection[str] = ()) -> None:
        self.app = app
        self.keys = [(key.encode(), False) for key in keys] + [(key.encode(), True) for key in admin_keys]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.keys:
            await self.app(scope, receive, send)
            return
        principal = self._principal(scope)
        if principal is not None:
            scope.setdefault("state", {})["principal"] = principal
        if principal is not None or is_public(scope["path"]):
            await self.app(scope, receive, send)
            return
        await send_json(send, 401, {"error": KEY_HELP, "detail": None}, {"WWW-Authenticate": "Bearer"})

    def _principal(self, scope: Scope) -> Principal | None:
        headers = Headers(scope=scope)
        given = headers.get("x-api-key") or headers.get("authorization", "").removeprefix("Bearer ").strip()
        given_bytes = given.encode("utf-8", "surrogateescape")
        # compare every key (no early exit) in constant time; bytes, because compare_digest refuses non-ASCII str
        matches = [(secrets.compare_digest(given_bytes, key), admin) for key, admin in self.keys]
        if not any(match for match, _ in matches):
            return None
        return Principal(owner=owner_of(given_bytes), admin=any(match and admin for match, admin in matches))


class BodySizeLimit:
    """Refuse bodies over `max_bytes` with 413, counted as the body arrives: a `Content-Length` over the limit is
    refused before reading, and a chunked body (no length) is cut off as soon as it passes the limit."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = Headers(scope=scope).get("content-length", "")
        if length.strip().isdigit() and int(length) > self.max_bytes:
            await send_json(send, 413, self.error(), {"Connection": "close"})
            return
        received = 0

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # an HTTPException, which the routes' body reading passes on to the 413 handler
                    raise HTTPException(413, self.error()["error"])
            return message

        await self.app(scope, counted_receive, send)

    def error(self) -> dict:
        return {"error": f"request body over {self.max_bytes} bytes (XPLAIN_MAX_BODY_BYTES)", "detail": None}


class JsonBodies:
    """Request bodies are JSON: a body sent as another media type (`text/plain`, a form, as `curl -d` sends without
    `-H 'Content-Type: application/json'`) is refused with 415 before it is read, with what to send instead."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self._refused(Headers(scope=scope)):
            body = {
                "error": "the body must be JSON: send it with Content-Type: application/json",
                "detail": "UnsupportedMediaType",
            }
            await send_json(send, 415, body, {"Connection": "close"})
            return
        await self.app(scope, receive, send)

    @staticmethod
    def _refused(headers: Headers) -> bool:
        media = headers.get("content-type", "").partition(";")[0].strip().lower()
        has_body = "transfer-encoding" in headers or headers.get("content-length", "0").strip() not in ("", "0")
        return bool(media) and has_body and media != "application/json" and not media.endswith("+json")


class RequestGuard:
    """Two limits on a request's handler:

    - the client goes away (`http.disconnect`) -> the handler task is cancelled, so no one's work runs on;
    - no response has started within `budget_s` -> the handler is cancelled and the client gets 422 telling it to
      submit a job. Streaming responses (SSE) start at once, so only their first byte is under the budget.

    422, not 503: the same request would run over again, so clients must not retry it as it is (many retry 5xx
    and 429 on their own); it is the request's size that has to change, or its route.
    """

    def __init__(self, app: ASGIApp, budget_s: float) -> None:
        self.app = app
        self.budget_s = budget_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        inbox: asyncio.Queue[Message | BaseException] = asyncio.Queue()
        started = finished = False

        async def pump() -> None:
            """Read the server's channel in the background: the body for the app, then the disconnect."""
            while True:
                try:
                    message = await receive()
                except Exception as error:  # e.g. the body-size limit: raised where the app reads
                    await inbox.put(error)
                    return
                await inbox.put(message)
                if message["type"] == "http.disconnect":
                    if not finished:
                        handler.cancel()
                    return

        async def app_receive() -> Message:
            item = await inbox.get()
            if isinstance(item, BaseException):
                raise item
            if item["type"] == "http.disconnect":
                inbox.put_nowait(item)  # every later read sees the disconnect too
            return item

        async def app_send(message: Message) -> None:
            nonlocal started, finished
            if message["type"] == "http.response.start":
                started = True
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                finished = True
            await send(message)

        handler = asyncio.create_task(self.app(scope, app_receive, app_send))
        reader = asyncio.create_task(pump())
        try:
            done, _ = await asyncio.wait({handler}, timeout=self.budget_s)
            if not done and not started:
                handler.cancel()
                await _settle(handler)
                if not started:
                    await send_json(send, 422, _over_budget(self.budget_s))
                return
            await _settle(handler)
        except asyncio.CancelledError:
            if started:
                raise
            # the server is stopping (SIGTERM, past its grace time): a retryable answer rather than a bare 500
            handler.cancel()
            await send_json(send, 503, SHUTTING_DOWN, {"Retry-After": "10", "Connection": "close"})
        finally:
            reader.cancel()
            if not handler.done():
                handler.cancel()


async def _settle(handler: asyncio.Task) -> None:
    """Wait for the handler; its cancellation (client gone, or over budget) is expected, ours is passed on."""
    try:
        await handler
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise


SHUTTING_DOWN = {"error": "the server is shutting down; send the request again in a moment", "detail": "Unavailable"}


def _over_budget(budget_s: float) -> dict:
    return {
        "error": (
            f"the request took longer than {budget_s:g} s, the budget of a synchronous request "
            "(XPLAIN_SYNC_TIMEOUT_S); submit it as a job with POST /jobs and follow its progress"
        ),
        "detail": "SyncTimeBudget",
    }
