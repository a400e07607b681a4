"""An LLM classifier as the black box, on a scripted LLM whose label scores follow the words of the prompt: its
probabilities, its batching, its registration on every front, and the methods that explain it."""

from __future__ import annotations

import asyncio
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

import xplain
from xplain.blackbox import BlackBoxError, BlackBoxLoadError, from_llm, load_blackbox
from xplain.cli import app as cli
from xplain.llm import LLM
from xplain.llm.backends.base import RawScores
from xplain.llm.backends.fake import FakeBackend, request_text
from xplain.server.app import create_app
from xplain.settings import Settings

TEMPLATE = "Review: {text}\nSentiment:"
LABELS = {"negative": " negative", "positive": " positive"}
REGISTRATION = {"name": "sentiment", "source": {"llm": {"template": TEMPLATE, "labels": LABELS}}}


def log_sigmoid(x: float) -> float:
    return -float(np.logaddexp(0.0, -x))


@dataclass
class WordScoringBackend(FakeBackend):
    """An LLM whose label log-likelihoods follow the prompt's words: ' positive' gains 2 nats of logit per 'good',
    ' negative' per 'bad', so p(positive) = sigmoid(2 (#good - #bad)) exactly after normalising."""

    async def score(self, requests):
        self.score_batches.append(list(requests))
        await asyncio.sleep(0)
        answers = []
        for request in requests:
            words = re.findall(r"\w+", request.prompt.lower())
            margin = 2.0 * (words.count("good") - words.count("bad"))
            by_words = {" positive": log_sigmoid(margin), " negative": log_sigmoid(-margin)}
            answers.append(
                RawScores(
                    logprobs=[by_words.get(c, -20.0) for c in request.continuations],
                    token_counts=[1] * len(request.continuations),
                    prompt_tokens=len(words),
                )
            )
        return answers


def p_positive(text: str) -> float:
    words = re.findall(r"\w+", text.lower())
    return 1 / (1 + np.exp(-2.0 * (words.count("good") - words.count("bad"))))


SWAPS = {"good": "bad", "bad": "good"}


def explainer_reply(request) -> str:
    """The explaining LLM's side: counterfactual edits swap good <-> bad; posthoc names 'good'/'bad' first."""
    properties = (request.json_schema or {}).get("properties", {})
    if "edits" in properties:
        text = re.search(r"<data>\n(.*?)\n</data>", request_text(request), re.DOTALL).group(1)
        return json.dumps({"edits": [re.sub(r"\w+", lambda m: SWAPS.get(m.group(0), m.group(0)), text)]})
    if "features" in properties:
        allowed = request.json_schema["$defs"]["RankedFeature"]["properties"]["feature"]["enum"]
        ranked = sorted(allowed, key=lambda w: w not in SWAPS)[: properties["features"].get("maxItems", 2)]
        features = [{"feature": w, "direction": "+" if w == "good" else "-", "rationale": "sets the tone"}
                    for w in ranked]  # fmt: skip
        return json.dumps({"features": features})
    return "ok"


@pytest.fixture
def backend() -> WordScoringBackend:
    return WordScoringBackend(default=explainer_reply)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(llm_backend="fake", database_url=f"sqlite:///{tmp_path / 'db.sqlite'}", cache_enabled=False)


@pytest.fixture
def api(settings, backend):
    with TestClient(create_app(settings, llm=LLM(backend))) as client:
        yield client


# -- the black box itself ----------------------------------------------------------------------------------------


def test_probabilities_are_the_normalised_label_scores_one_score_call_per_batch(backend):
    box = from_llm(TEMPLATE, LABELS, llm=LLM(backend))
    texts = ["a good film", "a bad film", "good good but bad", "nothing to say", "good and good"]
    probabilities = box.predict_proba(texts)
    assert box.kind == "text" and list(box.classes_) == ["negative", "positive"]
    assert probabilities.sum(axis=1) == pytest.approx(np.ones(len(texts)))
    assert probabilities[:, 1] == pytest.approx([p_positive(t) for t in texts])
    assert list(box.predict(texts)) == ["positive", "negative", "positive", "negative", "positive"]
    [batch] = backend.score_batches  # one score call for the whole batch
    assert [r.prompt for r in batch] == [TEMPLATE.replace("{text}", t) for t in texts]
    assert all(r.continuations == [" negative", " positive"] for r in batch)
    box.predict_proba(texts[:2] + ["good news"])  # cached rows are not asked again
    assert [r.prompt for r in backend.score_batches[1]] == [TEMPLATE.replace("{text}", "good news")]


