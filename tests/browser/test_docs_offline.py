"""The API docs in headless Chromium with the network closed: `/docs` (Swagger UI) and `/redoc` render the route
list from assets the installed package serves — no CDN. Every request the pages make is recorded; any that leaves
127.0.0.1 is refused and fails the test."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

import pytest

from xplain.llm import LLM
from xplain.llm.backends.fake import FakeBackend
from xplain.server.app import create_app
from xplain.settings import Settings
from xplain.testing.serve import serve_in_thread

from tests.browser.test_chat_page import CHROMIUM, CHROMIUM_ARGS, sync_api

# Nothing resolves but the test server's address: the machine's network is as good as closed to the browser.
OFFLINE_ARGS = [*CHROMIUM_ARGS, "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"]


@pytest.fixture
def base_url(tmp_path: Path):
    settings = Settings(llm_backend="fake", database_url=f"sqlite:///{tmp_path / 'db.sqlite'}", api_keys=["k"])
    with serve_in_thread(create_app(settings, llm=LLM(FakeBackend(default="ok")))) as url:
        yield url


def open_offline(playwright, url: str, outside: list[str]):
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=OFFLINE_ARGS)
    page = browser.new_page()

    def only_local(route):
        if urlparse(route.request.url).hostname == "127.0.0.1":
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    page.route("**/*", only_local)
    page.goto(url)
    return browser, page


def test_swagger_ui_lists_the_routes_without_internet(base_url):
    outside: list[str] = []
    with sync_api.sync_playwright() as playwright:
        browser, page = open_offline(playwright, f"{base_url}/docs", outside)
        try:
            page.wait_for_selector(".opblock-summary-path", timeout=20_000)
            paths = set(page.locator(".opblock-summary-path").all_inner_texts())
            assert {"/models", "/jobs", "/health", "/chat/stream"} <= {p.replace("\u200b", "") for p in paths}
            assert page.locator(".btn.authorize").count() == 1  # the key can be given on the page
        finally:
            browser.close()
    assert outside == []


def test_redoc_lists_the_routes_without_internet(base_url):
    outside: list[str] = []
    with sync_api.sync_playwright() as playwright:
        browser, page = open_offline(playwright, f"{base_url}/redoc", outside)
        try:
            page.get_by_text("/models/{name}/predict").first.wait_for(timeout=20_000)
            assert page.locator("h1").first.inner_text().startswith("xplain")
        finally:
            browser.close()
    # ReDoc's bundle links its "API docs by Redocly" footer image from its CDN; the page does not need it.
    assert [url for url in outside if not url.endswith("cdn.redoc.ly/redoc/logo-mini.svg")] == []
