"""The black-box wrapper (dedupe, cache, counters, batching, budget, validation) and its loaders."""

import json
import os
import threading

import joblib
import numpy as np
import pytest
import skops.io
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer
from sklearn.svm import LinearSVC

from tests.unit import blackbox_fixtures
from xplain.blackbox import (
    BlackBox,
    BlackBoxError,
    BlackBoxInputError,
    BlackBoxLoadError,
    BlackBoxOutputError,
    BlackBoxUnavailableError,
    QueryBudgetExceeded,
    UntrustedModelFileError,
    from_callable,
    from_estimator,
    from_http,
    from_import_path,
    from_pickle,
    from_skops,
    load_blackbox,
)
from xplain.testing.serve import free_port, serve_in_thread

SENTENCES = [
    "a wonderful delightful film",
    "great acting and a lovely story",
    "wonderful and great fun",
    "a terrible boring film",
    "awful acting and a dull story",
    "boring and terrible waste",
]
SENTIMENT = ["pos", "pos", "pos", "neg", "neg", "neg"]


class SpyClassifier:
    """A batch function that records every batch it is given."""

    def __init__(self) -> None:
        self.batches: list[np.ndarray] = []

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        self.batches.append(np.array(rows))
        return blackbox_fixtures.row_sum_classifier(rows)

    @property
    def rows_seen(self) -> int:
        return sum(len(batch) for batch in self.batches)


@pytest.fixture
def spy() -> SpyClassifier:
    return SpyClassifier()


def tabular_box(spy: SpyClassifier, **options) -> BlackBox:
    return from_callable(spy, kind="tabular", classes=["low", "high"], feature_names=["a", "b"], **options)


# -- the wrapper --------------------------------------------------------------------------------------------------


def test_duplicate_rows_are_evaluated_once_and_scattered_back(spy):
    box = tabular_box(spy)
    rows = [[1.0, 2.0], [3.0, -4.0], [1.0, 2.0], [1.0, 2.0], [0.0, 0.5]]

    probabilities = box.predict_proba(rows)

    assert len(spy.batches) == 1
    np.testing.assert_array_equal(spy.batches[0], [[1.0, 2.0], [3.0, -4.0], [0.0, 0.5]])
    np.testing.assert_allclose(probabilities, blackbox_fixtures.row_sum_classifier(np.array(rows)))
    stats = box.stats()
    assert (stats.queries, stats.evaluated, stats.model_calls, stats.cache_hits) == (5, 3, 1, 0)


def test_cached_rows_cost_no_evaluation(spy):
    box = tabular_box(spy)
    first = box.predict_proba([[1.0, 2.0], [3.0, 4.0]])

    second = box.predict_proba([[3.0, 4.0], [1.0, 2.0], [3.0, 4.0]])

    assert len(spy.batches) == 1
    np.testing.assert_array_equal(second, first[[1, 0, 1]])
    stats = box.stats()
    assert (stats.queries, stats.evaluated, stats.model_calls, stats.cache_hits) == (5, 2, 1, 3)


def test_only_uncached_rows_reach_the_model(spy):
    box = tabular_box(spy)
    box.predict_proba([[1.0, 2.0]])

    box.predict_proba([[1.0, 2.0], [5.0, 6.0]])

    np.testing.assert_array_equal(spy.batches[1], [[5.0, 6.0]])
    assert box.stats().evaluated == 2


def test_large_requests_are_split_into_batches(spy):
    box = tabular_box(spy, batch_size=3)
    rows = np.arange(16, dtype=float).reshape(8, 2)

    probabilities = box.predict_proba(rows)

    assert [len(batch) for batch in spy.batches] == [3, 3, 2]
    np.testing.assert_allclose(probabilities, blackbox_fixtures.row_sum_classifier(rows))
    assert box.stats().model_calls == 3


def test_cache_is_bounded_and_forgets_the_least_recently_used_row(spy):
    box = tabular_box(spy, cache_size=2)
    box.predict_proba([[1.0, 1.0], [2.0, 2.0]])
    box.predict_proba([[1.0, 1.0]])  # touch: [2, 2] is now the oldest
    box.predict_proba([[3.0, 3.0]])  # evicts [2, 2]

    box.predict_proba([[1.0, 1.0], [2.0, 2.0]])

    np.testing.assert_array_equal(spy.batches[-1], [[2.0, 2.0]])