def test_a_list_of_labels_is_scored_as_the_label_after_a_space(backend):
    box = from_llm("{text} Verdict:", ["bad", "good"], llm=LLM(backend))
    box.predict_proba(["fine"])
    assert backend.score_batches[0][0].continuations == [" bad", " good"]


async def test_it_answers_from_inside_a_running_event_loop_without_nesting_loops(backend):
    box = from_llm(TEMPLATE, LABELS, llm=LLM(backend))
    blocking = box.predict_proba(["a good day"])  # sync call on the loop's own thread
    awaited = await box.apredict_proba(["a bad day"])
    assert blocking[0, 1] == pytest.approx(p_positive("good"))
    assert awaited[0, 1] == pytest.approx(p_positive("bad"))
    box.close()


def test_table_rows_are_rendered_as_name_value_lines(backend):
    box = from_llm("Applicant:\n{text}\nApproved:", {"no": " no", "yes": " yes"}, feature_names=["age", "income"],
                   llm=LLM(backend))  # fmt: skip
    assert box.kind == "tabular" and box.feature_names == ["age", "income"]
    box.predict_proba([[41, 52000.5]])
    assert backend.score_batches[0][0].prompt == "Applicant:\nage = 41\nincome = 52000.5\nApproved:"


@pytest.mark.parametrize(
    ("template", "labels", "message"),
    [
        ("no slot here", LABELS, "exactly once"),
        ("{text} and {text}", LABELS, "exactly once"),
        (TEMPLATE, {"only": " one"}, "at least 2"),
        (TEMPLATE, {"a": " same", "b": " same"}, "same words"),
        (TEMPLATE, {"a": " x", "b": "   "}, "not blank"),
    ],
)
def test_bad_specs_are_refused_with_what_to_fix(template, labels, message, backend):
    with pytest.raises(BlackBoxLoadError, match=message):
        from_llm(template, labels, llm=LLM(backend))


# -- REST ----------------------------------------------------------------------------------------------------------


def test_registered_over_rest_it_shows_its_prompt_predicts_and_survives_a_restart(api, backend, settings):
    response = api.post("/models", json=REGISTRATION)
    assert response.status_code == 201, response.text
    info = response.json()
    assert info["kind"] == "text" and info["classes"] == ["negative", "positive"]
    assert info["source"]["llm"]["template"] == TEMPLATE and info["source"]["llm"]["labels"] == LABELS
    predicted = api.post("/models/sentiment/predict", json={"inputs": ["a good film", "a bad film"]}).json()
    assert [p["label"] for p in predicted["predictions"]] == ["positive", "negative"]
    assert predicted["predictions"][0]["probabilities"]["positive"] == pytest.approx(p_positive("good"))
    assert len(backend.score_batches) == 1
    with TestClient(create_app(settings, llm=LLM(backend))) as restarted:  # the store re-loads it on start
        assert restarted.get("/models/sentiment").json()["source"]["llm"] == REGISTRATION["source"]["llm"] | {
            "feature_names": None, "endpoint": None, "chat": False, "system": None
        }
        again = restarted.post("/models/sentiment/predict", json={"inputs": ["good"]}).json()["predictions"][0]
        assert again["probabilities"]["positive"] == pytest.approx(p_positive("good"))


