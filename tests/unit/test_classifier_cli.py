import json
import re

import pandas as pd
from typer.testing import CliRunner

from xplain.cli import app
from xplain.llm import LLM
from xplain.llm.backends.fake import FakeBackend
from xplain.methods.persistence import load_classifier, save_classifier
from xplain.methods.tbm import TextBottleneckClassifier

runner = CliRunner()


def said(result) -> str:
    """The command's output with rich's line wrapping undone."""
    return " ".join(result.output.split())


TEXTS = [
    "great fun film",
    "lovely great acting",
    "dull boring plot",
    "boring and dull",
    "great joy",
    "dull mess",
]
LABELS = [1, 1, 0, 0, 1, 0]


def write_table(tmp_path):
    path = tmp_path / "table.csv"
    pd.DataFrame(
        {
            "a": [0.0, 0.2, 0.1, 3.0, 3.2, 2.9],
            "b": [5, 4, 6, 5, 4.5, 6],
            "label": ["low"] * 3 + ["high"] * 3,
        }
    ).to_csv(path, index=False)
    return path


def test_lml_fit_predict_explain_through_a_saved_model(tmp_path, fake_llm_env):
    table, model = write_table(tmp_path), tmp_path / "model"
    fitted = runner.invoke(
        app,
        [
            "classifier",
            "fit",
            "--kind",
            "lml",
            "--data",
            str(table),
            "--label-column",
            "label",
            "--out",
            str(model),
        ],
    )
    assert fitted.exit_code == 0, fitted.output
    assert load_classifier(model).feature_names_ == [
        "a",
        "b",
    ]  # the label column is not a feature

    predicted = runner.invoke(
        app, ["classifier", "predict", str(model), "--data", str(table), "--json"]
    )
    assert predicted.exit_code == 0, predicted.output
    rows = json.loads(predicted.output)
    assert len(rows) == 6
    for row in rows:
        assert (
            row["label"] in {"low", "high"}
            and abs(sum(row["probabilities"].values()) - 1) < 1e-9
        )

    explained = runner.invoke(
        app, ["classifier", "explain", str(model), "--data", str(table)]
    )
    assert explained.exit_code == 0, explained.output
    assert "retrieved rows" in explained.output and "LLM:" in explained.output


def test_tbm_predict_and_explain_show_concept_contributions(tmp_path, fake_llm_env):
    def rate(request):
        text = request.messages[-1].content
        keyword = re.search(r"Concept: .*?(\w+)\?", text).group(1)
        return json.dumps({"rating": 2 if keyword in text.split("<data>")[1] else 0})

    fake = FakeBackend(rules=[(r"Rate how much", rate)])
    clf = TextBottleneckClassifier(
        LLM(fake), concepts=[("complaint", "Does it say dull?")], n_iterations=0
    )
    save_classifier(clf.fit(TEXTS, LABELS), tmp_path / "model")
    data = tmp_path / "texts.csv"
    pd.DataFrame({"review": TEXTS}).to_csv(data, index=False)

    predicted = runner.invoke(
        app,
        [
            "classifier",
            "predict",
            str(tmp_path / "model"),
            "--data",
            str(data),
            "--text-column",
            "review",
            "--json",
        ],
    )
    assert predicted.exit_code == 0, predicted.output
    assert [row["label"] for row in json.loads(predicted.output)] == clf.predict(
        TEXTS
    ).tolist()

    explained = runner.invoke(
        app,
        [
            "classifier",
            "explain",
            str(tmp_path / "model"),
            "--data",
            str(data),
            "--text-column",
            "review",
        ],
    )
    assert explained.exit_code == 0, explained.output
    assert (
        "complaint" in explained.output
        and f"{clf.weights_[0][0]:+.3f}" in explained.output
    )


def test_bad_input_ends_with_a_clear_error(tmp_path, fake_llm_env):
    table = write_table(tmp_path)
    wrong_label = runner.invoke(
        app,
        [
            "classifier",
            "fit",
            "--kind",
            "lml",
            "--data",
            str(table),
            "--label-column",
            "colour",
            "--out",
            str(tmp_path / "m"),
        ],
    )
    assert wrong_label.exit_code == 2 and "no column 'colour'" in said(wrong_label)
    assert not (tmp_path / "m").exists()

    no_text = runner.invoke(
        app,
        [
            "classifier",
            "fit",
            "--kind",
            "tbm",
            "--data",
            str(table),
            "--label-column",
            "label",
            "--out",
            str(tmp_path / "m"),
        ],
    )
    assert no_text.exit_code == 2 and "no column 'text'" in said(no_text)

    not_a_model = runner.invoke(
        app, ["classifier", "predict", str(tmp_path), "--data", str(table)]
    )
    assert not_a_model.exit_code == 2 and "not a saved classifier" in said(not_a_model)

    missing = runner.invoke(
        app,
        ["classifier", "predict", str(tmp_path), "--data", str(tmp_path / "none.csv")],
    )
    assert missing.exit_code == 2 and "does not exist" in said(missing)


def test_tbm_fit_reports_when_no_concept_is_usable(tmp_path, fake_llm_env):
    data = tmp_path / "texts.csv"
    pd.DataFrame({"text": TEXTS, "y": LABELS}).to_csv(data, index=False)
    result = runner.invoke(
        app,
        [
            "classifier",
            "fit",
            "--kind",
            "tbm",
            "--data",
            str(data),
            "--label-column",
            "y",
            "--out",
            str(tmp_path / "m"),
        ],
    )
    assert result.exit_code == 2 and "no usable concept" in said(
        result
    )  # the echoing backend proposes nothing