def test_cache_size_zero_disables_the_cache(spy):
    box = tabular_box(spy, cache_size=0)
    box.predict_proba([[1.0, 1.0]])
    box.predict_proba([[1.0, 1.0]])
    assert spy.rows_seen == 2
    assert box.stats().cache_hits == 0


def test_reset_stats_zeroes_counters_but_keeps_the_cache(spy):
    box = tabular_box(spy)
    box.predict_proba([[1.0, 1.0]])
    box.reset_stats()
    assert box.stats().queries == 0

    box.predict_proba([[1.0, 1.0]])

    stats = box.stats()
    assert (stats.queries, stats.evaluated, stats.cache_hits) == (1, 0, 1)


def test_counters_stay_exact_under_concurrent_queries():
    box = from_callable(blackbox_fixtures.row_sum_classifier, kind="tabular", batch_size=7)

    def query(offset: int) -> None:
        for start in range(0, 50, 5):
            box.predict_proba([[offset, value] for value in range(start, start + 5)])

    threads = [threading.Thread(target=query, args=(offset,)) for offset in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    stats = box.stats()
    assert (stats.queries, stats.evaluated, stats.cache_hits) == (200, 200, 0)


def test_budget_refuses_a_request_before_evaluating_anything(spy):
    box = tabular_box(spy, query_budget=5)
    box.predict_proba([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]])
    before = box.stats()

    with pytest.raises(QueryBudgetExceeded) as refused:
        box.predict_proba([[1.0, 1.0], [4.0, 4.0], [5.0, 5.0], [6.0, 6.0]])

    message = str(refused.value)
    assert "budget 5" in message and "used 3" in message and "needs 3" in message
    assert len(spy.batches) == 1
    assert box.stats() == before
    box.query_budget = None  # nothing from the refused request was cached: its new rows still need evaluating
    box.predict_proba([[4.0, 4.0], [5.0, 5.0], [6.0, 6.0]])
    np.testing.assert_array_equal(spy.batches[-1], [[4.0, 4.0], [5.0, 5.0], [6.0, 6.0]])


def test_budget_counts_evaluations_not_queries(spy):
    box = tabular_box(spy, query_budget=2)
    box.predict_proba([[1.0, 1.0], [1.0, 1.0], [2.0, 2.0]])  # two unique rows: exactly the budget
    box.predict_proba([[2.0, 2.0]] * 10)  # cached: free

    with pytest.raises(QueryBudgetExceeded):
        box.predict_proba([[9.0, 9.0]])
    assert box.stats().evaluated == 2


def test_predict_maps_argmax_to_classes(spy):
    box = tabular_box(spy)
    labels = box.predict([[5.0, 5.0], [-5.0, -5.0]])
    assert labels.tolist() == ["high", "low"]


def test_classes_default_to_column_indices_from_the_first_answer():
    box = from_callable(blackbox_fixtures.row_sum_classifier, kind="tabular")
    assert box.classes_ is None
    assert box.predict([[-3.0, 0.0], [3.0, 0.0]]).tolist() == [0, 1]
    assert box.classes_.tolist() == [0, 1]


def test_module_kind_predicts_floats_and_has_no_probabilities():
    lengths = SpyTextModule()
    box = from_callable(lengths, kind="module")

    scores = box.predict(["ab", "abcd", "ab"])

    assert scores.dtype == np.float64
    assert scores.tolist() == [2.0, 4.0, 2.0]
    assert lengths.batches == [["ab", "abcd"]]
    with pytest.raises(BlackBoxError, match="use predict"):
        box.predict_proba(["ab"])


class SpyTextModule:
    def __init__(self) -> None:
        self.batches: list[list[str]] = []

    def __call__(self, texts: list[str]) -> list[float]:
        self.batches.append(list(texts))
        return [float(len(text)) for text in texts]


async def test_async_twins_match_the_sync_answers(spy):
    box = tabular_box(spy)
    rows = [[1.0, -2.0], [0.5, 0.5]]
    np.testing.assert_array_equal(await box.apredict_proba(rows), box.predict_proba(rows))
    assert (await box.apredict(rows)).tolist() == box.predict(rows).tolist()