def test_lime_counterfactual_and_posthoc_explain_it_and_their_checks_requery_the_llm(api, backend):
    assert api.post("/models", json=REGISTRATION).status_code == 201
    text = "a good film with a fine cast"

    def run(method: str, options: dict) -> dict:
        before = sum(len(batch) for batch in backend.score_batches)
        answer = api.post(f"/methods/{method}", json={"model": "sentiment", "rows": [text], "options": options})
        assert answer.status_code == 200, answer.text
        [outcome] = answer.json()["results"]
        assert outcome["ok"], outcome["error"]
        assert sum(len(batch) for batch in backend.score_batches) > before  # the LLM box was queried
        return outcome["result"]

    lime = run("lime", {"n_samples": 40, "k": 2})
    assert lime["ranking"][0] == "good" and lime["weights"]["good"] > 0
    assert lime["pgi"] > lime["pgu"]

    counterfactual = run("counterfactual", {"max_rounds": 1, "strategy": "llm", "mode": "target"})
    assert counterfactual["original_prediction"] == "positive"
    best = counterfactual["counterfactuals"][0]
    assert best["text"] == "a bad film with a fine cast" and best["valid"] and best["prediction"] == "negative"
    assert best["probability"] == pytest.approx(1 - p_positive("bad"))  # re-scored by the LLM box, not assumed

    posthoc = run("posthoc", {"k": 1, "n_samples": 12})
    assert [f["feature"] for f in posthoc["features"]] == ["good"]
    assert posthoc["pgi"] == pytest.approx(p_positive("good") - 0.5)  # without 'good' the LLM says 50/50
    assert posthoc["pgu"] == pytest.approx(0.0)


def test_every_other_method_and_a_job_run_on_it(api):
    assert api.post("/models", json=REGISTRATION).status_code == 201
    cases = {
        "kernelshap": {"n_samples": 16, "k": 2},
        "compare": {"k": 1, "n_samples": 8},
        "zero_shot": {},
    }
    for method, options in cases.items():
        body = {"model": "sentiment", "rows": ["a good film", "a bad plot"], "options": options}
        answer = api.post(f"/methods/{method}", json=body)
        assert answer.status_code == 200, answer.text
        assert all(r["ok"] for r in answer.json()["results"]), (method, answer.json())
    job = api.post("/jobs", json={"model": "sentiment", "method": "lime", "rows": ["good", "bad", "good bad good"],
                                  "options": {"n_samples": 12, "k": 1}}).json()  # fmt: skip
    deadline = time.monotonic() + 30
    while api.get(f"/jobs/{job['id']}").json()["status"] in ("queued", "running") and time.monotonic() < deadline:
        time.sleep(0.05)
    rows = api.get(f"/jobs/{job['id']}/results").json()["results"]
    assert [r["result"]["predicted_label"] for r in rows] == ["positive", "negative", "positive"]
    body = {"model": "sentiment", "rows": ["a good film", "a good cast"], "options": {"concept": "tone"}}
    effect = api.post("/methods/concept_effect", json=body).json()["results"][0]["result"]
    assert effect["average_effect"] == pytest.approx(p_positive("bad") - p_positive("good"))


def test_a_results_cost_counts_the_classifiers_own_llm_calls_and_tokens(api, backend):
    assert api.post("/models", json=REGISTRATION).status_code == 201
    for method, text, options in [("lime", "a good film", {"n_samples": 30, "k": 2}), ("predict", "a bad plot", {})]:
        seen = len(backend.score_batches)
        answer = api.post(f"/methods/{method}", json={"model": "sentiment", "rows": [text], "options": options})
        [outcome] = answer.json()["results"]
        sent = [r for batch in backend.score_batches[seen:] for r in batch]
        assert sent, method
        cost = outcome["result"]["cost"]["llm"]
        assert cost["calls"] == len(sent), method  # neither method asks the explaining LLM anything
        assert cost["prompt_tokens"] == sum(len(re.findall(r"\w+", r.prompt.lower())) for r in sent), method
    assert api.get("/models/sentiment").json()["llm_scoring"] == {"fake": len(
        {r.prompt for batch in backend.score_batches for r in batch}
    )}  # fmt: skip


