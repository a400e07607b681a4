"""The chat page in headless Chromium (Debian's `chromium`, driven by Playwright without its own browser download):
ask a question against the fake backend on a real uvicorn server and see the answer, the folded tool calls, the
bar chart and the what-if diff. A screenshot goes to artifacts/chat_page.png."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from fastapi import FastAPI

from xplain.agent import ExplainerAgent, GroundedPlanner
from xplain.blackbox import from_callable
from xplain.llm import LLM, GenerationRequest
from xplain.llm.backends.fake import FakeBackend, tool_call_reply
from xplain.server.chat import make_chat_router
from xplain.testing.serve import serve_in_thread
from xplain.tools import ProbeContext

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (pip) is not installed")
if not Path(CHROMIUM).exists():
    pytest.skip("Debian's chromium is not installed (apt-get install chromium)", allow_module_level=True)


def model(rows: np.ndarray) -> np.ndarray:
    p = 1 / (1 + np.exp(-(2 * rows[:, 0] - rows[:, 1])))
    return np.column_stack([1 - p, p])


def scripted_turn(request: GenerationRequest):
    """Look at the feature effects, then try an edit, then answer (with one number no tool gave)."""
    tool_turns = sum(m.role == "tool" for m in request.messages)
    if tool_turns == 0:
        return tool_call_reply("occlusion", row=0, top=3)
    if tool_turns == 1:
        return tool_call_reply("what_if", row=0, changes=[{"feature": "income", "value": -3.0}])
    return "Income drives row 0 most; lowering it to -3 changes the prediction, about 0.777 of the time."


@pytest.fixture
def base_url():
    rows = np.random.default_rng(0).normal(size=(30, 3))
    rows[0] = [1.5, -0.5, 0.2]
    blackbox = from_callable(
        model, kind="tabular", classes=["rejected", "approved"], feature_names=["income", "debt", "age"]
    )
    agent = ExplainerAgent(LLM(FakeBackend(default=scripted_turn)), ProbeContext(blackbox, rows))
    app = FastAPI()
    app.include_router(make_chat_router({"loans": agent}))
    with serve_in_thread(app) as url:
        yield url


def test_a_question_shows_the_answer_the_folded_tool_calls_and_the_plots(base_url):
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            page.goto(f"{base_url}/chat")
            page.wait_for_selector("#model option[value='loans']", state="attached")
            page.fill("#message", "Why is row 0 approved?")
            page.click("#send")
            page.wait_for_selector(".sources", timeout=15_000)

            answer = page.inner_text(".answer")
            assert answer.startswith("Income drives row 0 most")
            assert page.inner_text("mark.ungrounded") == "0.777"  # the number no tool returned
            summaries = page.locator("details.tool-call summary").all_inner_texts()
            assert summaries == [
                "occlusion(row=0, top=3)",
                'what_if(row=0, changes=[{"feature":"income","value":-3}])',
            ]
            assert page.locator("details.tool-call[open]").count() == 0  # folded until clicked
            # drawn by the batch report's renderer (xplain/display/charts.js): title, then label and value per bar
            bars = page.locator("svg.xplain-chart rect")
            assert bars.count() == 3
            assert page.locator("svg.xplain-chart text").nth(1).text_content().endswith("income")
            diff = page.inner_text("table.diff")
            assert "income" in diff and "approved" in diff and "rejected" in diff

            page.locator("details.tool-call summary").first.click()
            assert '"effects"' in page.locator("details.tool-call pre").first.inner_text()
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "chat_page.png"), full_page=True)
        finally:
            browser.close()
    assert (ARTIFACTS / "chat_page.png").stat().st_size > 10_000


@pytest.fixture
def planner_url():
    """The grounded planner (the embedded model's mode) on the same loans model; the fake LLM is never needed."""
    rows = np.random.default_rng(0).normal(size=(30, 3))
    rows[0] = [1.5, -0.5, 0.2]
    blackbox = from_callable(
        model, kind="tabular", classes=["rejected", "approved"], feature_names=["income", "debt", "age"]
    )
    chat = GroundedPlanner(LLM(FakeBackend()), ProbeContext(blackbox, rows))
    app = FastAPI()
    app.include_router(make_chat_router({"loans": chat}))
    with serve_in_thread(app) as url:
        yield url


def ask(page, question: str, turn: int) -> None:
    page.fill("#message", question)
    page.click("#send")
    page.locator(".turn").nth(turn).locator(".sources").wait_for(timeout=15_000)


def test_a_why_a_what_if_and_a_follow_up_on_the_planner(planner_url):
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 1200})
            page.goto(f"{planner_url}/chat")
            page.wait_for_selector("#model option[value='loans']", state="attached")

            ask(page, "Why is row 0 approved?", 0)
            first = page.locator(".turn").nth(0)
            assert first.locator(".answer").inner_text().startswith("The model predicts approved for row 0")
            assert first.locator(".plan").inner_text() == "operation: occlusion (chosen by rules)"
            bars = first.locator("svg.xplain-chart rect")
            assert bars.count() == 3
            assert first.locator("svg.xplain-chart text").nth(1).text_content().endswith("income")
            # signed effects, not ranks: the number beside income's bar is its drop in P(approved), a fraction
            assert 0 < float(first.locator("svg.xplain-chart text").nth(2).text_content()) < 1
            assert "PGI" in first.locator(".check").inner_text() and "PGU" in first.locator(".check").inner_text()
            assert first.locator("details.tool-call summary").all_inner_texts() == ["occlusion(row=0)"]
            assert first.locator("details.tool-call[open]").count() == 0  # folded until clicked

            ask(page, "What if income were -3 for row 0?", 1)
            second = page.locator(".turn").nth(1)
            diff = second.locator("table.diff").inner_text()
            assert "income" in diff and "-3" in diff and "rejected" in diff
            assert "changes from approved" in second.locator(".answer").inner_text()

            ask(page, "and for row 1?", 2)
            third = page.locator(".turn").nth(2)
            summary = third.locator("details.tool-call summary").inner_text()
            assert summary.startswith('what_if(row=1, changes=[{"feature":"income","value":-3')
            assert third.locator(".plan").inner_text() == "operation: what_if (chosen by follow-up)"
            assert third.locator(".answer").inner_text().startswith("For row 1, setting income from")
            assert page.locator("mark.ungrounded").count() == 0
            page.screenshot(path=str(ARTIFACTS / "chat_page_planner.png"), full_page=True)
        finally:
            browser.close()