@pytest.mark.parametrize(
    ("inputs", "problem"),
    [
        ([1.0, 2.0], "2-D"),
        ([[1.0, 2.0, 3.0]], "expects 2 features"),
        ([["a", "b"]], "not a number"),
    ],
)
def test_bad_tabular_inputs_are_refused(spy, inputs, problem):
    box = tabular_box(spy)
    with pytest.raises(BlackBoxInputError, match=problem):
        box.predict_proba(inputs)
    assert spy.batches == [] and box.stats().queries == 0


@pytest.mark.parametrize(("inputs", "problem"), [("one text", "not a single string"), (["ok", 3], "item 1 is int")])
def test_bad_text_inputs_are_refused(inputs, problem):
    box = from_callable(SpyTextModule(), kind="module")
    with pytest.raises(BlackBoxInputError, match=problem):
        box.predict(inputs)


@pytest.mark.parametrize(
    ("answer", "problem"),
    [
        (lambda rows: np.full((len(rows), 3), 1 / 3), "shape"),
        (lambda rows: np.full((len(rows) + 1, 2), 0.5), "shape"),
        (lambda rows: np.full((len(rows), 2), np.nan), "NaN"),
        (lambda rows: np.full((len(rows), 2), 0.7), "do not sum to 1"),
        (lambda rows: np.tile([1.5, -0.5], (len(rows), 1)), r"outside \[0, 1\]"),
        (lambda rows: [["high", "low"]] * len(rows), "not numeric"),
    ],
)
def test_invalid_probabilities_are_reported(answer, problem):
    box = from_callable(answer, kind="tabular", classes=[0, 1])
    with pytest.raises(BlackBoxOutputError, match=problem):
        box.predict_proba([[1.0, 2.0], [3.0, 4.0]])


def test_invalid_module_outputs_are_reported():
    too_few = from_callable(lambda texts: [1.0], kind="module")
    with pytest.raises(BlackBoxOutputError, match="one float per text"):
        too_few.predict(["a", "b"])
    infinite = from_callable(lambda texts: [np.inf] * len(texts), kind="module")
    with pytest.raises(BlackBoxOutputError, match="infinite"):
        infinite.predict(["a"])


def test_a_failed_answer_is_not_cached():
    answers = iter([np.full((1, 2), np.nan), np.array([[0.25, 0.75]])])
    box = from_callable(lambda rows: next(answers), kind="tabular")
    with pytest.raises(BlackBoxOutputError):
        box.predict_proba([[1.0, 1.0]])
    np.testing.assert_array_equal(box.predict_proba([[1.0, 1.0]]), [[0.25, 0.75]])


# -- scikit-learn estimators --------------------------------------------------------------------------------------


def test_tabular_estimator_gets_kind_classes_and_default_feature_names():
    box = from_estimator(blackbox_fixtures.fitted_classifier)
    rows = np.array([[0.1, 0.2], [0.9, 0.8]])

    assert box.kind == "tabular"
    assert box.feature_names == ["x0", "x1"]
    assert box.classes_.tolist() == [0, 1]
    np.testing.assert_allclose(box.predict_proba(rows), blackbox_fixtures.fitted_classifier.predict_proba(rows))
    with pytest.raises(BlackBoxInputError, match="expects 2 features"):
        box.predict_proba([[1.0, 2.0, 3.0]])


def test_explicit_feature_names_must_match_the_estimator():
    assert from_estimator(blackbox_fixtures.fitted_classifier, feature_names=["age", "income"]).feature_names == [
        "age",
        "income",
    ]
    with pytest.raises(BlackBoxLoadError, match="takes 2 features"):
        from_estimator(blackbox_fixtures.fitted_classifier, feature_names=["age"])


@pytest.fixture(scope="module")
def sentiment_pipeline():
    return make_pipeline(TfidfVectorizer(), LogisticRegression(C=10.0)).fit(SENTENCES, SENTIMENT)


def test_text_pipeline_is_inferred_as_a_text_classifier(sentiment_pipeline):
    box = from_estimator(sentiment_pipeline)

    assert box.kind == "text"
    assert box.feature_names is None
    assert box.classes_.tolist() == ["neg", "pos"]
    assert box.predict(["a wonderful story", "a boring terrible story"]).tolist() == ["pos", "neg"]


def test_text_regressor_needs_kind_module():
    scorer = make_pipeline(TfidfVectorizer(), Ridge()).fit(SENTENCES, [1.0, 0.9, 0.8, -1.0, -0.9, -0.8])
    with pytest.raises(BlackBoxLoadError, match="kind='module'"):
        from_estimator(scorer)

    box = from_estimator(scorer, kind="module")

    texts = ["wonderful fun", "dull waste"]
    np.testing.assert_allclose(box.predict(texts), scorer.predict(texts))