def test_a_row_longer_than_the_classifiers_context_fails_alone(settings):
    """The service cuts a text to a quarter of the LLM's context (15 of 60 tokens here) before any method sees it;
    a prompt of 48 words leaves room for a short review, not for that window."""
    backend = WordScoringBackend(default=explainer_reply, context_size=60)
    long_text = "a good film " * 20
    template = "Read the review and say how it feels. " * 6 + TEMPLATE  # 48 words around the review
    registration = {"name": "sentiment", "source": {"llm": {"template": template, "labels": LABELS}}}
    with TestClient(create_app(settings, llm=LLM(backend))) as api:
        assert api.post("/models", json=registration).status_code == 201
        predicted = api.post("/models/sentiment/predict", json={"inputs": ["a good film", long_text, "a bad film"]})
        assert predicted.status_code == 200, predicted.text
        answers, errors = predicted.json()["predictions"], predicted.json()["errors"]
        assert [a and a["label"] for a in answers] == ["positive", None, "negative"]
        assert errors[0] is None and errors[2] is None
        assert "cannot take this input" in errors[1] and "context of 60 tokens" in errors[1]
        body = {"model": "sentiment", "rows": [long_text, "a good film"], "options": {"n_samples": 20, "k": 1}}
        [bad, good] = api.post("/methods/lime", json=body).json()["results"]
        assert not bad["ok"] and "context of 60 tokens" in bad["error"]
        assert good["ok"] and good["result"]["ranking"][0] == "good"
        alone = api.post("/models/sentiment/predict", json={"inputs": [long_text]})
        assert alone.status_code == 422 and "context of 60 tokens" in alone.text  # a client's input: never a 5xx


@pytest.mark.parametrize(
    ("change", "where", "problem"),
    [
        ({"template": "no slot"}, "source.llm.template", "exactly once"),
        ({"template": "{text} {text}"}, "source.llm.template", "exactly once"),
        ({"labels": {"only": " one"}}, "source.llm.labels", "at least 2"),
        ({"labels": {f"l{i}": f" w{i}" for i in range(21)}}, "source.llm.labels", "at most 20"),
        ({"labels": {"a": " same", "b": " same"}}, "source.llm.labels", "same words"),
        ({"template": "{text}" + "x" * 20_000}, "source.llm.template", "at most 20000"),
        ({"temperature": 0}, "source.llm.temperature", "unknown key"),
        ({"system": "Be brief.", "chat": False}, "source.llm", "a system turn makes a chat"),
    ],
)
def test_bad_registrations_get_422_that_says_what_to_fix(api, change, where, problem):
    spec = {"template": TEMPLATE, "labels": LABELS, **change}
    response = api.post("/models", json={"name": "bad", "source": {"llm": spec}})
    assert response.status_code == 422
    problems = response.json()["detail"]
    assert any(p["where"] == where and problem in p["problem"] for p in problems), problems
    assert api.get("/models/bad").status_code == 404


def test_classes_beside_an_llm_source_and_unlisted_endpoints_are_refused(api):
    with_classes = {**REGISTRATION, "classes": ["a", "b"]}
    response = api.post("/models", json=with_classes)
    assert response.status_code == 422 and "source.llm.labels" in response.text
    remote = {"template": TEMPLATE, "labels": LABELS, "endpoint": {"base_url": "http://10.0.0.7:8000/v1"}}
    elsewhere = {"name": "remote", "source": {"llm": remote}}
    response = api.post("/models", json=elsewhere)
    assert response.status_code == 403 and "XPLAIN_ALLOWED_LLM_ENDPOINTS" in response.json()["error"]


# -- the other fronts ----------------------------------------------------------------------------------------------


def test_python_front_explains_it_with_xplain_run_on_its_own_llm(backend):
    box = from_llm(TEMPLATE, ["negative", "positive"], llm=LLM(backend))
    [why] = xplain.run("lime", box, ["good acting , dull plot"], n_samples=30, k=1)
    assert why.ranking[0] == "good" and why.weights["good"] > 0
    [posthoc] = xplain.run("posthoc", box, ["good acting , dull plot"], k=1, n_samples=8)
    assert [f.feature for f in posthoc.features] == ["good"] and backend.requests  # the same LLM explained itself


def test_cli_names_it_by_its_file_and_runs_it_on_the_commands_llm(tmp_path, fake_llm_env, monkeypatch, backend):
    made = []
    monkeypatch.setattr("xplain.cli.common.make_llm", lambda settings: made.append(LLM(backend)) or made[-1])
    spec = tmp_path / "sentiment.json"
    spec.write_text(json.dumps({"template": TEMPLATE, "labels": LABELS}))
    result = CliRunner().invoke(
        cli, ["run", "predict", "--model", f"llm:{spec}", "--input", '"a good film"', "--input", '"a bad one"']
    )
    assert result.exit_code == 0, result.output
    outcomes = [json.loads(line) for line in result.output.splitlines()]
    probabilities = [o["result"]["prediction"]["probabilities"]["positive"] for o in outcomes]
    assert probabilities == pytest.approx([p_positive("good"), p_positive("bad")])
    assert len(made) == 1  # the box and the command share one LLM (one embedded model loaded)
    toml = tmp_path / "broken.toml"
    toml.write_text('template = "no slot"\nlabels = {a = " a", b = " b"}\n')
    with pytest.raises(BlackBoxLoadError, match="exactly once"):
        load_blackbox(f"llm:{toml}")


