"""`xplain batch --engine ray` on a local Ray instance gives the same rows as the local engine, each exactly once."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from xplain.batch.runner import RowOutcome
from xplain.batch.sources import lines_of
from xplain.cli import app

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'xplain[ray]')")
pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def local_ray(fake_llm_env):
    yield
    if ray.is_initialized():
        ray.shutdown()


def test_ray_engine_matches_the_local_engine(tmp_path):
    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps({"text": f"review {i}: quite {'good' if i % 2 else 'bad'}"}) + "\n" for i in range(12)))
    common = ["batch", str(data), "--model", "demo:reviews", "--method", "zero_shot", "--column", "text", "--chunk-size", "3"]
    local = runner_out(common + ["--out", str(tmp_path / "local.jsonl")])
    on_ray = runner_out(common + ["--out", str(tmp_path / "ray.jsonl"), "--engine", "ray", "--workers", "2"])
    assert [o.index for o in on_ray] == list(range(12))
    assert [without_cost(o) for o in on_ray] == [without_cost(o) for o in local], "the same rows, bar the timings"


def without_cost(outcome: RowOutcome) -> dict:
    return outcome.model_dump(exclude={"result": {"cost"}})


def runner_out(args: list[str]) -> list[RowOutcome]:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    out = args[args.index("--out") + 1]
    lines = [RowOutcome.model_validate_json(line) for line in lines_of(open(out).read())]
    return sorted(lines, key=lambda o: o.index)
