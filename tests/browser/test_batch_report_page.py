"""The batch report for 200 reviews in headless Chromium (Debian's `chromium`, driven by Playwright): every row's
chart is drawn, failed checks come first, the check filter and the sort work, and it opens without a network.
The post-hoc explanations are real (the demo reviews model, PGI / PGU measured on it); the LLM is scripted to
name random words of each review, so some checks pass and some fail. A screenshot goes to
artifacts/batch_report.png; the load time is printed (-s), not asserted."""

from __future__ import annotations

import asyncio
import json
import random
import shutil
import zlib
from pathlib import Path

import pytest

from xplain.batch.report import write_report
from xplain.batch.runner import RowOutcome
from xplain.data.demo import demo_blackbox, demo_reference
from xplain.llm import LLM, GenerationRequest
from xplain.llm.backends.fake import FakeBackend
from xplain.methods.posthoc import PosthocOptions, explain_text

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
N_REVIEWS = 200

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (pip) is not installed")
if not Path(CHROMIUM).exists():
    pytest.skip("Debian's chromium is not installed (apt-get install chromium)", allow_module_level=True)


def random_words(request: GenerationRequest) -> str:
    """Two to four of the review's own words (the schema's enum), in random directions."""
    words = request.json_schema["$defs"]["RankedFeature"]["properties"]["feature"]["enum"]
    chooser = random.Random(zlib.crc32(" ".join(words).encode()))
    chosen = chooser.sample(words, min(len(words), chooser.randint(2, 4)))
    return json.dumps(
        {"features": [{"feature": w, "direction": chooser.choice("+-"), "rationale": "a cue"} for w in chosen]}
    )


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    texts = list(demo_reference("reviews").rows[:N_REVIEWS])
    llm = LLM(FakeBackend(default=random_words))
    explanations = asyncio.run(explain_text(llm, demo_blackbox("reviews"), texts, PosthocOptions(k=4, max_words=30)))
    outcomes = [RowOutcome(index=i, ok=True, result=e.model_dump(mode="json")) for i, e in enumerate(explanations)]
    path = tmp_path_factory.mktemp("report") / "report.html"
    write_report(path, f"posthoc on {N_REVIEWS} Rotten Tomatoes reviews with demo:reviews", outcomes, 12.3, texts)
    return path


def test_200_reviews_open_offline_with_every_chart_drawn_and_failed_checks_first(report):
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1800})
        page.route("http*://**", lambda route: route.abort())  # offline: any request would fail the page
        page.goto(report.as_uri())
        timing = page.evaluate("performance.getEntriesByType('navigation')[0].toJSON()")
        redraw_ms = page.evaluate(
            "(() => { const specs = JSON.parse(document.getElementById('specs').textContent);"
            " const t = performance.now(); xplainCharts.drawAll(document, specs); return performance.now() - t; })()"
        )
        print(
            f"\n{N_REVIEWS} rows, {report.stat().st_size / 1e6:.2f} MB: load event at {timing['loadEventEnd']:.0f} ms, "
            f"all charts drawn in {redraw_ms:.0f} ms"
        )
        statuses = page.eval_on_selector_all("#rows tr", "rows => rows.map(r => r.dataset.status)")
        assert len(statuses) == N_REVIEWS
        assert {"pass", "fail"} <= set(statuses)
        order = {"fail": 0, "error": 1, "inconclusive": 2, "no check": 3, "pass": 4}
        assert statuses == sorted(statuses, key=order.get)
        assert page.locator("#rows td.chart svg").count() == N_REVIEWS
        assert page.locator(".top figure svg").count() >= 3
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "batch_report.png"))

        page.select_option("#status", "pass")
        assert page.locator("#rows tr:visible").count() == statuses.count("pass")
        assert page.inner_text("#shown") == f"showing {statuses.count('pass')} of {N_REVIEWS} rows"
        page.select_option("#status", "")
        page.click("th[data-key=index]")
        first = page.eval_on_selector_all("#rows tr", "rows => rows.slice(0, 3).map(r => +r.dataset.index)")
        assert first == [0, 1, 2]
        page.fill("#search", "zzzz-not-in-any-review")
        assert page.locator("#rows tr:visible").count() == 0
        browser.close()