async def test_mcp_registers_it_and_explains_it(settings, backend):
    from xplain.mcp.server import xplain_tools
    from xplain.server.deps import open_service
    from xplain.server.guards import OPERATOR

    tools = xplain_tools()
    async with open_service(settings, llm=LLM(backend)) as svc:
        info, text = await tools["register_model"].answer(svc, REGISTRATION, OPERATOR)
        assert info["source"]["llm"]["template"] == TEMPLATE and "sentiment" in text
        result, _ = await tools["lime"].answer(
            svc, {"model": "sentiment", "rows": ["a good film"], "options": {"n_samples": 20, "k": 1}}, OPERATOR
        )
        assert result["results"][0]["result"]["ranking"][0] == "good"


# -- chat turns -----------------------------------------------------------------------------------------------------

SYSTEM = "You label film reviews."
CHAT_SPEC = {"system": SYSTEM, "template": "Review: {text}", "labels": LABELS}


def chat_prompt(text: str) -> str:
    """The fake backend's chat template around the classifier's turns."""
    return f"system: {SYSTEM}\nuser: Review: {text}\nassistant:"


def asked(backend) -> set[str]:
    return {r.prompt for batch in backend.score_batches for r in batch}


def test_a_chat_classifier_is_registered_over_rest_shown_and_explained_from_its_rendered_turns(api, backend):
    response = api.post("/models", json={"name": "chatty", "source": {"llm": CHAT_SPEC}})
    assert response.status_code == 201, response.text
    assert response.json()["source"]["llm"] == CHAT_SPEC | {"chat": True, "feature_names": None, "endpoint": None}
    assert response.json()["llm_prompt"] is None  # not rendered before the classifier first runs
    [answer] = api.post("/models/chatty/predict", json={"inputs": ["a good film"]}).json()["predictions"]
    assert api.get("/models/chatty").json()["llm_prompt"] == chat_prompt("{text}")  # what the LLM reads, exactly
    assert answer["probabilities"]["positive"] == pytest.approx(p_positive("good"))
    assert asked(backend) == {chat_prompt("a good film")}
    body = {"model": "chatty", "rows": ["a good film with a dull plot"], "options": {"n_samples": 20, "k": 1}}
    [lime] = api.post("/methods/lime", json=body).json()["results"]
    assert lime["ok"] and lime["result"]["ranking"][0] == "good"
    assert all(p.startswith(f"system: {SYSTEM}\nuser: Review: ") and p.endswith("\nassistant:") for p in asked(backend))


def test_a_chat_classifier_from_python_the_cli_and_mcp(tmp_path, fake_llm_env, monkeypatch, backend, settings):
    box = from_llm("Review: {text}", ["negative", "positive"], system=SYSTEM, llm=LLM(backend))
    assert box.predict(["a bad film"]).tolist() == ["negative"] and asked(backend) == {chat_prompt("a bad film")}

    monkeypatch.setattr("xplain.cli.common.make_llm", lambda settings: LLM(backend))
    spec = tmp_path / "chatty.toml"
    spec.write_text(
        f'template = "Review: {{text}}"\nsystem = "{SYSTEM}"\n'
        'labels = {negative = " negative", positive = " positive"}\n'
    )
    result = CliRunner().invoke(cli, ["run", "predict", "--model", f"llm:{spec}", "--input", '"a good plot"'])
    assert result.exit_code == 0, result.output
    assert chat_prompt("a good plot") in asked(backend)

    from xplain.mcp.server import xplain_tools
    from xplain.server.deps import open_service
    from xplain.server.guards import OPERATOR

    async def over_mcp():
        tools = xplain_tools()
        async with open_service(settings, llm=LLM(backend)) as svc:
            registration = {"name": "chatty", "source": {"llm": CHAT_SPEC}}
            info, _ = await tools["register_model"].answer(svc, registration, OPERATOR)
            assert info["source"]["llm"]["system"] == SYSTEM
            found, _ = await tools["predict"].answer(svc, {"model": "chatty", "rows": ["a fine cast"]}, OPERATOR)
            assert found["results"][0]["ok"]

    asyncio.run(over_mcp())
    assert chat_prompt("a fine cast") in asked(backend)