def test_classifier_without_predict_proba_is_refused():
    svm = LinearSVC().fit(blackbox_fixtures.TRAINING_ROWS, blackbox_fixtures.TRAINING_LABELS)
    with pytest.raises(BlackBoxLoadError, match="predict_proba"):
        from_estimator(svm)


def test_unfitted_estimator_is_refused():
    with pytest.raises(BlackBoxLoadError, match="not fitted"):
        from_estimator(LogisticRegression())


# -- files --------------------------------------------------------------------------------------------------------


@pytest.fixture
def forbid_unpickling(monkeypatch):
    """Fail the test if anything is unpickled: refusals must happen before loading."""

    def refuse(*args, **kwargs):
        raise AssertionError("joblib.load was called before the trust check")

    monkeypatch.setattr(joblib, "load", refuse)


@pytest.fixture
def trusted_dir(tmp_path):
    directory = tmp_path / "trusted"
    directory.mkdir()
    return directory


def dump_classifier(path):
    joblib.dump(blackbox_fixtures.fitted_classifier, path)
    return path


def test_pickle_inside_the_trusted_dir_loads(trusted_dir):
    path = dump_classifier(trusted_dir / "model.joblib")

    box = from_pickle(path, trusted_dir=trusted_dir)

    rows = np.array([[0.3, 0.4]])
    np.testing.assert_allclose(box.predict_proba(rows), blackbox_fixtures.fitted_classifier.predict_proba(rows))
    assert box.kind == "tabular"


@pytest.mark.usefixtures("forbid_unpickling")
def test_pickle_is_refused_when_no_trusted_dir_is_set(tmp_path):
    path = dump_classifier(tmp_path / "model.pkl")
    with pytest.raises(UntrustedModelFileError, match="XPLAIN_TRUSTED_MODEL_DIR") as refused:
        from_pickle(path, trusted_dir=None)
    assert "outside the trusted directory" in str(refused.value)


@pytest.mark.usefixtures("forbid_unpickling")
def test_pickle_outside_the_trusted_dir_is_refused(tmp_path, trusted_dir):
    path = dump_classifier(tmp_path / "model.pkl")
    with pytest.raises(UntrustedModelFileError, match="outside the trusted directory") as refused:
        from_pickle(path, trusted_dir=trusted_dir)
    assert "XPLAIN_TRUSTED_MODEL_DIR" in str(refused.value)


@pytest.mark.usefixtures("forbid_unpickling")
def test_pickle_reached_through_dotdot_is_refused(tmp_path, trusted_dir):
    dump_classifier(tmp_path / "model.pkl")
    with pytest.raises(UntrustedModelFileError, match="outside the trusted directory"):
        from_pickle(trusted_dir / ".." / "model.pkl", trusted_dir=trusted_dir)


@pytest.mark.usefixtures("forbid_unpickling")
def test_symlink_escaping_the_trusted_dir_is_refused(tmp_path, trusted_dir):
    outside = dump_classifier(tmp_path / "model.pkl")
    link = trusted_dir / "innocent.pkl"
    os.symlink(outside, link)
    with pytest.raises(UntrustedModelFileError, match="outside the trusted directory"):
        from_pickle(link, trusted_dir=trusted_dir)


def test_skops_round_trip(tmp_path):
    path = tmp_path / "model.skops"
    skops.io.dump(blackbox_fixtures.fitted_classifier, path)

    box = from_skops(path)

    rows = np.array([[0.0, 1.0], [1.0, 1.0]])
    np.testing.assert_allclose(box.predict_proba(rows), blackbox_fixtures.fitted_classifier.predict_proba(rows))
    assert box.name == f"skops:{path}"


@pytest.fixture
def skops_with_custom_function(tmp_path):
    pipeline = make_pipeline(FunctionTransformer(blackbox_fixtures.double), LogisticRegression())
    pipeline.fit(blackbox_fixtures.TRAINING_ROWS, blackbox_fixtures.TRAINING_LABELS)
    path = tmp_path / "pipeline.skops"
    skops.io.dump(pipeline, path)
    return path


