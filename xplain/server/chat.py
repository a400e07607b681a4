"""The chat page at `/chat` and its streaming endpoint.

`POST /chat/stream` runs one turn (planner or agent) and answers with server-sent events as the turn proceeds:
`tool_call`, `tool_result`, `answer_delta` (the answer in pieces, as written), then `answer` (or `error`). The page
is plain HTML + JS from `static/`, no build step.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import AsyncIterator, Mapping
from importlib import resources

from fastapi import APIRouter, Depends, HTTPException
from fastapi.responses import HTMLResponse, Response, StreamingResponse
from pydantic import BaseModel, Field

from xplain.agent import ExplainerAgent, GroundedPlanner
from xplain.agent.loop import MAX_QUESTION_CHARS
from xplain.display.charts import charts_js, chat_chart
from xplain.errors import describe
from xplain.server.deps import Principal, principal
from xplain.server.registry import scoped, split_key
from xplain.validation import SLUG

STATIC_FILES = {"chat.js": "text/javascript", "chat.css": "text/css", "charts.js": "text/javascript"}

log = logging.getLogger(__name__)


class ChatRequest(BaseModel):
    model: str = Field(pattern=SLUG, description="Name of the model to question (GET /chat/models).")
    session_id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$", description="Conversation id; the page makes one.")
    message: str = Field(min_length=1, max_length=MAX_QUESTION_CHARS)


Chat = ExplainerAgent | GroundedPlanner


def make_chat_router(agents: Mapping[str, Chat]) -> APIRouter:
    """Routes for the chat page over `agents` (model name -> chat); a lazy Mapping may build chats on demand."""
    router = APIRouter(tags=["chat"])

    @router.get("/chat", response_class=HTMLResponse, include_in_schema=False)
    async def chat_page() -> HTMLResponse:
        return HTMLResponse(_static("chat.html"))

    @router.get("/chat/static/{name}", include_in_schema=False)
    async def chat_asset(name: str) -> Response:
        if name not in STATIC_FILES:
            raise HTTPException(404, f"no chat asset {name!r}")
        return Response(_static(name), media_type=STATIC_FILES[name])

    def visible(who: Principal) -> list[str]:
        return [key for key in agents if split_key(key)[0] in ("", who.owner)]

    @router.get("/chat/models")
    async def chat_models(who: Principal = Depends(principal)) -> dict[str, list[str]]:
        """Every model this key can chat with: its own or shared, with reference rows."""
        return {"models": [split_key(key)[1] for key in visible(who)]}

    @router.post("/chat/stream")
    async def chat_stream(request: ChatRequest, who: Principal = Depends(principal)) -> StreamingResponse:
        """A turn of the conversation `session_id` of this key: another key's conversation of the same id is
        another conversation."""
        keys = visible(who)
        own = scoped(who.owner, request.model)
        key = own if own in keys else request.model if request.model in keys else None
        if key is None:
            reason = getattr(agents, "not_chattable", lambda _: None)(own)
            if reason is not None:
                raise HTTPException(422, reason)
            available = ", ".join(split_key(k)[1] for k in keys) or "none"
            raise HTTPException(404, f"no model {request.model!r}; available: {available}")
        agent = agents[key]
        session = request.session_id if not who.owner else _session_of(who.owner, request.session_id)
        return StreamingResponse(
            _events(agent, request.model_copy(update={"session_id": session})),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    return router


async def _events(agent: Chat, request: ChatRequest) -> AsyncIterator[str]:
    try:
        async for event in agent.stream(request.session_id, request.message):
            data = event.model_dump(mode="json")
            if event.type == "tool_result" and event.result:
                data["chart"] = chat_chart(event.result)
            yield _sse(event.type, json.dumps(data))
    except Exception as error:  # the stream's edge: what every front says for it (a bug's details go to the log)
        status, message = describe(error)
        if status == 500:
            log.exception("a chat turn failed on a bug")
        yield _sse("error", json.dumps({"error": message}))


def _session_of(owner: str, session_id: str) -> str:
    """The stored conversation id of `owner`'s session (a digest: it fits the store's session-id pattern)."""
    return hashlib.sha256(f"{owner}\0{session_id}".encode()).hexdigest()[:40]


def _sse(event: str, data: str) -> str:
    return f"event: {event}\ndata: {data}\n\n"


def _static(name: str) -> str:
    if name == "charts.js":
        return charts_js()
    return (resources.files("xplain.server") / "static" / name).read_text(encoding="utf-8")