def test_on_vllm_a_chat_classifier_is_rendered_by_the_servers_template_and_scored_by_next_token():
    from xplain.testing.openai_stub import StubConfig, run_stub, stub_encode, stub_token_logprob

    config = StubConfig(owned_by="vllm", vocabulary=[" negative", " positive", " the"])
    with run_stub(config) as (url, stub):
        box = from_llm("Review: {text}", LABELS, system=SYSTEM, endpoint=url)
        [probabilities] = box.predict_proba(["a good film"])
        box.close()
    rendered = [r.body for r in stub.requests if r.path == "/tokenize" and "messages" in (r.body or {})]
    assert len(rendered) == 1 and rendered[0]["add_generation_prompt"] is True
    [scoring] = [r.body for r in stub.generation_requests]
    assert scoring["prompt"] == stub_encode(chat_prompt("a good film")) and "prompt_logprobs" not in scoring
    scores = np.array([stub_token_logprob("\nassistant:", words) for words in LABELS.values()])
    assert probabilities == pytest.approx(np.exp(scores) / np.exp(scores).sum())



def test_on_a_server_that_lends_no_chat_template_a_chat_classifier_sends_the_turns_and_reads_the_first_token():
    """OpenAI's chat models: /chat/completions with the top 20 log-probabilities of the reply's first token, the same
    numbers the vLLM path reads after the rendered template; a label not among them is an error naming it."""
    from xplain.testing.openai_stub import StubConfig, run_stub, stub_token_logprob

    with run_stub(StubConfig(vocabulary=[" negative", " positive", " the"])) as (url, stub):
        box = from_llm("Review: {text}", LABELS, system=SYSTEM, endpoint=url)
        [probabilities] = box.predict_proba(["a good film"])
        assert box.llm_scoring == {"chat_next_token": 1}  # what GET /models/NAME shows
        assert box.llm_prompt is None  # the server renders the turns itself: no prompt of ours to show
        box.close()
    [body] = [r.body for r in stub.generation_requests]
    turns = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Review: a good film"}]
    assert body["messages"] == turns
    assert body["max_tokens"] == 1 and body["logprobs"] is True and body["top_logprobs"] == 20
    scores = np.array([stub_token_logprob("\nassistant:", words) for words in LABELS.values()])
    assert probabilities == pytest.approx(np.exp(scores) / np.exp(scores).sum(), abs=1e-12)
    with run_stub(StubConfig(vocabulary=[" positive", " the"])) as (url, _):
        box = from_llm("Review: {text}", LABELS, system=SYSTEM, endpoint=url)
        with pytest.raises(BlackBoxError, match="' negative' is not among its top 20 tokens"):
            box.predict_proba(["a good film"])
        box.close()


def test_the_chat_talks_about_it_over_its_reference_rows(tmp_path, backend):
    (tmp_path / "data").mkdir()
    rows = ["a good film", "a bad film", "good cast , bad plot , good score", "bad bad bad"]
    truth = ["positive", "negative", "positive", "negative"]
    lines = [f'"{row}",{label}' for row, label in zip(rows, truth)]
    (tmp_path / "data" / "reviews.csv").write_text("text,label\n" + "\n".join(lines))
    settings = Settings(
        llm_backend="fake", database_url=f"sqlite:///{tmp_path / 'db.sqlite'}", chat_mode="planner",
        data_dir=tmp_path / "data", cache_enabled=False,
    )  # fmt: skip
    reference = {"file": "reviews.csv", "label_column": "label", "text_column": "text"}
    with TestClient(create_app(settings, llm=LLM(backend))) as api:
        assert api.post("/models", json={**REGISTRATION, "reference": reference}).status_code == 201
        assert api.get("/chat/models").json() == {"models": ["sentiment"]}
        question = {"model": "sentiment", "session_id": "s", "message": "how accurate is it?"}
        blocks = [b for b in api.post("/chat/stream", json=question).text.strip().split("\n\n")]
        stream = [dict(line.split(": ", 1) for line in b.split("\n")) for b in blocks]
        results = [json.loads(b["data"]) for b in stream if b["event"] == "tool_result"]
        assert results and results[0]["result"]["rows"] == 4 and results[0]["result"]["accuracy"] == 1.0
        asked = {r.prompt for batch in backend.score_batches for r in batch if r.prompt.startswith("Review:")}
        assert asked == {TEMPLATE.replace("{text}", r) for r in rows}  # the LLM box answered every row