def test_skops_with_an_untrusted_type_is_refused(skops_with_custom_function, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("skops.io.load was called before the trust check")

    monkeypatch.setattr(skops.io, "load", refuse)
    with pytest.raises(UntrustedModelFileError, match="tests.unit.blackbox_fixtures.double"):
        from_skops(skops_with_custom_function)
    with pytest.raises(UntrustedModelFileError):
        from_skops(skops_with_custom_function, trusted=["some.other.type"])


def test_skops_loads_once_the_operator_trusts_its_types(skops_with_custom_function):
    box = from_skops(skops_with_custom_function, trusted=["tests.unit.blackbox_fixtures.double"])
    assert box.predict([[2.0, 2.0], [-2.0, -2.0]]).tolist() == [1, 0]


# -- import paths -------------------------------------------------------------------------------------------------


def test_import_path_to_an_estimator():
    box = from_import_path("tests.unit.blackbox_fixtures:fitted_classifier")
    assert box.kind == "tabular"
    assert box.name == "import:tests.unit.blackbox_fixtures:fitted_classifier"
    assert box.predict([[1.0, 1.0]]).tolist() == [1]


def test_import_path_to_a_callable_needs_a_kind():
    spec = "tests.unit.blackbox_fixtures:row_sum_classifier"
    with pytest.raises(BlackBoxLoadError, match="pass kind"):
        from_import_path(spec)
    box = from_import_path(spec, kind="tabular", classes=["no", "yes"])
    assert box.predict([[2.0, 1.0]]).tolist() == ["yes"]


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ("tests.unit.blackbox_fixtures", "package.module:attribute"),
        ("tests.unit.no_such_module:model", "cannot import module"),
        ("tests.unit.blackbox_fixtures:missing", "has no attribute 'missing'"),
        ("tests.unit.blackbox_fixtures:not_a_model", "not a scikit-learn estimator or a batch function"),
    ],
)
def test_bad_import_paths_are_explained(spec, problem):
    with pytest.raises(BlackBoxLoadError, match=problem):
        from_import_path(spec)


# -- load_blackbox dispatch ---------------------------------------------------------------------------------------


def test_load_blackbox_dispatches_on_the_spec(tmp_path, trusted_dir):
    skops_path = tmp_path / "m.skops"
    skops.io.dump(blackbox_fixtures.fitted_classifier, skops_path)
    pickle_path = dump_classifier(trusted_dir / "m.PKL")

    assert load_blackbox(str(skops_path)).name.startswith("skops:")
    assert load_blackbox(str(pickle_path), trusted_dir=trusted_dir).name.startswith("pickle:")
    assert load_blackbox("tests.unit.blackbox_fixtures:fitted_classifier").name.startswith("import:")
    assert load_blackbox("http://127.0.0.1:1/predict", kind="text").name == "http://127.0.0.1:1/predict"
    with pytest.raises(UntrustedModelFileError):
        load_blackbox(str(pickle_path))  # no trusted_dir given


def test_load_blackbox_explains_the_accepted_forms():
    with pytest.raises(ValueError, match="import path"):
        load_blackbox("model.txt")
    with pytest.raises(BlackBoxLoadError, match="needs kind"):
        load_blackbox("https://example.invalid/predict")


# -- HTTP ---------------------------------------------------------------------------------------------------------


class TabularRequest(BaseModel):
    inputs: list[list[float]]


class TextRequest(BaseModel):
    inputs: list[str]


def model_server_app(batch_sizes: list[int]) -> FastAPI:
    app = FastAPI()

    @app.post("/proba")
    def proba(request: TabularRequest) -> dict:
        batch_sizes.append(len(request.inputs))
        return {"outputs": blackbox_fixtures.row_sum_classifier(np.array(request.inputs)).tolist()}

    @app.post("/length")
    def length(request: TextRequest) -> dict:
        return {"outputs": [len(text) for text in request.inputs]}

    @app.post("/wrong-shape")
    def wrong_shape(request: TabularRequest) -> dict:
        return {"predictions": [0.5] * len(request.inputs)}

    @app.post("/broken")
    def broken(request: TabularRequest) -> dict:
        raise HTTPException(status_code=500, detail="model crashed")

    return app


@pytest.fixture(scope="module")
def model_server():
    batch_sizes: list[int] = []
    with serve_in_thread(model_server_app(batch_sizes)) as base_url:
        yield base_url, batch_sizes


