"""The chat routes mounted on a bare FastAPI app: the page and its assets, the model list, and the event stream."""

from __future__ import annotations

import json

import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from xplain.agent import ExplainerAgent
from xplain.blackbox import from_callable
from xplain.llm import LLM
from xplain.llm.backends.fake import FakeBackend, tool_call_reply
from xplain.server.chat import make_chat_router
from xplain.tools import ProbeContext


def model(rows: np.ndarray) -> np.ndarray:
    p = 1 / (1 + np.exp(-rows[:, 0]))
    return np.column_stack([1 - p, p])


@pytest.fixture
def backend() -> FakeBackend:
    return FakeBackend(queue=[tool_call_reply("occlusion", row=1, top=2), "x0 drives it."])


@pytest.fixture
def client(backend) -> TestClient:
    rows = np.random.default_rng(0).normal(size=(20, 2))
    context = ProbeContext(
        from_callable(model, kind="tabular", classes=["no", "yes"], feature_names=["x0", "x1"]), rows
    )
    app = FastAPI()
    app.include_router(make_chat_router({"demo": ExplainerAgent(LLM(backend), context)}))
    return TestClient(app)


def events(response) -> list[tuple[str, dict]]:
    parsed = []
    for block in response.text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.split("\n"))
        parsed.append((lines["event"], json.loads(lines["data"])))
    return parsed


def test_the_page_and_its_assets_are_served(client):
    page = client.get("/chat")
    assert page.status_code == 200 and "/chat/static/chat.js" in page.text
    script = client.get("/chat/static/chat.js")
    assert script.status_code == 200 and script.headers["content-type"].startswith("text/javascript")
    assert client.get("/chat/static/chat.css").status_code == 200
    assert client.get("/chat/static/..%2Fchat.py").status_code == 404
    assert client.get("/chat/models").json() == {"models": ["demo"]}


def test_a_turn_streams_the_tool_call_its_result_and_the_answer(client):
    response = client.post("/chat/stream", json={"model": "demo", "session_id": "t1", "message": "why row 1?"})
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    stream = events(response)
    kinds = [kind for kind, _ in stream]
    assert kinds[:2] == ["tool_call", "tool_result"] and kinds[-1] == "answer"
    assert set(kinds[2:-1]) == {"answer_delta"}
    assert "".join(data["text"] for kind, data in stream if kind == "answer_delta") == "x0 drives it."
    assert stream[0][1]["name"] == "occlusion" and stream[0][1]["arguments"] == {"row": 1, "top": 2}
    assert list(json.loads(stream[1][1]["output"])["effects"])[0] == "x0"
    assert stream[1][1]["chart"]["labels"][0] == "x0", "the page gets the result's chart, drawn by display"
    assert stream[-1][1]["answer"]["text"] == "x0 drives it."


def test_bad_requests_get_a_clear_status(client, backend):
    unknown = client.post("/chat/stream", json={"model": "other", "session_id": "t1", "message": "hi"})
    assert unknown.status_code == 404 and "available: demo" in unknown.text
    bad_session = client.post("/chat/stream", json={"model": "demo", "session_id": "a b", "message": "hi"})
    assert bad_session.status_code == 422
    blank = client.post("/chat/stream", json={"model": "demo", "session_id": "t1", "message": "   "})
    assert events(blank) == [("error", {"error": "the question is empty"})]
    assert backend.requests == []


class BrokenChat:
    """A chat whose turn hits a bug mid-stream."""

    async def stream(self, session_id: str, message: str):
        raise KeyError("/srv/xplain/secret.db")
        yield  # an async generator


def test_a_bug_mid_stream_ends_with_the_one_error_message_not_its_details(caplog):
    app = FastAPI()
    app.include_router(make_chat_router({"demo": BrokenChat()}))
    response = TestClient(app).post("/chat/stream", json={"model": "demo", "session_id": "s", "message": "hi"})
    event, data = response.text.strip().split("\n")
    assert response.status_code == 200 and event == "event: error"
    assert json.loads(data.removeprefix("data: ")) == {"error": "internal error (KeyError); the log has the details"}
    assert "secret.db" in caplog.text