def test_on_an_openai_compatible_server_the_box_has_its_own_client_on_its_own_loop(tmp_path):
    """The server's LLM and an allowed endpoint both speak HTTP from a client bound to one event loop: the box builds
    its own clients, so the server's loop and the box's never share one, request after request."""
    from xplain.testing.openai_stub import StubConfig, run_stub, stub_token_logprob, stub_tokenize

    def expected(text: str) -> np.ndarray:
        prompt = TEMPLATE.replace("{text}", text)
        scores = []
        for words in LABELS.values():
            tokens, n_prompt = stub_tokenize(prompt + words), len(stub_tokenize(prompt))
            scores.append(sum(stub_token_logprob(tokens[i - 1], tokens[i]) for i in range(n_prompt, len(tokens))))
        return np.exp(scores) / np.exp(scores).sum()

    with run_stub(StubConfig()) as (configured, _), run_stub(StubConfig()) as (elsewhere, remote):
        settings = Settings(
            llm_backend="openai", llm_base_url=configured, cache_enabled=False, allowed_llm_endpoints=[elsewhere],
            database_url=f"sqlite:///{tmp_path / 'db.sqlite'}",
        )  # fmt: skip
        remote_spec = {"template": TEMPLATE, "labels": LABELS, "endpoint": {"base_url": elsewhere}}
        with TestClient(create_app(settings)) as api:
            assert api.post("/models", json=REGISTRATION).status_code == 201
            assert api.post("/models", json={"name": "remote", "source": {"llm": remote_spec}}).status_code == 201
            for name in ("sentiment", "remote", "sentiment", "remote"):
                [answer] = api.post(f"/models/{name}/predict", json={"inputs": [f"a {name} film"]}).json()["predictions"]
                assert [answer["probabilities"][label] for label in LABELS] == pytest.approx(expected(f"a {name} film"))
                body = {"model": name, "rows": [f"the {name} plot"]}  # the box and the server's LLM, turn by turn
                [outcome] = api.post("/methods/zero_shot", json=body).json()["results"]
                assert outcome["ok"], outcome["error"]
                box = outcome["result"]["blackbox"]["probabilities"]
                assert [box[label] for label in LABELS] == pytest.approx(expected(f"the {name} plot"))
        assert any(r.path.endswith("/completions") for r in remote.requests)


@dataclass
class IncomeScoringBackend(FakeBackend):
    """An LLM that approves by the income line of the prompt alone: logit (income - 50) / 10 for ' yes'."""

    async def score(self, requests):
        self.score_batches.append(list(requests))
        answers = []
        for request in requests:
            margin = (float(re.search(r"income = (\S+)", request.prompt).group(1)) - 50) / 10
            scores = {" yes": log_sigmoid(margin), " no": log_sigmoid(-margin)}
            answers.append(RawScores(logprobs=[scores[c] for c in request.continuations], token_counts=[1, 1]))
        return answers


def test_a_table_model_on_an_llm_is_explained_by_lime_from_its_rendered_rows():
    llm = LLM(IncomeScoringBackend())
    box = from_llm("Applicant:\n{text}\nApproved:", {"no": " no", "yes": " yes"},
                   feature_names=["age", "income", "debt"], llm=llm)  # fmt: skip
    rng = np.random.default_rng(0)
    background = np.column_stack([rng.uniform(20, 70, 50), rng.uniform(0, 100, 50), rng.uniform(0, 30, 50)])
    [why] = xplain.run("lime", box, [[35, 80, 10]], reference=background.tolist(), n_samples=200, k=1)
    assert why.predicted_label == "yes" and why.ranking[0] == "income"
    assert why.pgi > why.pgu