def test_http_classifier_batches_over_a_real_server(model_server):
    base_url, batch_sizes = model_server
    batch_sizes.clear()
    box = from_http(f"{base_url}/proba", kind="tabular", classes=["low", "high"], batch_size=2)
    rows = np.array([[1.0, 2.0], [-3.0, 0.0], [1.0, 2.0], [0.5, 0.25], [4.0, 4.0]])
    try:
        probabilities = box.predict_proba(rows)
    finally:
        box.close()

    np.testing.assert_allclose(probabilities, blackbox_fixtures.row_sum_classifier(rows))
    assert batch_sizes == [2, 2]
    assert box.stats().model_calls == 2


def test_http_module(model_server):
    base_url, _ = model_server
    box = load_blackbox(f"{base_url}/length", kind="module")
    try:
        assert box.predict(["abc", "", "hello"]).tolist() == [3.0, 0.0, 5.0]
    finally:
        box.close()


def test_http_bad_responses_are_explained(model_server):
    base_url, _ = model_server
    wrong = from_http(f"{base_url}/wrong-shape", kind="tabular")
    broken = from_http(f"{base_url}/broken", kind="tabular")
    try:
        with pytest.raises(BlackBoxOutputError, match='"outputs"'):
            wrong.predict_proba([[1.0, 2.0]])
        with pytest.raises(BlackBoxUnavailableError, match="HTTP 500"):
            broken.predict_proba([[1.0, 2.0]])
    finally:
        wrong.close()
        broken.close()


def test_unreachable_endpoint_names_the_url():
    url = f"http://127.0.0.1:{free_port()}/predict"
    box = from_http(url, kind="text", timeout_s=2)
    try:
        with pytest.raises(BlackBoxUnavailableError, match=url.replace(".", r"\.")):
            box.predict_proba(["hello"])
    finally:
        box.close()


def test_a_tree_models_skops_file_loads_from_the_cli_once_the_operator_trusts_its_types(tmp_path, fake_llm_env,
                                                                                       monkeypatch):  # fmt: skip
    """A forest's skops file holds `sklearn.tree._tree.Tree`, which skops does not trust by itself; the command line
    had no way to trust it, so `xplain run` could not open any tree model. XPLAIN_TRUSTED_SKOPS_TYPES does."""
    from sklearn.ensemble import RandomForestClassifier
    from typer.testing import CliRunner

    from xplain.cli import app
    from xplain.settings import get_settings

    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 3))
    path = tmp_path / "forest.skops"
    skops.io.dump(RandomForestClassifier(n_estimators=5, random_state=0).fit(X, np.where(X[:, 0] > 0, "yes", "no")), path)
    run = ["run", "predict", "--model", str(path), "--input", "[1.5, 0, 0]", "--input", "[-1.5, 0, 0]"]
    refused = CliRunner().invoke(app, run)
    assert refused.exit_code != 0 and "XPLAIN_TRUSTED_SKOPS_TYPES" in refused.output
    monkeypatch.setenv("XPLAIN_TRUSTED_SKOPS_TYPES", ",".join(skops.io.get_untrusted_types(file=path)))
    get_settings.cache_clear()
    loaded = CliRunner().invoke(app, run)
    assert loaded.exit_code == 0, loaded.output
    labels = [json.loads(line)["result"]["prediction"]["label"] for line in loaded.output.splitlines() if line.startswith("{")]
    assert labels == ["yes", "no"]


async def test_a_results_cost_counts_its_own_rows_not_another_requests_on_the_same_model(spy):
    """Two requests on one registered model at once: each result's `cost.blackbox_queries` is its own rows. It was
    the model's global count over the block, so a one-row predict beside a LIME call reported 66 rows."""
    import asyncio

    from xplain.methods.base import measure_cost

    box = tabular_box(spy)
    first_done, other_done = asyncio.Event(), asyncio.Event()

    async def one_row() -> int:
        with measure_cost(box) as meter:
            await box.apredict_proba([[1.0, 2.0]])
            first_done.set()
            await other_done.wait()  # the other request evaluates its rows while this one is still open
        return meter.cost.blackbox_queries

    async def five_rows() -> int:
        await first_done.wait()
        with measure_cost(box) as meter:
            await box.apredict_proba([[float(i), 0.0] for i in range(5)])
        other_done.set()
        return meter.cost.blackbox_queries

    assert await asyncio.gather(one_row(), five_rows()) == [1, 5]
    assert box.stats().evaluated == 6
