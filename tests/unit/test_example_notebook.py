"""examples/explain_a_model.ipynb runs top to bottom on the fake backend (a real Jupyter kernel, via nbclient),
and its results show as cards with their checks and charts."""

from __future__ import annotations

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat", reason="nbformat is in the dev extra")
nbclient = pytest.importorskip("nbclient", reason="nbclient is in the dev extra")

NOTEBOOK = Path(__file__).resolve().parents[2] / "examples" / "explain_a_model.ipynb"
REPOSITORY = NOTEBOOK.parents[1]


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """The notebook after a run, in a scratch folder (it saves a figure and a result there)."""
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    folder = tmp_path_factory.mktemp("notebook")
    mp = pytest.MonkeyPatch()
    mp.setenv("XPLAIN_LLM_BACKEND", "fake")
    mp.setenv("PYTHONPATH", str(REPOSITORY))  # the kernel imports this checkout's xplain
    try:
        nbclient.NotebookClient(
            notebook, timeout=240, kernel_name="python3", resources={"metadata": {"path": str(folder)}}
        ).execute()
    finally:
        mp.undo()
    return notebook, folder


def outputs_of(notebook, last_line: str) -> list[dict]:
    """The outputs of the code cell whose last line is `last_line`."""
    cell = next(c for c in notebook.cells if c.cell_type == "code" and c.source.splitlines()[-1] == last_line)
    return cell.outputs


def test_notebook_runs_without_errors_and_saves_what_it_says(executed):
    notebook, folder = executed
    errors = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    assert (folder / "comparison.png").stat().st_size > 0
    assert '"kind": "ExplainerComparison"' in (folder / "comparison.json").read_text()


@pytest.mark.parametrize(
    "last_line", ["explanations[0]", "comparison", "counterfactuals", "counterfactuals.explanations[0]"]
)
def test_result_cells_show_a_card_with_its_check_and_a_chart(executed, last_line):
    notebook, _ = executed
    html = "".join(o["data"].get("text/html", "") for o in outputs_of(notebook, last_line) if "data" in o)
    assert "class='xplain-card'" in html
    assert "check:" in html and any(f">{s}</span>" in html for s in ("pass", "fail", "inconclusive"))
    assert "<svg" in html


def test_plot_cell_shows_the_figure_as_an_image(executed):
    notebook, _ = executed
    assert any("image/png" in o.get("data", {}) for o in outputs_of(notebook, "figure"))