async def test_mcp_on_a_server_with_api_keys_registers_for_the_calling_key_alone(settings, backend):
    from xplain.errors import Forbidden, NotFound
    from xplain.mcp.server import xplain_tools
    from xplain.server.deps import open_service
    from xplain.server.guards import OPERATOR, Principal

    tools = xplain_tools()
    mine, other = Principal(owner="a" * 16, admin=False), Principal(owner="b" * 16, admin=False)
    async with open_service(settings.model_copy(update={"api_keys": ["k"]}), llm=LLM(backend)) as svc:
        with pytest.raises(Forbidden, match="registered per key"):  # no key (stdio): nothing shared by mistake
            await tools["register_model"].answer(svc, REGISTRATION, OPERATOR)
        assert not svc.registry.models
        await tools["register_model"].answer(svc, REGISTRATION, mine)
        assert list(svc.registry.models) == [f"{'a' * 16}/sentiment"]
        listed, _ = await tools["list_models"].answer(svc, {}, other)
        assert "sentiment" not in [m["name"] for m in listed["models"]]
        with pytest.raises(NotFound, match="no model named 'sentiment'"):
            await tools["predict"].answer(svc, {"model": "sentiment", "rows": ["a good film"]}, other)
        answered, _ = await tools["predict"].answer(svc, {"model": "sentiment", "rows": ["a good film"]}, mine)
        assert answered["results"][0]["ok"]


def test_table_rows_with_words_booleans_and_gaps_are_rendered_as_the_user_holds_them(backend):
    """A mixed table (string categories, a boolean, an empty cell) reaches the prompt in its own values; it used to
    fail the whole batch on float('Lyon')."""
    box = from_llm("Applicant:\n{text}\nApproved:", {"no": " no", "yes": " yes"},
                   feature_names=["city", "pets", "income"], llm=LLM(backend))  # fmt: skip
    box.infer_schema(reference=pd.DataFrame({"city": ["Lyon", "Paris", None], "pets": [True, False, True],
                                             "income": [2500.0, np.nan, 1800.5]}))  # fmt: skip
    box.predict_proba([{"city": "Lyon", "pets": True, "income": None}, {"city": "Paris", "pets": False, "income": 3e3}])
    prompts = [request.prompt for request in backend.score_batches[0]]
    assert prompts == ["Applicant:\ncity = Lyon\npets = True\nincome = missing\nApproved:",
                       "Applicant:\ncity = Paris\npets = False\nincome = 3000\nApproved:"]  # fmt: skip


def test_an_error_about_a_registered_classifier_names_it_by_its_registered_name(api):
    """'target ... is not a class of llm:fake:...' named the LLM under the model, not the model the user asked for."""
    assert api.post("/models", json=REGISTRATION).status_code == 201
    wrong = api.post("/methods/counterfactual", json={"model": "sentiment", "rows": ["a good film"],
                                                      "options": {"target": "neutral"}})  # fmt: skip
    assert wrong.status_code == 422
    assert "target 'neutral' is not a class of sentiment; its classes are ['negative', 'positive']" in wrong.text


async def test_a_lime_job_on_an_llm_classifier_finishes_its_rows_one_at_a_time(backend):
    """Every black-box row is an LLM request, so a job of a method without an LLM sends its rows one a chunk, two in
    flight: each finished row is recorded as it ends (8 chunks of 4 kept a 48-row LIME job at 0 done for minutes)."""
    from xplain.batch.runner import job_shape, run_rows
    from xplain.methods.catalog import MethodContext, get_method

    class Recorded:
        def __init__(self) -> None:
            self.chunks: list[list[int]] = []

        async def record(self, outcomes) -> None:
            self.chunks.append([o.index for o in outcomes if o.ok])

    box = from_llm(TEMPLATE, LABELS, llm=LLM(backend))
    lime = get_method("lime")
    assert job_shape(lime, None, None, None, box) == (2, 1)
    assert job_shape(lime, None, 3, 5, box) == (3, 5)  # the caller's shape still wins
    sink = Recorded()
    texts = ["a good film", "a bad plot", "good but bad", "good good", "bad acting", "a good cast"]
    context = MethodContext(llm=None, blackbox=box)
    await run_rows(lime, context, list(enumerate(texts)), lime.parse_options({"n_samples": 20}), sink=sink)
    assert sorted(len(c) for c in sink.chunks) == [1] * len(texts)
    assert sorted(i for c in sink.chunks for i in c) == list(range(len(texts)))
